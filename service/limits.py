"""Receive limits enforced on the wire, before pynetdicom buffers anything.

pynetdicom reads a PDU by its declared length (up to 4 GiB) and collects a whole data set in
memory before the C-STORE handler sees it; a peer can stall a PDU by sending one byte per
network time-out. The listener's association sockets therefore check, per association:

* every PDU's declared length against ``max_pdu_bytes`` (A-ASSOCIATE-RQ included);
* the data-set bytes of one DIMSE message (P-DATA-TF fragments up to the "last" flag) against
  ``max_instance_mb``;
* that a PDU arrives whole within ``pdu_timeout_seconds`` of its first byte, so a trickling
  peer cannot keep pynetdicom's idle timer (``network_timeout_seconds``) from expiring.

A peer over a limit is aborted (A-ABORT, then the connection closes); the event is logged
with the limit. The inflated size of deflated data sets is checked in ``dataset_check``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler

from marrowmap.logs import get_logger
from marrowmap.settings import Settings
from service.reactor import use_waiting_reactor, wait_for_messages
from service.store_messages import use_direct_store_messages

log = get_logger(__name__)

_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")
_P_DATA_TF = 0x04
_COMMAND_FLAG = 0x01
_LAST_FRAGMENT_FLAG = 0x02


def _abort_pdu() -> bytes:
    pdu = A_ABORT_RQ()
    pdu.source = 0x02  # service provider
    pdu.reason_diagnostic = 0x06  # invalid PDU parameter value
    return bytes(pdu.encode())


_ABORT = _abort_pdu()


class LimitExceeded(RuntimeError):
    """A peer went over a receive limit; pynetdicom's reactor aborts the association on it."""


@dataclass(frozen=True, slots=True)
class ReceiveLimits:
    """The per-association receive limits."""

    max_pdu_bytes: int
    max_instance_bytes: int
    pdu_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ReceiveLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_pdu_bytes=settings.max_pdu_bytes,
            max_instance_bytes=settings.max_instance_mb * 1024 * 1024,
            pdu_timeout_seconds=settings.pdu_timeout_seconds,
        )


def data_set_bytes(pdu_body: bytes | bytearray) -> list[tuple[int, bool]]:
    """(data-set bytes, last fragment) of each PDV item of a P-DATA-TF body; command fragments count 0."""
    items = []
    pos = 0
    while pos + _PDV_HEADER.size <= len(pdu_body):
        length, _context, control = _PDV_HEADER.unpack_from(pdu_body, pos)
        is_data = not control & _COMMAND_FLAG
        items.append((max(0, length - 2) if is_data else 0, is_data and bool(control & _LAST_FRAGMENT_FLAG)))
        pos += 4 + length
    return items


class PduReader:
    """Replaces ``recv`` of one association socket: reads PDUs while enforcing :class:`ReceiveLimits`.

    pynetdicom's DUL reads each PDU as ``recv(6)`` (type, length) then ``recv(length)``.
    """

    def __init__(self, assoc_socket: AssociationSocket, limits: ReceiveLimits, peer: str) -> None:
        self._assoc_socket = assoc_socket
        self._limits = limits
        self._peer = peer
        self._deadline = 0.0
        self._pdu_type: int | None = None
        self._message_bytes = 0

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` of the current PDU within its deadline; check the limits."""
        header = self._pdu_type is None
        if header:
            self._deadline = time.monotonic() + self._limits.pdu_timeout_seconds
        data = self._read(nr_bytes)
        if header:
            if len(data) == _HEADER.size:
                pdu_type, _, length = _HEADER.unpack(data)
                if length > self._limits.max_pdu_bytes:
                    self._exceeded("max_pdu_bytes", f"PDU of {length} bytes declared", self._limits.max_pdu_bytes)
                self._pdu_type = pdu_type
            return data
        if self._pdu_type == _P_DATA_TF:
            for size, last in data_set_bytes(data):
                self._message_bytes += size
                if self._message_bytes > self._limits.max_instance_bytes:
                    self._exceeded("max_instance_mb", f"data set over {self._message_bytes} bytes",
                                   self._limits.max_instance_bytes)
                if last:
                    self._message_bytes = 0
        self._pdu_type = None
        return data

    def _read(self, nr_bytes: int) -> bytearray:
        """Up to ``nr_bytes`` (fewer when the peer closes), received straight into the returned buffer."""
        sock: socket.socket | None = self._assoc_socket.socket
        if sock is None:
            return bytearray()
        out = bytearray(nr_bytes)  # bounded: a PDU's declared length is checked against max_pdu_bytes first
        got = 0
        idle = sock.gettimeout()
        with memoryview(out) as view:
            try:
                while got < nr_bytes:
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        self._exceeded("pdu_timeout_seconds", f"PDU incomplete ({got} of {nr_bytes} bytes)",
                                       self._limits.pdu_timeout_seconds)
                    sock.settimeout(remaining if idle is None else min(remaining, idle))
                    try:
                        received = sock.recv_into(view[got:], nr_bytes - got)
                    except TimeoutError:
                        if time.monotonic() < self._deadline:
                            raise  # pynetdicom's own idle time-out: it closes the connection
                        continue
                    if not received:
                        break
                    got += received
            finally:
                if self._assoc_socket.socket is not None:
                    sock.settimeout(idle)
        if got < nr_bytes:
            del out[got:]
        return out

    def _exceeded(self, limit: str, what: str, value: float) -> None:
        """Abort: send A-ABORT (service provider, invalid PDU parameter), close, and stop the reactor.

        pynetdicom's reactor would send its own A-ABORT on the exception but leaves the connection open.
        """
        log.warning("association.limit_exceeded", limit=limit, value=value, detail=what, peer=self._peer,
                    action="A-ABORT")
        sock = self._assoc_socket.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(_ABORT)
            self._assoc_socket.close()
        raise LimitExceeded(f"{what}: over {limit} ({value})")


class LimitedRequestHandler(RequestHandler):
    """pynetdicom's request handler whose associations read PDUs through a :class:`PduReader`
    and wait for data and messages instead of polling (:mod:`service.reactor`), and whose C-STORE
    messages are converted directly (:mod:`service.store_messages`).

    The server (``service.listener.Listener`` sets it) carries the limits as ``receive_limits``.
    """

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        sock = assoc.dul.socket
        limits: ReceiveLimits = getattr(self.server, "receive_limits")  # noqa: B009  (set by the listener)
        if sock is not None:  # always set for an accepted connection
            sock.recv = PduReader(sock, limits, peer).recv  # type: ignore[method-assign]
        use_waiting_reactor(assoc.dul)
        wait_for_messages(assoc.dimse)
        use_direct_store_messages(assoc.dimse)
        return assoc
