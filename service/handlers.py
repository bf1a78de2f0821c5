"""DIMSE event handlers: persist the bytes, answer with a named status, never raise.

One log line per association (when its connection closes) with counts and timings; per
instance only at DEBUG. No patient names or IDs are logged.
"""

from __future__ import annotations

import errno
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.events import EventHandlerType

from marrowmap.audit import AuditTrail
from marrowmap.logs import get_logger
from marrowmap.metrics import INSTANCES
from marrowmap.settings import Settings
from service.completion import CompletionTracker
from service.dataset_check import (
    DatasetDecodeError,
    DatasetTooLargeError,
    MissingAttributeError,
    check_dataset,
    is_valid_uid,
)
from service.filemeta import file_meta_bytes
from service.reactor import release_requested
from service.spool import Spool
from service.statuses import EchoStatus, StoreStatus

log = get_logger(__name__)

_PREAMBLE = b"\x00" * 128 + b"DICM"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class AssociationStats:
    """Counters of one association, logged when its connection closes."""

    calling_ae: str = ""
    peer: str = ""
    tls: bool = False
    started: float = field(default_factory=time.perf_counter)
    accepted: bool = False
    outcome: str = "closed"
    stored: int = 0
    replaced: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    store_seconds: float = 0.0
    studies: Counter[str] = field(default_factory=Counter)  # instances stored per Study Instance UID

    def fail(self, status: StoreStatus) -> StoreStatus:
        self.failed[status.name] = self.failed.get(status.name, 0) + 1
        return status


class StoreHandler:
    """The listener's event handlers, bound to one spool and the settings."""

    def __init__(self, spool: Spool, settings: Settings, audit: AuditTrail,
                 completion: CompletionTracker | None = None) -> None:
        self._spool = spool
        self._settings = settings
        self._audit = audit
        self._completion = completion
        self._stats: dict[int, AssociationStats] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list[EventHandlerType]:
        """The (event, handler) pairs to bind to the server."""
        return [
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_CONN_OPEN, self.on_open),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_outcome("rejected")),
            (evt.EVT_RELEASED, self.on_outcome("released")),
            (evt.EVT_ABORTED, self.on_outcome("aborted")),
            (evt.EVT_CONN_CLOSE, self.on_close),
        ]

    def _stats_for(self, event: Any) -> AssociationStats:
        key = id(event.assoc)
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = AssociationStats()
            return stats

    def _open_stats(self, event: Any) -> AssociationStats | None:
        """The stats of an association whose connection is still open (None once it closed)."""
        with self._lock:
            return self._stats.get(id(event.assoc))

    # --- association lifecycle ------------------------------------------------------------
    def on_open(self, event: Any) -> None:
        """A peer connected."""
        stats = self._stats_for(event)
        address = event.address
        stats.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        stats.tls = isinstance(event.assoc.dul.socket.socket, ssl.SSLSocket)

    def on_accepted(self, event: Any) -> None:
        """The association was accepted."""
        stats = self._stats_for(event)
        stats.accepted = True
        stats.calling_ae = str(event.assoc.requestor.ae_title).strip()

    def on_outcome(self, outcome: str) -> Any:
        """A handler that notes how the association ended."""

        def _handler(event: Any) -> None:
            stats = self._open_stats(event)  # None: the connection closed first (logged then)
            if stats is None:
                return
            stats.outcome = outcome
            if outcome == "rejected":
                stats.calling_ae = str(event.assoc.requestor.ae_title).strip()

        return _handler

    def on_close(self, event: Any) -> None:
        """Log one line for the association."""
        with self._lock:
            stats = self._stats.pop(id(event.assoc), None)
        if stats is None:
            return
        # The peer may close the connection on our A-RELEASE-RP before the association thread has
        # reported the release (EVT_RELEASED): the DUL reactor noted its A-RELEASE-RQ.
        if stats.outcome == "closed" and release_requested(event.assoc.dul):
            stats.outcome = "released"
        if self._completion is not None:
            self._completion.closed(id(event.assoc), released=stats.outcome == "released")
        duration = time.perf_counter() - stats.started
        fields: dict[str, Any] = {
            "calling_ae": stats.calling_ae,
            "peer": stats.peer,
            "outcome": stats.outcome if stats.accepted or stats.outcome == "rejected" else "not established",
            "stored": stats.stored,
            "replaced": stats.replaced,
            "failed": stats.failed,
            "studies": sorted(stats.studies),
            "megabytes": round(stats.bytes / 1e6, 3),
            "duration_s": round(duration, 3),
            "store_s": round(stats.store_seconds, 3),
            "instances_per_s": round(stats.stored / duration, 1) if duration > 0 and stats.stored else 0.0,
        }
        for study, instances in sorted(stats.studies.items()):
            self._audit.study_received(study_uid=study, instances=instances, peer=stats.peer.rpartition(":")[0],
                                       calling_ae=stats.calling_ae, tls=stats.tls)
        if stats.failed or stats.outcome == "aborted":  # (a rejection was logged with its reason by the gate)
            log.warning("association.closed", **fields)
        else:
            log.info("association.closed", **fields)

    # --- services --------------------------------------------------------------------------
    def on_echo(self, event: Any) -> int:
        """C-ECHO: we are alive."""
        return int(EchoStatus.SUCCESS)

    def on_store(self, event: Any) -> int:
        """C-STORE: store the raw bytes durably, then answer. Never raises."""
        stats = self._stats_for(event)
        started = time.perf_counter()
        try:
            status = self._store(event, stats)
        except Exception:  # association boundary: a failure status, never a crash
            log.exception("store.unexpected_error", calling_ae=stats.calling_ae)
            status = stats.fail(StoreStatus.PROCESSING_FAILURE)
        stats.store_seconds += time.perf_counter() - started
        INSTANCES.labels(status=status.name.lower()).inc()
        return int(status)

    def _store(self, event: Any, stats: AssociationStats) -> StoreStatus:
        if stats.calling_ae == self._settings.health_calling_ae and (
            stats.calling_ae not in self._settings.allowed_calling_aets
        ):
            log.warning("store.refused", reason="the health-check AE title may only C-ECHO", calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.CANNOT_UNDERSTAND)
        request = event.request
        sop_uid = str(request.AffectedSOPInstanceUID or "")
        sop_class = str(request.AffectedSOPClassUID or "")
        transfer_syntax = str(event.context.transfer_syntax)
        if not is_valid_uid(sop_uid) or not is_valid_uid(sop_class):
            log.warning("store.refused", reason="invalid Affected SOP (Class/Instance) UID", calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.CANNOT_UNDERSTAND)
        encoded: bytes = event.encoded_dataset(include_meta=False)
        try:
            keys = check_dataset(encoded, transfer_syntax, self._settings.max_inflated_mb * 1024 * 1024)
        except DatasetTooLargeError as exc:
            log.warning("store.refused", reason=f"over max_inflated_mb: {exc}", sop_instance_uid=sop_uid,
                        calling_ae=stats.calling_ae, length=len(encoded))
            return stats.fail(StoreStatus.OVER_LIMIT)
        except DatasetDecodeError as exc:
            log.warning("store.refused", reason=f"undecodable data set: {exc}", sop_instance_uid=sop_uid,
                        calling_ae=stats.calling_ae, transfer_syntax=transfer_syntax, length=len(encoded))
            return stats.fail(StoreStatus.CANNOT_DECODE)
        except MissingAttributeError as exc:
            log.warning("store.refused", reason=str(exc), sop_instance_uid=sop_uid, calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.CANNOT_UNDERSTAND)
        if keys.sop_instance_uid != sop_uid or keys.sop_class_uid != sop_class:
            log.warning("store.refused", reason="data set SOP Class/Instance UID differ from the C-STORE request",
                        sop_instance_uid=sop_uid, calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)
        if not keys.has_pixel_data and "Image Storage" in UID(sop_class).name:
            log.warning("store.refused", reason="image without pixel data (truncated?)", sop_instance_uid=sop_uid,
                        calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.CANNOT_UNDERSTAND)
        refusal = self._resource_refusal(keys.study_instance_uid, sop_uid, stats)
        if refusal is not None:
            return refusal
        meta = file_meta_bytes(sop_class, sop_uid, transfer_syntax, stats.calling_ae)
        if self._completion is not None:
            self._completion.arriving(id(event.assoc), keys.study_instance_uid)
        try:
            stored = self._spool.store_instance(
                keys.study_instance_uid, keys.series_instance_uid, sop_uid,
                (_PREAMBLE, meta, encoded),
            )
        except OSError as exc:
            self._spool.note_refused(keys.study_instance_uid, sop_uid)
            if exc.errno in _NO_SPACE:
                log.warning("store.out_of_resources", reason=f"disk full: {exc}", calling_ae=stats.calling_ae,
                            study_instance_uid=keys.study_instance_uid, note="the study is incomplete until resent")
                return stats.fail(StoreStatus.OUT_OF_RESOURCES)
            log.error("store.write_failed", reason=str(exc), sop_instance_uid=sop_uid, calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.OUT_OF_RESOURCES)
        if self._completion is not None:
            self._completion.stored(keys.study_instance_uid, keys.series_instance_uid, sop_uid, keys.header)
        stats.stored += 1
        stats.bytes += len(encoded)
        stats.studies[keys.study_instance_uid] += 1
        if stored.replaced:
            stats.replaced += 1
            log.debug("store.replaced_existing", sop_instance_uid=sop_uid,
                     study_instance_uid=keys.study_instance_uid, note="same SOP Instance UID received again")
        return StoreStatus.SUCCESS

    def _resource_refusal(self, study: str, sop: str, stats: AssociationStats) -> StoreStatus | None:
        """A refusal status when the spool is short of disk or the study is over its instance limit, else None.

        Either refusal marks the study incomplete (``Spool.note_refused``) until the instance arrives.
        """
        if self._spool.free_mb() < self._settings.min_free_disk_mb:
            self._spool.note_refused(study, sop)
            log.warning("store.out_of_resources", reason="free disk space below min_free_disk_mb",
                        min_free_disk_mb=self._settings.min_free_disk_mb, calling_ae=stats.calling_ae,
                        study_instance_uid=study, note="the study is incomplete until resent")
            return stats.fail(StoreStatus.OUT_OF_RESOURCES)
        if self._spool.receiving_count(study) >= self._settings.max_instances_per_study:
            self._spool.note_refused(study, sop)
            log.warning("store.refused", reason="over max_instances_per_study", study_instance_uid=study,
                        max_instances_per_study=self._settings.max_instances_per_study, calling_ae=stats.calling_ae)
            return stats.fail(StoreStatus.OVER_LIMIT)
        return None
