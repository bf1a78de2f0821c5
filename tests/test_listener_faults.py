# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance: garbage, truncated and mismatched data sets, a dropped association, a full disk
and an allow-list: failure statuses or rejections, and the listener keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE

from service.statuses import StoreStatus
from tests import dicom_factory as factory
from tests.listener_fixtures import (  # noqa: F401
    CALLED_AE,
    STORESCU,
    Harness,
    echo,
    free_port,
    harness,
    raw_file,
    send_raw_files,
    storescu,
    wait_for,
)

pytestmark = pytest.mark.integration
EXPLICIT = str(ExplicitVRLittleEndian)


def _normal_push_works(h: Harness, tmp: Path, seed: str, calling_ae: str = "STORESCU") -> None:
    study = factory.study(seed, (factory.SeriesSpec("COR STIR", 3),))
    files = factory.write(study, tmp / seed)
    assert storescu(h.port, files, calling_ae=calling_ae).returncode == 0

    def jobs() -> list[dict[str, Any]]:
        return [m["kwargs"]["job"] for m in h.queue_messages()
                if m["kwargs"]["job"]["study_instance_uid"] == str(study[0].StudyInstanceUID)]

    wait_for(jobs, 20, "a job for the normal push")
    time.sleep(1.5)
    assert len(jobs()) == 1
    assert [s["instance_count"] for s in jobs()[0]["series"]] == [3]


def test_bad_data_sets_get_failure_statuses_and_the_listener_survives(harness: Harness, tmp_path: Path) -> None:
    good = factory.study("faults-good", (factory.SeriesSpec("COR T1", 1),), rows=64, cols=64)[0]
    path = factory.write([good], tmp_path / "good")[0]
    encoded = factory.dataset_bytes(path)
    sop = str(good.SOPInstanceUID)
    rng = np.random.default_rng(7)
    cases = [
        ("garbage.dcm", sop, EXPLICIT, rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), StoreStatus.CANNOT_DECODE),
        ("garbage-implicit.dcm", sop, str(ImplicitVRLittleEndian), b"\x08\x00\x05\x00" + rng.bytes(3000),
         StoreStatus.CANNOT_DECODE),
        ("truncated-pixels.dcm", sop, EXPLICIT, encoded[:-1000], StoreStatus.CANNOT_DECODE),
        ("truncated-header.dcm", sop, EXPLICIT, encoded[:205], StoreStatus.CANNOT_DECODE),
        ("cut-before-pixels.dcm", sop, EXPLICIT, encoded[:encoded.rfind(b"\xe0\x7f\x10\x00")],
         StoreStatus.CANNOT_UNDERSTAND),
        ("other-sop.dcm", "1.2.3.4.5.6", EXPLICIT, encoded, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS),
        ("complete.dcm", sop, EXPLICIT, encoded, StoreStatus.SUCCESS),
    ]
    files = [(raw_file(tmp_path, name, MRImageStorage, uid, ts, data), str(MRImageStorage), ts)
             for name, uid, ts, data, _ in cases]
    listener = harness.start_listener()

    statuses = send_raw_files(harness.port, files)

    assert statuses == [int(expected) for *_, expected in cases]
    refused = listener.events("store.refused")
    assert len(refused) == 6 and all(r["reason"] for r in refused)
    assert any("truncated" in r["reason"] for r in refused)
    closed = wait_for(lambda: [r for r in listener.events("association.closed") if r["calling_ae"] == "PYSCU"],
                      5, "the association's log line (written when its connection has closed)")
    assert closed[0]["failed"] == {"CANNOT_DECODE": 4, "CANNOT_UNDERSTAND": 1, "DATASET_DOES_NOT_MATCH_SOP_CLASS": 1}
    assert closed[0]["stored"] == 1
    stored = list((harness.spool / "incoming").glob("*/*/*.dcm")) + list((harness.spool / "ready").glob("*/*/*/*.dcm"))
    assert [p.stem for p in stored] == [sop], "only the complete instance was stored"
    assert echo(harness.port)
    _normal_push_works(harness, tmp_path, "faults-after-bad")


def test_dropped_association_mid_transfer(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("faults-drop", (factory.SeriesSpec("COR STIR", 120),), rows=256, cols=256)
    files = factory.write(study, tmp_path / "drop")
    listener = harness.start_listener()
    incoming = harness.spool / "incoming"
    sender = subprocess.Popen(
        [STORESCU, "-aet", "DROPPER", "-aec", CALLED_AE, "127.0.0.1", str(harness.port), *map(str, files)],
        env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(list(incoming.glob("*/*/*.dcm"))) >= 5, 30, "the transfer to be under way", 0.01)
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
    dropped = wait_for(lambda: [r for r in listener.events("association.closed") if r["calling_ae"] == "DROPPER"],
                       10, "the dropped association to be logged")
    assert dropped[0]["outcome"] != "released"
    received = dropped[0]["stored"]
    assert 5 <= received < len(files)
    time.sleep(0.2)
    for path in incoming.glob("*/*/*.dcm"):  # every stored instance is complete
        assert dcmread(path).pixel_array.shape == (256, 256)
    assert echo(harness.port)
    _normal_push_works(harness, tmp_path, "faults-after-drop")


def test_disk_below_watermark_answers_out_of_resources(harness: Harness, tmp_path: Path) -> None:
    study = factory.study("faults-disk", (factory.SeriesSpec("COR STIR", 2),))
    path = factory.write(study, tmp_path / "disk")
    listener = harness.start_listener(MARROWMAP_MIN_FREE_DISK_MB=str(10**12))

    statuses = send_raw_files(harness.port, [(p, str(MRImageStorage), EXPLICIT) for p in path])

    assert statuses == [int(StoreStatus.OUT_OF_RESOURCES)] * 2
    assert listener.events("store.out_of_resources")
    assert not list((harness.spool / "incoming").iterdir())
    assert echo(harness.port), "the listener keeps serving"


def test_allow_list_rejects_unknown_calling_ae(harness: Harness, tmp_path: Path) -> None:
    listener = harness.start_listener(MARROWMAP_ALLOWED_CALLING_AETS="PACS1,ECHOSCU")
    assert "open_to_any_caller" not in listener.log_path.read_text()
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(MRImageStorage, EXPLICIT)
    assoc = ae.associate("127.0.0.1", harness.port, ae_title=CALLED_AE)
    assert assoc.is_rejected
    assert wait_for(lambda: listener.events("association.rejected"), 5, "the rejection log")[0]["calling_ae"] == "INTRUDER"
    _normal_push_works(harness, tmp_path, "faults-allowed", calling_ae="PACS1")


def test_no_allow_list_is_said_plainly(harness: Harness) -> None:
    listener = harness.start_listener()
    warning = listener.events("listener.open_to_any_caller")
    assert warning and "ANY calling AE" in warning[0]["note"]


def test_broker_outage_keeps_the_job_until_redis_is_back(harness: Harness, tmp_path: Path) -> None:
    redis_port = free_port()
    broker = f"redis://127.0.0.1:{redis_port}/0"
    listener = harness.start_listener(MARROWMAP_BROKER_URL=broker)
    study = factory.study("faults-broker", (factory.SeriesSpec("COR STIR", 2),))
    assert storescu(harness.port, factory.write(study, tmp_path / "broker")).returncode == 0, "accepted while down"
    wait_for(lambda: listener.events("job.queue_unavailable"), 20, "the sealer to notice the broker is down")
    assert listener.events("study.sealed")
    server = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=redis_port)
        wait_for(lambda: client.llen(harness.queue_prefix + "analysis") == 1, 30, "the job once Redis is back")
        wait_for(lambda: listener.events("job.queued"), 10, "the queued log line")
        assert len(listener.events("job.queued")) == 1 and client.llen(harness.queue_prefix + "analysis") == 1
    finally:
        server.terminate()
        server.wait(10)
