"""``marrowmap listen``: the DICOM C-STORE/C-ECHO listener with its sealer.

Accepts every storage SOP class in every transfer syntax pynetdicom knows (stored as
received; decoding is the worker's business) plus Verification. Who may connect and
associate, DICOM TLS and the time allowed for an association request are the gate's
business (:mod:`service.gate`); every association is audited (:mod:`marrowmap.audit`).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, _config
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from marrowmap.audit import AuditTrail
from marrowmap.logs import get_logger
from marrowmap.metrics import serve_metrics
from marrowmap.settings import Settings
from marrowmap.tls import TlsConfigError, listener_context
from service.completion import CompletionTracker
from service.enqueue import JobQueue
from service.gate import Gate, GatedServer
from service.handlers import StoreHandler
from service.limits import ReceiveLimits
from service.peers import AllowList, AllowListError
from service.retention import Retention
from service.sealer import Sealer
from service.spool import Spool

log = get_logger(__name__)

#: Why the listener may refuse to start (the message says what to change).
ListenerStartError = (AllowListError, TlsConfigError)


_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNCOMPRESSED_LAST = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")


def _is_lossless(ts: str) -> bool:
    name = UID(ts).name.lower()
    return "lossless" in name and "near-lossless" not in name


def preferred_transfer_syntaxes() -> list[str]:
    """Every transfer syntax, in the order the listener prefers among those a peer proposes.

    Explicit VR Little Endian first (never makes a sender compress, lossy or not), then lossless
    compressed ones (a compressed file is stored as sent), deflate/implicit/big endian, then lossy
    ones last (accepted only when nothing else is proposed, i.e. the data already are lossy).
    """
    rest = [ts for ts in ALL_TRANSFER_SYNTAXES if ts != _EXPLICIT_LE and ts not in _UNCOMPRESSED_LAST]
    lossless = [ts for ts in rest if _is_lossless(ts)]
    lossy = [ts for ts in rest if ts not in lossless]
    return [_EXPLICIT_LE, *lossless, *_UNCOMPRESSED_LAST, *lossy]


def build_ae(settings: Settings) -> AE:
    """The application entity: contexts, allow-list, limits and time-outs from the settings."""
    ae = AE(ae_title=settings.ae_title)
    syntaxes = preferred_transfer_syntaxes()
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(str(cx.abstract_syntax), syntaxes)
    ae.add_supported_context(Verification, syntaxes)
    # The gate admits at most this many connections, and checks the AE titles itself.
    ae.maximum_associations = settings.max_associations + settings.max_rejected_connections
    ae.network_timeout = settings.network_timeout_seconds
    ae.acse_timeout = min(30.0, settings.network_timeout_seconds)
    ae.dimse_timeout = settings.network_timeout_seconds
    ae.maximum_pdu_size = settings.max_pdu_bytes  # large PDUs (fewer, faster), bounded (service.limits)
    return ae


def standard_log_handlers() -> str:
    """pynetdicom's ``LOG_HANDLER_LEVEL`` for the listener: its standard handlers only where they can log.

    pynetdicom binds them to every association by default; they format every PDU and DIMSE message
    (a tenth of the listener's CPU per received instance) into lines at INFO and DEBUG, which the
    ``pynetdicom`` logger discards below ``library_log_level`` (CRITICAL unless set lower to debug a peer).
    """
    return "standard" if logging.getLogger("pynetdicom").isEnabledFor(logging.INFO) else "none"


class SharedContexts(list[Any]):
    """The server's supported presentation contexts, shared read-only by its associations.

    pynetdicom deep-copies them for every association (every storage SOP class with every transfer
    syntax: ~50 ms of CPU, which capped senders that open one association per image at about 10 a
    second); negotiation only reads them and builds new contexts for its answer, so the deep copy
    is a copy of the list.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return list(self)


class Listener:
    """The running listener: association server + sealer thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir)
        self.queue = JobQueue(settings)
        completion = (CompletionTracker(settings.early_seal_seconds, settings.quiet_seconds)
                      if settings.early_completion else None)
        self.sealer = Sealer(self.spool, settings, self.queue, completion)
        self.audit = AuditTrail(settings)
        self.handler = StoreHandler(self.spool, settings, self.audit, completion)
        self.retention = Retention(self.spool, self.queue.jobs, settings, self.audit)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._metrics: Any = None

    def start(self) -> None:
        """Recover the spool, start sealing and serving (non-blocking); ListenerStartError says why not."""
        try:
            allow_list = AllowList.from_settings(self.settings)
            gate = Gate(self.settings, allow_list, self.audit, listener_context(self.settings))
        except ListenerStartError as exc:
            log.error("listener.start_refused", reason=str(exc))
            raise
        self.spool.ensure_layout()
        if not self.settings.allowed_calling_aets:
            log.warning("listener.open_to_any_caller",
                        note="MARROWMAP_ALLOWED_CALLING_AETS is empty: ANY calling AE title may send studies")
        self.sealer.recover()
        self.sealer.start()
        self.retention.start()
        ae = build_ae(self.settings)
        _config.LOG_HANDLER_LEVEL = standard_log_handlers()  # read by make_server and by each new association
        self._server = ae.make_server(
            (self.settings.host, self.settings.port),
            evt_handlers=self.handler.handlers(),
            server_class=GatedServer,
            gate=gate,
        )
        self._server.receive_limits = ReceiveLimits.from_settings(self.settings)
        self._server.contexts = SharedContexts(self._server.contexts)
        ae._servers.append(self._server)  # as AE.start_server does; shutdown() removes it
        self._thread = threading.Thread(target=self._server.serve_forever, name="marrowmap-scp", daemon=True)
        self._thread.start()
        self._metrics = serve_metrics(self.settings, self.settings.listener_metrics_port, jobs=True)
        log.info(
            "listener.started",
            ae_title=self.settings.ae_title,
            host=self.settings.host,
            port=self.settings.port,
            spool_dir=str(self.settings.spool_dir),
            quiet_seconds=self.settings.quiet_seconds,
            early_completion=(f"{self.settings.early_seal_seconds:g} s after release" if self.settings.early_completion
                              else "off"),
            metrics=(f"http://{self.settings.metrics_host}:{self.settings.listener_metrics_port}/metrics"
                     if self._metrics is not None else "off"),
            allowed_calling_aets=list(self.settings.allowed_calling_aets) or "ANY",
            tls=self.settings.listener_tls,
            tls_client_cert=self.settings.listener_tls_client_cert,
            min_free_disk_mb=self.settings.min_free_disk_mb,
            limits={"max_pdu_bytes": self.settings.max_pdu_bytes, "max_instance_mb": self.settings.max_instance_mb,
                    "max_inflated_mb": self.settings.max_inflated_mb,
                    "max_instances_per_study": self.settings.max_instances_per_study,
                    "pdu_timeout_seconds": self.settings.pdu_timeout_seconds},
        )
        self.audit.application(started=True, component="listener")

    def stop(self) -> None:
        """Stop accepting, let the sealer finish its step, close the broker connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics.server_close()
        self.sealer.stop()
        self.retention.stop()
        self.queue.close()
        self.audit.application(started=False, component="listener")
        self.audit.close()
        log.info("listener.stopped")


def run_listener(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM."""
    listener = Listener(settings)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("listener.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    listener.start()
    try:
        while not stop.wait(1.0):  # short waits: the main thread runs the signal handlers between them
            continue
    finally:
        listener.stop()
