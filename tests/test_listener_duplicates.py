# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: the same study pushed twice -> no duplicate files, one extra job at most, logged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from tests import dicom_factory as factory
from tests.listener_fixtures import Harness, harness, send_raw_files, storescu, wait_for  # noqa: F401

pytestmark = pytest.mark.integration


def _batch_files(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*/*.dcm"))


def test_same_study_pushed_twice(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("duplicate-push")
    files = factory.write(study, tmp_path / "send")
    sops = sorted(str(d.SOPInstanceUID) for d in study)
    listener = harness.start_listener(MARROWMAP_QUIET_SECONDS="3")

    # twice before the study is sealed (one association): replaced in place, one batch, one job
    raw = [(p, str(MRImageStorage), str(ExplicitVRLittleEndian)) for p in files]
    assert send_raw_files(harness.port, raw + raw) == [0] * (2 * len(files))
    wait_for(harness.queue_messages, 20, "the first job")
    time.sleep(4)
    assert len(harness.queue_messages()) == 1
    closed = [r for r in listener.events("association.closed") if r["calling_ae"] == "PYSCU"]
    assert closed[0]["stored"] == 2 * len(study) and closed[0]["replaced"] == len(study)

    # again after the study was sealed: a second batch with the same files, one extra job
    assert storescu(harness.port, files).returncode == 0
    wait_for(lambda: len(harness.queue_messages()) == 2, 20, "the second job")
    time.sleep(4)
    messages = harness.queue_messages()
    assert len(messages) == 2
    study_dir = harness.spool / "ready" / str(study[0].StudyInstanceUID)
    batches = sorted(p for p in study_dir.iterdir() if p.is_dir())
    assert [b.name for b in batches] == ["001", "002"]
    for batch in batches:
        assert _batch_files(batch) == sops, "every batch holds each instance exactly once"
    assert not list((harness.spool / "incoming").iterdir())
    jobs = {m["kwargs"]["job"]["spool_path"] for m in messages}
    assert jobs == {f"ready/{study_dir.name}/001", f"ready/{study_dir.name}/002"}
    resent = listener.events("study.resent")
    assert len(resent) == 1
    assert resent[0]["resent_instances"] == len(study) and resent[0]["batch"] == 2
    assert "not duplicated" in resent[0]["note"] and "one new job" in resent[0]["note"]
