# ruff: noqa: F811  (pytest fixtures imported from listener_fixtures)
"""The waiting reactors (service.reactor): an association's DUL wakes on a queued primitive, and the
listener's wake-up sockets end with their associations (no descriptor leak)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.transport import AssociationSocket

from service.reactor import WAIT_SECONDS, WaitingDUL, use_waiting_reactor
from tests import dicom_factory as factory
from tests.listener_fixtures import Harness, harness, pynetdicom_send, wait_for  # noqa: F401


def test_waiting_dul_returns_when_a_primitive_is_queued() -> None:
    assoc = Association(AE(), "requestor")
    dul: DULServiceProvider = assoc.dul
    ours, peer = socket.socketpair()
    assoc.set_socket(AssociationSocket(assoc, client_socket=ours))
    use_waiting_reactor(dul)
    assert isinstance(dul, WaitingDUL)
    threading.Timer(0.002, dul.send_pdu, [A_RELEASE()]).start()
    started = time.perf_counter()
    assert dul._run_loop_delay == 0.0
    assert time.perf_counter() - started < WAIT_SECONDS  # woken by the primitive, not the time-out
    for end in (*dul._wake, ours, peer):
        end.close()


@pytest.mark.integration
def test_wake_sockets_end_with_their_associations(harness: Harness) -> None:
    listener = harness.start_listener()
    study = factory.study("reactor-fds")[:2]
    factory.write(study, harness.tmp / "send")  # gives the data sets their file meta (transfer syntax)
    fds = Path(f"/proc/{listener.popen.pid}/fd")
    assert pynetdicom_send(harness.port, study) == [0, 0]
    time.sleep(0.5)
    before = len(os.listdir(fds))
    for _ in range(10):
        assert pynetdicom_send(harness.port, study) == [0, 0]
    wait_for(lambda: len(os.listdir(fds)) <= before, 5, "the listener's descriptors to be back")
