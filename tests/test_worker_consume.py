# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: `marrowmap worker` consumes the listener's job; `marrowmap status` shows it as
received with its series and counts (or failed, with the reason, when the spool disagrees)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from marrowmap.jobstore import FINAL_STATES, JobState, JobStore
from tests import dicom_factory as factory
from tests.listener_fixtures import (  # noqa: F401
    Harness,
    Proc,
    free_port,
    harness,
    storescu,
    wait_for,
    wait_for_job,
)

pytestmark = pytest.mark.integration


def _push(h: Harness, listener: Proc, tmp: Path, seed: str) -> tuple[list[Dataset], dict[str, Any]]:
    study = factory.study(seed)
    assert storescu(h.port, factory.write(study, tmp / seed)).returncode == 0
    job = wait_for(lambda: listener.events("job.queued"), 20, "the job to be queued")[0]
    return study, job


def test_worker_consumes_the_job_and_status_shows_it(harness: Harness, tmp_path: Path) -> None:
    listener = harness.start_listener()
    # results (if the analysis makes any) go to a PACS that is not there, without retries
    harness.start_worker(MARROWMAP_PACS_PORT=str(free_port()), MARROWMAP_SEND_MAX_RETRIES="0")
    study, job = _push(harness, listener, tmp_path, "worker-consume")
    store = JobStore.from_url("redis://127.0.0.1:6379/15", harness.prefix)

    record = wait_for_job(store, job["job_id"], lambda r: r.state in FINAL_STATES, 90,
                          "the worker to receive, analyse (and try to send) the job")
    assert wait_for(lambda: harness.queue_messages() == [], 10, "the queue to be empty") is True
    expected = Counter(str(d.SeriesInstanceUID) for d in study)
    assert {s["series_instance_uid"]: s["instance_count"] for s in record.series} == dict(expected)
    assert record.instance_count == len(study)
    assert [c.state for c in record.history][:3] == [JobState.QUEUED, JobState.RECEIVED, JobState.ANALYSING]
    assert record.history[1].reason == f"3 series, {len(study)} instances checked against the manifest"
    assert {"queued", "received", "analysing"} <= set(record.times)
    # the analysis outcome of a 32 x 32 synthetic study is the analysis' business; it is recorded with a reason
    assert record.result["status"] in ("analyzed", "not_applicable", "failed") and record.reason
    assert (harness.spool / "results" / job["job_id"] / "result.json").is_file()

    listing = harness.cli("status")
    assert listing.returncode == 0, listing.stderr
    line = next(x for x in listing.stdout.splitlines() if x.startswith(job["job_id"]))
    assert record.state.value in line and str(study[0].StudyInstanceUID) in line
    assert "queued " in listing.stdout and " -> received " in listing.stdout
    assert f"{len(study):>5}" in line
    series_line = listing.stdout.split("series: ")[1].split("\n")[0]
    for d in study:  # each series by its description, modality and images
        assert f"{d.SeriesDescription} (MR, {expected[str(d.SeriesInstanceUID)]})" in series_line
    if record.state.value == "send_failed":  # where the failing results were to go
        assert "to PACS@127.0.0.1:" in listing.stdout
    summary = harness.cli("status", job["job_id"])
    assert summary.stdout.startswith(f"job {job['job_id']}: {record.state.value}") and "history:" in summary.stdout
    detail = json.loads(harness.cli("status", job["job_id"], "--json").stdout)
    assert detail["state"] == record.state.value and detail["instance_count"] == len(study)
    assert "received" in detail["times"]

    # `marrowmap resend` of a job without results re-runs its analysis from the stored message
    shutil.rmtree(harness.spool / "results" / job["job_id"])
    resend = harness.cli("resend", job["job_id"])
    assert resend.returncode == 0 and "queued for analysis again" in resend.stdout, resend.stderr
    again = wait_for_job(store, job["job_id"], lambda r: r.state in FINAL_STATES
                         and sum(c.state == JobState.ANALYSING for c in r.history) == 2, 60, "the re-analysis")
    assert again.result["status"] == record.result["status"], "the same study gives the same outcome"


def test_worker_records_failed_when_the_spool_disagrees(harness: Harness, tmp_path: Path) -> None:
    listener = harness.start_listener()
    study, job = _push(harness, listener, tmp_path, "worker-mismatch")
    assert [m["kwargs"]["job"]["job_id"] for m in harness.queue_messages()] == [job["job_id"]]
    folder = harness.spool / job["spool_path"]
    victim = sorted(folder.glob("*/*.dcm"))[0]
    victim.unlink()
    harness.start_worker()
    store = JobStore.from_url("redis://127.0.0.1:6379/15", harness.prefix)

    record = wait_for_job(store, job["job_id"], lambda r: r.state == JobState.FAILED, 30, "the job to fail")
    assert "spool check failed" in record.reason and victim.parent.name in record.reason
    listing = harness.cli("status")
    assert "failed" in listing.stdout and "spool check failed" in listing.stdout
