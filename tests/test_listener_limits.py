# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""Acceptance (issue 13): a peer over a receive limit gets a failure status or an abort, never a
crash, and the listener's memory stays bounded (peak RSS read from /proc: VmHWM)."""

from __future__ import annotations

import socket
import struct
import time
import zlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE

from service.statuses import StoreStatus
from tests import dicom_factory as factory
from tests.listener_fixtures import (  # noqa: F401
    CALLED_AE,
    Harness,
    echo,
    harness,
    pynetdicom_send,
    raw_file,
    send_raw_files,
    wait_for,
)

pytestmark = pytest.mark.integration
RSS_LIMIT_KB = 500 * 1024


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"UN", b"UT"):
        return struct.pack("<HH2s2xI", group, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\x00" * (len(raw) % 2)


def deflated_with_private_zeros(sop_uid: str, zeros: int) -> bytes:
    """A well-formed deflated MR data set whose private OB element holds ``zeros`` zero bytes."""
    head = b"".join([
        _element(0x00080016, b"UI", _uid(str(MRImageStorage))),
        _element(0x00080018, b"UI", _uid(sop_uid)),
        _element(0x00080060, b"CS", b"MR"),
        _element(0x0020000D, b"UI", _uid(sop_uid + ".1")),
        _element(0x0020000E, b"UI", _uid(sop_uid + ".2")),
        _element(0x00290010, b"LO", b"BOMB"),
        struct.pack("<HH2s2xI", 0x0029, 0x1000, b"OB", zeros),
    ])
    tail = _element(0x7FE00010, b"OB", b"\x00" * 16)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = b"\x00" * (1 << 20)
    parts = [packer.compress(head)]
    for _ in range(zeros // len(chunk)):
        parts.append(packer.compress(chunk))
    parts += [packer.compress(b"\x00" * (zeros % len(chunk))), packer.compress(tail), packer.flush()]
    return b"".join(parts)


def test_deflate_bomb_and_huge_private_element_are_refused_in_bounded_memory(harness: Harness,
                                                                             tmp_path: Path) -> None:
    bomb = deflated_with_private_zeros("1.2.826.0.1.3680043.8.498.13.1", 1 << 30)  # 1 GiB of zeros
    huge = deflated_with_private_zeros("1.2.826.0.1.3680043.8.498.13.2", 512 << 20)  # a 512 MiB private element
    assert len(bomb) < 1_100_000 and len(huge) < 600_000
    ts = str(DeflatedExplicitVRLittleEndian)
    files = [(raw_file(tmp_path, "bomb.dcm", str(MRImageStorage), "1.2.826.0.1.3680043.8.498.13.1", ts, bomb),
              str(MRImageStorage), ts),
             (raw_file(tmp_path, "huge.dcm", str(MRImageStorage), "1.2.826.0.1.3680043.8.498.13.2", ts, huge),
              str(MRImageStorage), ts)]
    listener = harness.start_listener()

    statuses = send_raw_files(harness.port, files)

    assert statuses == [int(StoreStatus.OVER_LIMIT)] * 2
    reasons = [r["reason"] for r in listener.events("store.refused")]
    assert len(reasons) == 2 and all("max_inflated_mb" in r for r in reasons)
    peak = peak_rss_kb(listener.popen.pid)
    print(f"listener peak RSS under the deflate bomb and the huge element: {peak / 1024:.0f} MiB")
    assert peak < RSS_LIMIT_KB
    assert not list((harness.spool / "incoming").iterdir())
    assert echo(harness.port)


def _closed_by_peer(sock: socket.socket, timeout: float) -> bytes:
    """Everything the listener sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return received
        received += chunk


def test_oversized_pdu_is_aborted_before_any_buffering(harness: Harness) -> None:
    listener = harness.start_listener()
    with socket.create_connection(("127.0.0.1", harness.port)) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF) + b"\x00" * 65536)
        answer = _closed_by_peer(sock, 10)
    assert answer[:1] == b"\x07", "an A-ABORT PDU, then the connection closes"
    event = wait_for(lambda: listener.events("association.limit_exceeded"), 5, "the limit log line")[0]
    assert event["limit"] == "max_pdu_bytes"
    assert peak_rss_kb(listener.popen.pid) < RSS_LIMIT_KB
    assert echo(harness.port)


def test_trickling_peer_cannot_hold_an_association(harness: Harness) -> None:
    listener = harness.start_listener(MARROWMAP_PDU_TIMEOUT_SECONDS="2")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", harness.port)) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 200))
        sock.settimeout(1)
        closed = False
        for _ in range(30):  # one byte every 0.5 s: each resets the socket's own idle time-out
            try:
                sock.sendall(b"\x00")
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.5)
    assert closed and time.monotonic() - started < 10
    event = wait_for(lambda: listener.events("association.limit_exceeded"), 5, "the limit log line")[0]
    assert event["limit"] == "pdu_timeout_seconds"
    assert echo(harness.port)


def test_instance_over_the_size_limit_aborts_and_per_study_limit_refuses(harness: Harness, tmp_path: Path) -> None:
    listener = harness.start_listener(MARROWMAP_MAX_INSTANCE_MB="1", MARROWMAP_MAX_INSTANCES_PER_STUDY="2")
    big = [dcmread(p) for p in factory.write(
        factory.study("limits-big", (factory.SeriesSpec("COR STIR", 1),), rows=1024, cols=1024), tmp_path / "big")]
    ae = AE(ae_title="BIGSCU")
    ae.add_requested_context(MRImageStorage, str(ExplicitVRLittleEndian))
    assoc = ae.associate("127.0.0.1", harness.port, ae_title=CALLED_AE)
    assert assoc.is_established
    status = assoc.send_c_store(big[0])
    assert not status, "a 2 MiB instance over max_instance_mb=1 gets no response: the association is aborted"
    wait_for(lambda: not assoc.is_established, 10, "the association to end")
    assert wait_for(lambda: listener.events("association.limit_exceeded"), 5, "the log")[0]["limit"] == "max_instance_mb"

    small = [dcmread(p) for p in factory.write(
        factory.study("limits-many", (factory.SeriesSpec("COR STIR", 3),), rows=32, cols=32), tmp_path / "many")]
    assert pynetdicom_send(harness.port, small) == [0, 0, int(StoreStatus.OVER_LIMIT)]
    assert any(r["reason"] == "over max_instances_per_study" for r in listener.events("store.refused"))
    assert echo(harness.port)
