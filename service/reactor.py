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
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
from typing import Any, cast

from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider

#: Longest idle wait of the DUL reactor before it checks its timers and kill flag again.
WAIT_SECONDS = 0.01
#: Longest wait of the association thread for a DIMSE message before it checks release, abort and time-outs.
MESSAGE_WAIT_SECONDS = 0.005
_FALLBACK_SLEEP = 0.001


class WaitingDUL(DULServiceProvider):
    """pynetdicom's DUL whose idle delay is a wait for socket data or a queued primitive.

    ``_wake`` is a socket pair: :meth:`send_pdu` writes a byte to it, so a response queued by the
    association thread wakes the wait at once; it is closed when the reactor thread ends.
    """

    _wake: tuple[socket.socket, socket.socket]

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
