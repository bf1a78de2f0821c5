# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: storescu and a pynetdicom SCU push a multi-series MR study; the spool holds the
data sets byte for byte; after the quiet period exactly one job is on the real Redis queue."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from marrowmap.contract import TASK_ANALYZE, JobMessage
from tests import dicom_factory as factory
from tests.listener_fixtures import (  # noqa: F401
    Harness,
    harness,
    send_raw_files,
    spooled_files,
    storescu,
    wait_for,
)

pytestmark = pytest.mark.integration


def _assert_one_job(h: Harness, study: Sequence[Dataset], expected_series: Counter[str]) -> JobMessage:
    wait_for(h.queue_messages, 20, "a job on the analysis queue")
    time.sleep(2.5)  # more than the quiet period: nothing else may arrive
    messages = h.queue_messages()
    assert len(messages) == 1, messages
    message = messages[0]
    assert message["headers"]["task"] == TASK_ANALYZE
    job = JobMessage.model_validate(message["kwargs"]["job"])
    assert message["headers"]["id"] == job.job_id
    assert job.study_instance_uid == str(study[0].StudyInstanceUID)
    assert {s.series_instance_uid: s.instance_count for s in job.series} == dict(expected_series)
    assert all(s.modality == "MR" for s in job.series)
    folder = h.spool / job.spool_path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["job_id"] == job.job_id
    assert sum(1 for _ in folder.glob("*/*.dcm")) == sum(expected_series.values())
    return job


def test_storescu_push_is_spooled_byte_identical_and_queued_once(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("receive-storescu")
    files = factory.write(study, tmp_path / "send")
    listener = harness.start_listener()

    result = storescu(harness.port, files)
    assert result.returncode == 0, result.stderr

    job = _assert_one_job(harness, study, Counter(str(d.SeriesInstanceUID) for d in study))
    spooled = spooled_files(harness.spool)
    assert len(spooled) == len(study)
    for path in files:
        sop = factory.sop_uid_of(path)
        assert factory.dataset_bytes(spooled[sop]) == factory.dataset_bytes(path), f"data set of {sop} changed"
    assert job.calling_ae == "STORESCU"
    sealed = listener.events("study.sealed")
    assert len(sealed) == 1
    assert sealed[0]["instances"] == len(study) and sealed[0]["series"] == 3
    assert sealed[0]["route"] == "analyse" and "HIP" in sealed[0]["route_reason"]
    closed = [r for r in listener.events("association.closed") if r["calling_ae"] == "STORESCU"]
    assert len(closed) == 1 and closed[0]["stored"] == len(study) and closed[0]["outcome"] == "released"
    # no patient identity in the logs
    log_text = listener.log_path.read_text()
    assert "Synthetic^Phantom" not in log_text and "SYNTH-0001" not in log_text


def test_pynetdicom_push_in_several_transfer_syntaxes(harness: Harness, tmp_path: Path) -> None:
    """Implicit VR, deflated, RLE-compressed and Enhanced MR instances are stored as received."""
    study = factory.study("receive-pynetdicom")
    enhanced = factory.enhanced_mr("receive-pynetdicom")
    as_sent = [*study[:4], factory.compressed(study[4]), *study[5:], enhanced]
    syntaxes = [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
    paths = []
    for n, ds in enumerate(as_sent):
        ts = None if hasattr(ds, "file_meta") and ds.file_meta.TransferSyntaxUID.is_compressed else syntaxes[n % 2]
        paths.extend(factory.write([ds], tmp_path / f"send{n}", transfer_syntax=ts))
    datasets = [dcmread(p) for p in paths]
    harness.start_listener()

    statuses = send_raw_files(
        harness.port, [(p, str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for p, d in zip(paths, datasets, strict=True)]
    )
    assert statuses == [0] * len(datasets)

    expected = Counter(str(d.SeriesInstanceUID) for d in datasets)
    _assert_one_job(harness, datasets, expected)
    spooled = spooled_files(harness.spool)
    for path in paths:
        sop = factory.sop_uid_of(path)
        stored = spooled[sop]
        assert factory.dataset_bytes(stored) == factory.dataset_bytes(path), f"data set of {sop} changed"
        assert dcmread(stored).file_meta.TransferSyntaxUID == dcmread(path).file_meta.TransferSyntaxUID
