# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: the listener SIGKILLed mid-transfer and restarted loses nothing it acknowledged,
and the study is sealed and queued once. Plus recovery from each intermediate spool state."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from marrowmap.settings import Settings
from service.enqueue import JobQueue
from service.sealer import Sealer
from service.spool import QUEUED_MARKER, Spool
from tests import dicom_factory as factory
from tests.listener_fixtures import CALLED_AE, Harness, harness, spooled_files, wait_for  # noqa: F401

pytestmark = pytest.mark.integration


def test_sigkill_mid_transfer_loses_nothing_acknowledged(harness: Harness) -> None:
    study = factory.study("crash-sigkill", (factory.SeriesSpec("COR STIR", 40), factory.SeriesSpec("COR T1", 40)),
                          rows=128, cols=128)
    for ds in study:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    listener = harness.start_listener(MARROWMAP_QUIET_SECONDS="2")
    ae = AE(ae_title="CRASHTEST")
    ae.add_requested_context(study[0].SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", harness.port, ae_title=CALLED_AE)
    assert assoc.is_established
    acknowledged: list[str] = []
    killer = threading.Timer(0.0, listener.kill)
    for n, ds in enumerate(study):
        status = assoc.send_c_store(ds)
        if status and status.Status == 0:
            acknowledged.append(str(ds.SOPInstanceUID))
        if n == 25:
            killer = threading.Timer(0.01, listener.kill)  # lands while the next C-STOREs are in flight
            killer.start()
        if not assoc.is_established:
            break
    killer.join()
    assoc.abort()
    assert 26 <= len(acknowledged) < len(study)
    spool_after_crash = spooled_files(harness.spool)
    assert set(acknowledged) <= set(spool_after_crash)
    assert harness.queue_messages() == []

    restarted = harness.start_listener(MARROWMAP_QUIET_SECONDS="2")
    wait_for(harness.queue_messages, 20, "the resumed study's job")
    time.sleep(3)
    messages = harness.queue_messages()
    assert len(messages) == 1
    job = messages[0]["kwargs"]["job"]
    assert job["study_instance_uid"] == str(study[0].StudyInstanceUID)
    stored = spooled_files(harness.spool)
    assert set(acknowledged) <= set(stored)
    assert sum(s["instance_count"] for s in job["series"]) == len(stored) <= len(acknowledged) + 1
    assert restarted.events("sealer.resume_incoming")


def _settings(h: Harness) -> Settings:
    return Settings(
        _env_file=None, spool_dir=h.spool, quiet_seconds=0.2, broker_url="redis://127.0.0.1:6379/15",
        queue_prefix=h.queue_prefix, job_store_prefix=h.prefix, min_free_disk_mb=1,
    )


def _spooled_study(spool: Spool, seed: str) -> list[str]:
    study = factory.study(seed, (factory.SeriesSpec("COR STIR", 3),))
    paths = factory.write(study, spool.root.parent / f"src-{seed}")
    for ds, path in zip(study, paths, strict=True):
        spool.store_instance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                             (path.read_bytes(),))
    return [str(study[0].StudyInstanceUID)]


def test_recovery_from_each_spool_state(harness: Harness) -> None:
    """A crash after the move to 'sealing', after the batch was built, after the broker took the job."""
    settings = _settings(harness)
    queue = JobQueue(settings)
    spool = Spool(harness.spool)
    spool.ensure_layout()
    [study_a] = _spooled_study(spool, "recover-a")
    [study_b] = _spooled_study(spool, "recover-b")
    time.sleep(0.3)
    sealing_a = spool.begin_seal(study_a, 0.2)  # crash 1: the study sits in sealing/
    assert sealing_a is not None
    assert spool.begin_seal(study_b, 0.2) is not None

    Sealer(Spool(harness.spool), settings, queue).recover()  # restart 1: builds and queues both
    messages = harness.queue_messages()
    assert sorted(m["kwargs"]["job"]["study_instance_uid"] for m in messages) == sorted([study_a, study_b])
    assert not list((harness.spool / "sealing").iterdir())
    batch_a = harness.spool / "ready" / study_a / "001"
    assert (batch_a / QUEUED_MARKER).is_file()

    # crash 2: the broker took the job but the marker was never written -> not sent again
    (batch_a / QUEUED_MARKER).unlink()
    Sealer(Spool(harness.spool), settings, queue).recover()
    assert len(harness.queue_messages()) == 2
    assert (batch_a / QUEUED_MARKER).is_file()

    # crash 3: built but the job never reached the broker -> queued exactly once on restart
    batch_b = harness.spool / "ready" / study_b / "001"
    job_b = next(m["kwargs"]["job"]["job_id"] for m in messages if m["kwargs"]["job"]["study_instance_uid"] == study_b)
    (batch_b / QUEUED_MARKER).unlink()
    harness.redis.delete(harness.queue_prefix + "analysis", f"{harness.prefix}:enqueue:{job_b}")
    Sealer(Spool(harness.spool), settings, queue).recover()
    Sealer(Spool(harness.spool), settings, queue).recover()
    assert [m["kwargs"]["job"]["job_id"] for m in harness.queue_messages()] == [job_b]

    # a half-built batch folder is discarded and rebuilt from 'sealing'
    [study_c] = _spooled_study(spool, "recover-c")
    time.sleep(0.3)
    sealing_c = spool.begin_seal(study_c, 0.2)
    assert sealing_c is not None
    half = harness.spool / "ready" / study_c / f".build-{sealing_c.job_id}"
    half.mkdir(parents=True)
    shutil.copytree(sealing_c.path, half / "partial")
    Sealer(Spool(harness.spool), settings, queue).recover()
    assert not half.exists()
    assert sorted(p.name for p in (harness.spool / "ready" / study_c).iterdir()) == ["001"]
    assert len(list((harness.spool / "ready" / study_c / "001").glob("*/*.dcm"))) == 3
    queue.close()


def test_late_instances_make_a_new_batch_with_all_series(harness: Harness, tmp_path: Path) -> None:
    settings = _settings(harness)
    queue = JobQueue(settings)
    spool = Spool(harness.spool)
    spool.ensure_layout()
    sealer = Sealer(spool, settings, queue)
    study = factory.study("late", (factory.SeriesSpec("COR T1", 2), factory.SeriesSpec("COR STIR", 2)))
    paths = factory.write(study, tmp_path / "late")
    for ds, path in list(zip(study, paths, strict=True))[:2]:  # the T1 series
        spool.store_instance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                             (path.read_bytes(),))
    time.sleep(0.3)
    sealer.run_once()
    for ds, path in list(zip(study, paths, strict=True))[2:]:  # the STIR series arrives late
        spool.store_instance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                             (path.read_bytes(),))
    time.sleep(0.3)
    sealer.run_once()
    jobs = sorted((m["kwargs"]["job"] for m in harness.queue_messages()), key=lambda j: j["spool_path"])
    assert [j["spool_path"].rsplit("/", 1)[1] for j in jobs] == ["001", "002"]
    assert [len(j["series"]) for j in jobs] == [1, 2], "the late batch carries the earlier series too"
    assert jobs[0]["job_id"] != jobs[1]["job_id"]
    second = harness.spool / jobs[1]["spool_path"]
    assert len(list(second.glob("*/*.dcm"))) == 4
    queue.close()
