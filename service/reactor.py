"""Reactors of an accepted association that wait for work instead of sleeping a fixed time.

pynetdicom runs two polling loops per association. Its DUL thread handles one event, else
``time.sleep(self._run_loop_delay)`` (1 ms) and polls the socket again; its association thread
sleeps 1 ms, then looks for a decoded DIMSE message without waiting. With C-STORE the sender
waits for each response before it sends the next instance, so every sleep that overshoots the
next instance's arrival is lost receive time (and on a loaded machine each wake-up also waits
for a CPU). Here:

* :class:`WaitingDUL` turns the DUL's idle step into a ``select`` on the association socket and
  a wake-up socket: it returns as soon as the peer's next bytes arrive or a response is queued,
  else after :data:`WAIT_SECONDS` to check its timers (ARTIM, idle time-out);
* :func:`wait_for_messages` makes the association thread's look for a message wait up to
  :data:`MESSAGE_WAIT_SECONDS` for one, so a decoded instance reaches the C-STORE handler at
  once (its fixed 1 ms sleep then overlaps the sender's own time between instances).

:class:`WaitingDUL` also decodes P-DATA-TF PDUs without copying them: pynetdicom copies every
received PDU four times before the DIMSE layer sees a fragment (``bytes()`` of the read buffer,
a slice past the header, a slice per PDV item, a slice past the control header), so a 512 KiB
image went through memory about eight times on the DUL thread. Here the PDV values are
``memoryview`` slices of the read buffer (:func:`pdata_tf_views`), which the DIMSE layer copies
once. pynetdicom's own decoding stays for every other PDU and whenever a handler is bound to
``EVT_DATA_RECV`` or ``EVT_PDU_RECV`` (they may keep the bytes); the reactor itself notes a
peer's A-RELEASE-RQ (:func:`release_requested`), which needed an ``EVT_PDU_RECV`` handler.
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
import struct
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_RELEASE_RQ, P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem

#: Longest idle wait of the DUL reactor before it checks its timers and kill flag again.
WAIT_SECONDS = 0.01
#: Longest wait of the association thread for a DIMSE message before it checks release, abort and time-outs.
MESSAGE_WAIT_SECONDS = 0.005
_FALLBACK_SLEEP = 0.001
_P_DATA_TF = 0x04
_PDV_ITEM = struct.Struct(">LB")


def pdata_tf_views(pdu: bytearray | bytes) -> P_DATA_TF:
    """A P-DATA-TF PDU (header included) decoded as pynetdicom does, its PDV values views of ``pdu``.

    Item by item like ``P_DATA_TF._generate_items``: a short item header raises ``struct.error``
    (pynetdicom's reactor then answers Evt19), a value past the end is cut at the end.
    """
    view = memoryview(pdu)[6:]
    items = []
    offset, end = 0, len(view)
    while offset < end:
        length, context_id = _PDV_ITEM.unpack_from(view, offset)
        item = PresentationDataValueItem()
        item.presentation_context_id = context_id
        item.presentation_data_value = view[offset + 5:offset + 4 + length]  # type: ignore[assignment]
        items.append(item)
        offset += length + 4
    decoded = P_DATA_TF()
    decoded.presentation_data_value_items = items
    return decoded


def release_requested(dul: DULServiceProvider) -> bool:
    """Whether the peer's A-RELEASE-RQ arrived on this association (seen by a :class:`WaitingDUL`)."""
    return bool(getattr(dul, "_release_requested", False))


class WaitingDUL(DULServiceProvider):
    """pynetdicom's DUL whose idle delay is a wait for socket data or a queued primitive.

    ``_wake`` is a socket pair: :meth:`send_pdu` writes a byte to it, so a response queued by the
    association thread wakes the wait at once; it is closed when the reactor thread ends.
    """

    _wake: tuple[socket.socket, socket.socket]
    _release_requested: bool = False

    @property
    def _run_loop_delay(self) -> float:
        """Wait for the peer's data or a queued primitive (at most WAIT_SECONDS), then let the loop run on."""
        assoc_socket = self.socket
        sock: socket.socket | None = None if assoc_socket is None else assoc_socket.socket
        if sock is None or sock.fileno() < 0:
            return _FALLBACK_SLEEP
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return 0.0  # decrypted bytes wait in the TLS buffer, where select cannot see them
        wake = self._wake[0]
        if self.to_provider_queue.empty():
            try:
                readable, _, _ = select.select([sock, wake], [], [], WAIT_SECONDS)
                if wake in readable:
                    wake.recv(4096)
            except (OSError, ValueError):  # closed meanwhile: pynetdicom's own checks notice it
                return _FALLBACK_SLEEP
        return 0.0

    @_run_loop_delay.setter
    def _run_loop_delay(self, value: float) -> None:
        """pynetdicom sets the fixed delay in ``__init__``; the wait above replaces it."""

    def _decode_pdu(self, bytestream: bytearray) -> tuple[Any, str]:
        """Decode a received PDU: P-DATA-TF without copies (module docstring), others as pynetdicom does."""
        assoc = self.assoc
        if bytestream[0] != _P_DATA_TF or assoc.get_handlers(evt.EVT_DATA_RECV) or assoc.get_handlers(evt.EVT_PDU_RECV):
            pdu, event = super()._decode_pdu(bytestream)
            if isinstance(pdu, A_RELEASE_RQ):
                self._release_requested = True
            return pdu, event
        return pdata_tf_views(bytestream), "Evt10"

    def send_pdu(self, primitive: Any) -> None:
        """Queue the primitive (pynetdicom) and wake the reactor to send it."""
        super().send_pdu(primitive)
        try:
            self._wake[1].send(b"\0")
        except (BlockingIOError, OSError):  # already woken (buffer full) or the reactor has ended
            return

    def run(self) -> None:
        """Run pynetdicom's reactor; close the wake-up sockets when it ends."""
        try:
            super().run()
        finally:
            for end in self._wake:
                end.close()


def use_waiting_reactor(dul: DULServiceProvider) -> None:
    """Make a not yet started DUL of pynetdicom a :class:`WaitingDUL` (same object, same state)."""
    if dul.is_alive():
        raise RuntimeError("the DUL reactor is already running")
    wake = socket.socketpair()
    for end in wake:
        end.setblocking(False)
    dul.__class__ = WaitingDUL
    cast(WaitingDUL, dul)._wake = wake


def wait_for_messages(dimse: DIMSEServiceProvider) -> None:
    """Make the association thread's non-blocking look for a DIMSE message wait briefly for one."""
    blocking_get = dimse.get_msg
    messages = dimse.msg_queue

    def get_msg(block: bool = False) -> tuple[int | None, Any]:
        if block:
            return blocking_get(block=True)
        try:
            return messages.get(timeout=MESSAGE_WAIT_SECONDS)
        except queue.Empty:
            return None, None

    dimse.get_msg = get_msg  # type: ignore[method-assign,assignment]
