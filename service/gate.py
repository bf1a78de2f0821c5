"""The listener's front door: admission before association, TLS, and the allow-list decision.

pynetdicom's server counts a connection against ``maximum_associations`` from the moment it
is accepted, waits up to the ACSE time-out for the A-ASSOCIATE-RQ, reads a PDU with blocking
``recv`` calls that any trickle of bytes keeps alive, and does the TLS handshake in its accept
loop. So a few slow or silent connections could lock every sender out. Here instead:

* accepting never blocks: TCP_NODELAY, TLS wrapping without handshake, then an admission
  decision on the peer address alone: at most ``max_connections_per_peer`` per address;
  addresses that some allow-list entry covers share ``max_associations``; the others (and
  listed peers beyond ``max_associations``) get one of ``max_rejected_connections`` slots,
  only to be answered with a rejection; anything more is closed at once;
* each connection has ``association_request_timeout_seconds`` from accept to a complete
  A-ASSOCIATE-RQ, TLS handshake included; then the socket is shut down, which also wakes a
  ``recv`` blocked on a trickle;
* the A-ASSOCIATE-RQ is checked against the allow-list (:mod:`service.peers`) and rejected
  with the matching reason code, logged and audited with the same reason.

Idle and size limits inside an established association are not handled here.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.transport import ThreadedAssociationServer

from marrowmap.audit import AuditTrail
from marrowmap.logs import get_logger
from marrowmap.settings import Settings
from marrowmap.tls import peer_subject
from service.limits import LimitedRequestHandler
from service.peers import Address, AllowList, Refusal, capacity_refusal, parse_address

log = get_logger(__name__)

#: Refusals of connections closed at once are logged (and audited) once per address per this many seconds.
REFUSAL_LOG_INTERVAL_SECONDS = 10.0
#: pynetdicom's ACSE time-out runs this long past the gate's deadline (see ``GatedRequestHandler.handle``).
ACSE_GRACE_SECONDS = 0.5


@dataclass
class Admission:
    """One accepted connection: where from, which slot it holds, what is known about it so far."""

    address: Address
    port: int
    rejecting: bool  # holds a rejection slot: it will be answered with a rejection
    deadline: float  # time.monotonic() by which the A-ASSOCIATE-RQ must be complete
    over_capacity: Refusal | None = None
    requested: threading.Event = field(default_factory=threading.Event)
    tls: bool = False
    tls_subject: str = ""

    @property
    def peer(self) -> str:
        """``address:port`` for logs."""
        return f"{self.address}:{self.port}"

    def remaining(self) -> float:
        """Seconds left until the deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())


class Gate:
    """Admission counts and the allow-list decision, shared by the server and its handler threads."""

    def __init__(self, settings: Settings, allow_list: AllowList, audit: AuditTrail,
                 tls: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.allow_list = allow_list
        self.audit = audit
        self.tls = tls
        self._lock = threading.Lock()
        self._per_address: dict[Address, int] = {}
        self._associations = 0
        self._rejecting = 0
        self._admissions: dict[int, Admission] = {}
        self._refusals_logged: dict[Address, tuple[float, int]] = {}

    # --- admission (accept thread) ------------------------------------------------------------
    def admit(self, sock: socket.socket, client_address: Any) -> bool:
        """Take a slot for a new connection; False = close it at once (it is logged why)."""
        address = parse_address(str(client_address[0]))
        listed = self.allow_list.address_listed(address)
        settings = self.settings
        with self._lock:
            why = ""
            if self._per_address.get(address, 0) >= settings.max_connections_per_peer:
                why = f"max_connections_per_peer ({settings.max_connections_per_peer}) from this address"
            elif listed and self._associations < settings.max_associations:
                self._associations += 1
                rejecting = False
            elif self._rejecting < settings.max_rejected_connections:
                self._rejecting += 1
                rejecting = True
            else:
                why = f"max_rejected_connections ({settings.max_rejected_connections}) in use"
            if not why:
                self._per_address[address] = self._per_address.get(address, 0) + 1
                self._admissions[id(sock)] = Admission(
                    address=address, port=int(client_address[1]), rejecting=rejecting,
                    deadline=time.monotonic() + settings.association_request_timeout_seconds,
                    over_capacity=capacity_refusal(settings.max_associations) if listed and rejecting else None,
                )
        if why:
            self._refused_at_once(address, int(client_address[1]), why)
        return not why

    def admission(self, sock: socket.socket) -> Admission:
        """The admission of a connection taken by :meth:`admit`."""
        with self._lock:
            return self._admissions[id(sock)]

    def release(self, sock: socket.socket) -> None:
        """The connection is over: free its slots."""
        with self._lock:
            admission = self._admissions.pop(id(sock), None)
            if admission is None:
                return
            if admission.rejecting:
                self._rejecting -= 1
            else:
                self._associations -= 1
            left = self._per_address[admission.address] - 1
            if left:
                self._per_address[admission.address] = left
            else:
                del self._per_address[admission.address]

    def _refused_at_once(self, address: Address, port: int, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._refusals_logged.get(address, (-REFUSAL_LOG_INTERVAL_SECONDS, 0))
            if now - last < REFUSAL_LOG_INTERVAL_SECONDS:
                self._refusals_logged[address] = (last, suppressed + 1)
                return
            self._refusals_logged[address] = (now, 0)
        log.warning("connection.refused", peer=f"{address}:{port}", reason=why, closed="at once",
                    also_refused_since_last_line=suppressed)
        self.audit.association(peer=str(address), calling_ae="", called_ae="", tls=self.tls is not None,
                               refused=f"connection closed at once: {why}")

    # --- per connection (handler thread) -------------------------------------------------------
    def handshake(self, sock: ssl.SSLSocket, admission: Admission) -> bool:
        """The TLS handshake, within the connection's deadline; False (logged) when it failed."""
        try:
            sock.setblocking(False)
            while True:
                try:
                    sock.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    readable, writable = [sock], []
                except ssl.SSLWantWriteError:
                    readable, writable = [], [sock]
                if admission.remaining() <= 0:
                    raise TimeoutError("TLS handshake not complete in time")
                select.select(readable, writable, [], admission.remaining())
            sock.setblocking(True)
        except (ssl.SSLError, OSError) as exc:  # TimeoutError is an OSError
            self.refuse_connection(admission, f"TLS handshake failed: {_tls_reason(exc)}")
            return False
        admission.tls = True
        admission.tls_subject = peer_subject(sock)
        return True

    def wait_for_request(self, sock: socket.socket, admission: Admission) -> None:
        """Shut the connection down when no complete A-ASSOCIATE-RQ arrived by the deadline."""
        if admission.requested.wait(admission.remaining()):
            return
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # also wakes a recv() blocked on a trickle
        except OSError:
            return  # already closed by the peer
        self.refuse_connection(admission, f"no complete A-ASSOCIATE-RQ within "
                                          f"{self.settings.association_request_timeout_seconds:g} s")

    def refuse_connection(self, admission: Admission, why: str) -> None:
        """Log and audit a connection closed without an association."""
        log.warning("connection.refused", peer=admission.peer, reason=why, tls=admission.tls)
        self.audit.association(peer=str(admission.address), calling_ae="", called_ae="", tls=admission.tls,
                               tls_subject=admission.tls_subject, refused=why)

    # --- association events (association thread) -----------------------------------------------
    def on_requested(self, event: Any, admission: Admission) -> None:
        """EVT_REQUESTED: accept (pynetdicom negotiates the contexts) or reject with the reason."""
        admission.requested.set()
        request = event.assoc.requestor.primitive
        if not isinstance(request, A_ASSOCIATE):  # an abort or garbage instead of a request
            return
        calling, called = str(request.calling_ae_title).strip(), str(request.called_ae_title).strip()
        refusal = self.allow_list.check(calling, called, admission.address) or admission.over_capacity
        if refusal is None:
            return
        assoc = event.assoc
        assoc.acse.send_reject(int(refusal.result), int(refusal.source), int(refusal.diagnostic))
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        log.warning("association.rejected", reason=refusal.reason, peer=admission.peer, calling_ae=calling,
                    called_ae=called, tls=admission.tls, result=refusal.result.name, source=refusal.source.name,
                    diagnostic=refusal.diagnostic.name)
        self.audit.association(peer=str(admission.address), calling_ae=calling, called_ae=called,
                               tls=admission.tls, tls_subject=admission.tls_subject, refused=refusal.reason)
        assoc.kill()

    def on_accepted(self, event: Any, admission: Admission) -> None:
        """EVT_ACCEPTED: audit who associated."""
        requestor = event.assoc.requestor
        self.audit.association(peer=str(admission.address), calling_ae=str(requestor.ae_title).strip(),
                               called_ae=self.settings.ae_title, tls=admission.tls,
                               tls_subject=admission.tls_subject)


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc) or type(exc).__name__


class GatedRequestHandler(LimitedRequestHandler):
    """One connection: TLS handshake, the association with the gate's handlers and the receive limits
    (``service.limits``), the deadline."""

    server: GatedServer

    def handle(self) -> None:
        """Run the connection to its end (the slot is freed by the server afterwards)."""
        gate = self.server.gate
        admission = gate.admission(self.request)
        if isinstance(self.request, ssl.SSLSocket) and not gate.handshake(self.request, admission):
            self.server.shutdown_request(self.request)
            return
        assoc = self._create_association()
        # pynetdicom's own wait for the request (and ARTIM) ends a little after the gate's deadline, so that
        # the gate's refusal (logged and audited) is what closes a connection that never sent a request.
        assoc.acse_timeout = admission.remaining() + ACSE_GRACE_SECONDS
        assoc.bind(evt.EVT_REQUESTED, gate.on_requested, [admission])
        assoc.bind(evt.EVT_ACCEPTED, gate.on_accepted, [admission])
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        gate.wait_for_request(self.request, admission)
        assoc.join()


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the gate in front (see the module docstring)."""

    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # a burst of connects must not be dropped before the gate sees it

    def __init__(self, ae: Any, address: tuple[str, int], ae_title: str, contexts: Any,
                 ssl_context: None = None, evt_handlers: Any = None, *, gate: Gate) -> None:
        # TLS is the gate's (``gate.tls``): pynetdicom's own would handshake in the accept loop.
        self.gate = gate
        super().__init__(ae, address, ae_title, contexts, ssl_context, evt_handlers=evt_handlers,
                         request_handler=GatedRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept without any I/O on the new connection (the TLS handshake runs in its own thread)."""
        client, address = cast(socket.socket, self.socket).accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.gate.tls is not None:
            client = self.gate.tls.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection, or have it closed at once."""
        return self.gate.admit(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, then free its slots whatever happened."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.gate.release(request)
