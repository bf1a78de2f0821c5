"""Who may associate, and what slow, silent or garbage connections can do: real `marrowmap listen`
subprocesses, real SCUs (pynetdicom, dcmtk storescu) and raw sockets from several loopback
addresses (127.0.0.0/8 is all local on Linux)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests import dicom_factory as factory
from tests.listener_fixtures import CALLED_AE, MARROWMAP, Harness, harness, storescu, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

ALLOW = "PACS01@127.0.0.1,ECHOSCU@127.0.0.1,MODALITY@127.0.0.2"


def associate(port: int, calling: str, *, called: str = CALLED_AE, source: str = "127.0.0.1") -> Any:
    """An association request from ``source`` (released again when it was accepted)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title=called, bind_address=(source, 0))
    if assoc.is_established:
        assoc.release()
    return assoc


def accepted(port: int, calling: str, *, source: str = "127.0.0.1") -> bool:
    """True when an association request from ``source`` was accepted."""
    return bool(associate(port, calling, source=source).is_released)


def rejection(assoc: Any) -> tuple[int, int, int]:
    """(result, source, reason) of a rejected association."""
    assert assoc.is_rejected, "the association was not rejected"
    rsp = assoc.acceptor.primitive
    return int(rsp.result), int(rsp.result_source), int(rsp.diagnostic)


def audit_events(spool: Path) -> list[dict[str, Any]]:
    """The audit trail as parsed JSON lines."""
    path = spool / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_allow_list_outcomes_and_reasons(harness: Harness) -> None:  # noqa: F811
    listener = harness.start_listener(MARROWMAP_ALLOWED_CALLING_AETS=ALLOW)
    port = harness.port
    wrong_called = associate(port, "PACS01", called="NOTUS")
    wrong_host = associate(port, "PACS01", source="127.0.0.3")
    unknown = associate(port, "STRANGER")
    health_from_elsewhere = associate(port, "MM-HEALTH", source="127.0.0.3")

    assert rejection(wrong_called) == (1, 1, 7)  # permanent, service user, called AE not recognised
    assert rejection(wrong_host) == (1, 1, 3)  # ... calling AE not recognised
    assert rejection(unknown) == (1, 1, 3)
    assert rejection(health_from_elsewhere) == (1, 1, 3)
    assert accepted(port, "PACS01")
    assert accepted(port, "MODALITY", source="127.0.0.2")
    assert accepted(port, "MM-HEALTH")  # the health check, from this host

    logged = wait_for(lambda: r if len(r := listener.events("association.rejected")) >= 4 else None, 5,
                      "four rejections in the log")
    reasons = {(r["calling_ae"], r["peer"].split(":")[0]): r["reason"] for r in logged}
    assert reasons == {
        ("PACS01", "127.0.0.1"): "called AE title 'NOTUS' is not ours (MARROWMAP)",
        ("PACS01", "127.0.0.3"): "calling AE title 'PACS01' is not allowed from 127.0.0.3",
        ("STRANGER", "127.0.0.1"): "calling AE title 'STRANGER' is not on the allow-list",
        ("MM-HEALTH", "127.0.0.3"): "health-check AE title 'MM-HEALTH' from 127.0.0.3 (only from this host)",
    }
    audited = [(e["EventIdentification"]["EventID"]["originalText"],
                e["EventIdentification"].get("EventOutcomeDescription", ""),
                e["ActiveParticipant"][0]["UserID"], e["ActiveParticipant"][0].get("NetworkAccessPointID"))
               for e in audit_events(harness.spool) if e["ActiveParticipant"][0]["UserID"] != "MARROWMAP"]
    assert sorted(a for a in audited if a[0] == "Security Alert") == sorted(
        ("Security Alert", reason, ae, peer) for (ae, peer), reason in reasons.items())
    assert ("User Authentication", "", "MODALITY", "127.0.0.2") in audited


def test_require_allow_list_refuses_to_start_without_one(harness: Harness) -> None:  # noqa: F811
    run = subprocess.run([*MARROWMAP, "listen"], env=harness.env(MARROWMAP_REQUIRE_ALLOW_LIST="true"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "require_allow_list is set but allowed_calling_aets is empty" in run.stderr
    refused = [json.loads(line) for line in run.stderr.splitlines() if '"listener.start_refused"' in line]
    assert refused and "allowed_calling_aets is empty" in refused[0]["reason"]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", harness.port)) != 0, "nothing listens"


class Trickler:
    """Connections that send a partial A-ASSOCIATE-RQ and then one byte every ``every`` seconds."""

    def __init__(self, port: int, sources: list[str], every: float = 0.5) -> None:
        self.sockets: list[socket.socket] = []
        self.cut_after: list[float] = []  # seconds from connect until the listener closed it
        self._started = time.monotonic()
        self._stop = threading.Event()
        for source in sources:
            sock = socket.socket()
            sock.bind((source, 0))
            sock.settimeout(2)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"\x01\x00\x00\x00\x00\xcd")  # A-ASSOCIATE-RQ, 205 bytes to come
            self.sockets.append(sock)
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        alive = list(self.sockets)
        next_byte = time.monotonic() + self._every
        while alive and not self._stop.is_set():
            readable, _, _ = select.select(alive, [], [], max(0.0, next_byte - time.monotonic()))
            for sock in readable:  # the only thing the listener sends before the request is complete: EOF
                with contextlib.suppress(OSError):
                    sock.recv(64)
                self.cut_after.append(time.monotonic() - self._started)
                alive.remove(sock)
            if time.monotonic() >= next_byte:
                next_byte += self._every
                for sock in alive:
                    with contextlib.suppress(OSError):
                        sock.send(b"\x00")

    def stop(self) -> None:
        """Stop trickling, close the sockets."""
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_trickling_connections_do_not_lock_out_an_allowed_peer(harness: Harness, tmp_path: Path) -> None:  # noqa: F811
    """20 trickling connections: 10 from addresses on no allow-list entry, 10 from one listed address."""
    harness.start_listener(MARROWMAP_ALLOWED_CALLING_AETS=f"{ALLOW},STORESCU@127.0.0.1",
                           MARROWMAP_MAX_ASSOCIATIONS="6", MARROWMAP_ASSOCIATION_REQUEST_TIMEOUT_SECONDS="4")
    study = factory.study("gate-trickle", (factory.SeriesSpec("COR STIR", 3),))
    files = factory.write(study, tmp_path / "study")
    sources = [f"127.0.0.{10 + i}" for i in range(10)] + ["127.0.0.2"] * 10
    started = time.monotonic()
    trickler = Trickler(harness.port, sources)
    try:
        push = storescu(harness.port, files, calling_ae="STORESCU", timeout=10)
        pushed_in = time.monotonic() - started
        wait_for(lambda: len(trickler.cut_after) == 20, 15, "the listener to cut every trickling connection")
    finally:
        trickler.stop()
    assert push.returncode == 0, push.stderr
    print(f"push completed {pushed_in:.2f} s after 20 trickling connections started; "
          f"trickling connections cut after {min(trickler.cut_after):.1f}-{max(trickler.cut_after):.1f} s")
    assert pushed_in < 10
    assert max(trickler.cut_after) < 4 + 1  # the request time-out, plus slack
    spooled = list((harness.spool / "incoming").glob("*/*/*.dcm")) or list(harness.spool.glob("ready/*/*/*/*.dcm"))
    assert len(spooled) == 3


def test_silent_and_garbage_connections_free_their_slots(harness: Harness) -> None:  # noqa: F811
    listener = harness.start_listener(MARROWMAP_MAX_ASSOCIATIONS="2", MARROWMAP_ASSOCIATION_REQUEST_TIMEOUT_SECONDS="2")
    started = time.monotonic()
    silent = [socket.create_connection(("127.0.0.1", harness.port)) for _ in range(2)]
    with socket.create_connection(("127.0.0.1", harness.port)) as garbage:
        garbage.sendall(b"\x99" * 64)
    wait_for(lambda: accepted(harness.port, "PACS01"), 5, "a free slot", interval=0.2)
    freed_in = time.monotonic() - started
    for sock in silent:
        assert sock.recv(1) == b"", "the silent connection was closed by the listener"
        sock.close()
    print(f"slots of 2 silent connections free after {freed_in:.1f} s (request time-out 2 s)")
    assert freed_in < 4

    def refused_for_silence() -> bool:  # the refusal is logged just after the socket is shut down
        reasons = [r["reason"] for r in listener.events("connection.refused")]
        return reasons.count("no complete A-ASSOCIATE-RQ within 2 s") >= 2

    wait_for(refused_for_silence, 5, "both silent connections logged as refused")
