# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance (issue 13): nothing is lost, nothing hangs.

* a real full disk (a small tmpfs as the spool) mid-study: the refused instance makes the batch
  partial and it is not analysed as complete; the seal that failed on the full disk is retried by
  the running listener once space is back;
* Redis loses its data: the sealed batch is listed by ``marrowmap status`` and queued again exactly once;
* a SIGKILLed worker's job is re-delivered and sent to the PACS (Orthanc) in <= 180 s, default settings.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from marrowmap.jobstore import JobState, JobStore
from service.statuses import StoreStatus
from tests import dicom_factory as factory
from tests.e2e_pipeline import dicom_files, phantom_study, start_marrowmap, study_uid_of
from tests.listener_fixtures import (  # noqa: F401
    REDIS_URL,
    Harness,
    harness,
    pynetdicom_send,
    wait_for,
    wait_for_job,
)
from tests.orthanc_harness import Modality, running_orthanc
from tests.tmpfs_fixtures import mounted_tmpfs

pytestmark = pytest.mark.integration
STORESCU = "/usr/bin/storescu"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB file system (tmpfs) for the spool; root only (CI runs as root)."""
    with mounted_tmpfs(tmp_path / "disk", "size=16m") as mount:
        yield mount


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\x00" * 65536)
        except OSError:
            return


def test_full_disk_refusal_makes_a_partial_batch_and_the_seal_recovers_without_restart(
        harness: Harness, small_disk: Path, tmp_path: Path) -> None:
    spool = small_disk / "spool"
    env = {"MARROWMAP_SPOOL_DIR": str(spool), "MARROWMAP_MIN_FREE_DISK_MB": "0", "MARROWMAP_QUIET_SECONDS": "3",
           "MARROWMAP_SEAL_RETRY_SECONDS": "2", "MARROWMAP_PACS_PORT": "9"}
    listener = harness.start_listener(**env)
    worker = harness.start_worker(**env)  # ready (its spool check passed) before the disk is filled
    (small_disk / "ballast").write_bytes(b"\x00" * (8 << 20))  # freed later, for the worker's outputs
    study = factory.study("disk-full", (factory.SeriesSpec("COR STIR", 24),), rows=512, cols=512)
    datasets = [dcmread(p) for p in factory.write(study, tmp_path / "study")]

    statuses = pynetdicom_send(harness.port, datasets)
    _fill(small_disk / "filler")  # the seal (manifest, markers) now meets a full disk too

    refused = {str(ds.SOPInstanceUID) for ds, s in zip(datasets, statuses, strict=True) if s != 0}
    assert 0 < len(refused) < len(datasets), statuses
    assert {s for s in statuses if s != 0} == {int(StoreStatus.OUT_OF_RESOURCES)}
    failed = wait_for(lambda: listener.events("sealer.seal_failed"), 30, "the seal to fail on the full disk")
    assert "No space left on device" in failed[0]["error"]
    (small_disk / "filler").unlink()
    (small_disk / "ballast").unlink()
    sealed = wait_for(lambda: listener.events("study.sealed"), 30, "the seal to be retried without a restart")
    assert listener.popen.poll() is None and len(sealed) == 1
    [batch] = list((spool / "ready").glob("*/001"))
    manifest = json.loads((batch / "manifest.json").read_text())
    assert set(manifest["refused_instances"]) == refused
    assert manifest["series"][0]["instance_count"] == len(datasets) - len(refused)

    store = JobStore.from_url(REDIS_URL, harness.prefix)
    record = wait_for_job(store, manifest["job_id"],
                          lambda r: any(h.state is JobState.NOT_APPLICABLE for h in r.history), 120,
                          "the partial study to be declared not applicable")
    reason = next(h.reason for h in record.history if h.state is JobState.NOT_APPLICABLE)
    assert reason.startswith(f"study incomplete: {len(refused)} instance(s) were refused"), reason
    assert JobState.ANALYSED not in {h.state for h in record.history}
    outputs = json.loads((spool / "results" / manifest["job_id"] / "result.json").read_text())["outputs"]
    assert sorted(o["kind"] for o in outputs) == ["kos", "sc_summary", "sr"], "the PACS is told why"
    assert worker.popen.poll() is None


def _wipe(harness: Harness) -> None:
    """Redis loses this test's data: job store, claims and queued messages."""
    keys = [*harness.redis.scan_iter(match=f"{harness.prefix}:*"), *harness.redis.scan_iter(match=f"{harness.prefix}.*")]
    if keys:
        harness.redis.delete(*keys)


def test_redis_wipe_is_reconciled_and_queued_exactly_once(harness: Harness, tmp_path: Path) -> None:
    env = {"MARROWMAP_RECONCILE_INTERVAL_SECONDS": "1"}
    listener = harness.start_listener(**env)
    study = factory.study("wipe", (factory.SeriesSpec("COR STIR", 3),))
    assert subprocess.run([STORESCU, "-aec", "MARROWMAP", "127.0.0.1", str(harness.port),
                           *map(str, factory.write(study, tmp_path / "wipe"))], check=False).returncode == 0
    [queued] = wait_for(lambda: listener.events("job.queued"), 20, "the job to be queued")
    job_id = queued["job_id"]
    listener.stop()
    _wipe(harness)

    listed = json.loads(harness.cli("status", "--json").stdout)
    assert [(r["job_id"], r["state"]) for r in listed] == [(job_id, "no_job_record")]
    listener = harness.start_listener(**env)  # at start

    def messages() -> list[str]:
        return [m["headers"]["id"] for m in harness.queue_messages()]

    assert wait_for(messages, 20, "the job to be queued again") == [job_id]
    time.sleep(3.5)  # several reconcile passes: still one message, one job
    assert messages() == [job_id] and len(listener.events("reconcile.requeued")) == 1
    record = JobStore.from_url(REDIS_URL, harness.prefix).get(job_id)
    assert record is not None and record.state is JobState.QUEUED and "no record" in record.reason

    _wipe(harness)  # periodically, while running
    assert wait_for(messages, 20, "the job to be queued again") == [job_id]
    time.sleep(3.5)
    assert messages() == [job_id] and len(listener.events("reconcile.requeued")) == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_sigkilled_worker_job_is_redelivered_and_sent_within_180_s(harness: Harness, tmp_path: Path) -> None:
    phantom = phantom_study(tmp_path)
    study_uid = study_uid_of(phantom)
    with running_orthanc(tmp_path / "orthanc", modalities={"marrowmap": Modality("MARROWMAP", harness.port)}) as pacs:
        mm = start_marrowmap(harness, pacs_ae=pacs.aet, pacs_port=pacs.dicom_port)  # default limits and beats
        for path in dicom_files(phantom):
            pacs.upload(path)
        pacs.send_study(study_uid, "marrowmap")

        def analysing() -> bool:
            jobs = mm.jobs(study_uid)
            return bool(jobs) and jobs[0].state is JobState.ANALYSING
        wait_for(analysing, 120, "the analysis to start", interval=0.05)
        mm.worker.popen.send_signal(signal.SIGKILL)  # the whole worker (solo pool: one process)
        killed = time.monotonic()
        mm.worker.popen.wait(10)
        lost = wait_for(lambda: "worker lost" in (out := harness.cli("status").stdout) and out, 60,
                        "status to say the worker is lost")
        assert "re-delivery at" in lost
        replacement = harness._spawn("worker", ["worker", "--queues", "analysis,send", "--pool", "solo"],
                                     harness.env(MARROWMAP_PACS_AE_TITLE=pacs.aet, MARROWMAP_PACS_HOST="127.0.0.1",
                                                 MARROWMAP_PACS_PORT=str(pacs.dicom_port)))
        [job] = wait_for(lambda: [j for j in mm.jobs(study_uid) if j.state is JobState.SENT], 180,
                         "the job to be re-delivered and sent")
        took = time.monotonic() - killed
        print(f"SIGKILLed worker: re-delivered and sent {took:.0f} s after the kill")
        assert took <= 180
        reasons = [h.reason for h in job.history if h.state is JobState.QUEUED]
        assert any("lost" in r and "re-delivered at" in r for r in reasons), reasons
        result = json.loads((mm.results_dir(job.job_id) / "result.json").read_text())
        stored = {i["MainDicomTags"].get("SOPInstanceUID") for i in pacs.instances(study_uid)}
        assert {o["sop_instance_uid"] for o in result["outputs"]} <= stored
        assert replacement.popen.poll() is None


def test_lost_queue_message_is_queued_again_once(harness: Harness, tmp_path: Path) -> None:
    listener = harness.start_listener(MARROWMAP_RECONCILE_INTERVAL_SECONDS="1")
    study = factory.study("lost-message", (factory.SeriesSpec("COR STIR", 2),))
    assert subprocess.run([STORESCU, "-aec", "MARROWMAP", "127.0.0.1", str(harness.port),
                           *map(str, factory.write(study, tmp_path / "lost"))], check=False).returncode == 0
    [queued] = wait_for(lambda: listener.events("job.queued"), 20, "the job to be queued")
    harness.redis.delete(f"{harness.queue_prefix}analysis")  # the broker lost the message, not the job store

    def messages() -> list[str]:
        return [m["headers"]["id"] for m in harness.queue_messages()]

    assert wait_for(messages, 20, "the job to be queued again") == [queued["job_id"]]
    time.sleep(3)
    assert messages() == [queued["job_id"]]
    [requeued] = listener.events("reconcile.requeued")
    assert requeued["reason"] == "queued, but no message in the broker"
