"""Send result objects (SR, SC overlays, SEG) back to the PACS with a pynetdicom C-STORE SCU.

One association per call; every C-STORE response status is checked, so an instance the PACS
refused is never reported as sent. Failures are split into permanent ones (association
rejected for good, SOP class not supported, 0xA9xx/0xCxxx/0x0122 refusals: never retried, the
rest is still delivered) and transient ones (connection refused, time-out, abort, transient
reject, 0xA7xx Out of Resources: the caller retries the instances not yet sent, after
:func:`backoff_seconds`).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.events import EventHandlerType

from marrowmap.logs import get_logger
from marrowmap.settings import Settings
from marrowmap.tls import TlsConfigError, client_context
from workers.pacs.statuses import (
    RejectResult,
    StatusCategory,
    classify_store_status,
    context_rejection_reason,
)

log = get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
ACSE_TIMEOUT_SECONDS = 30.0

SendState = Literal["sent", "partially_sent", "send_failed"]

#: Short names used in summaries, by SOP Class UID.
_KIND_BY_SOP_CLASS: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.11": "SR",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33": "SR",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.7": "SC",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.1": "SC",
    "1.2.840.10008.5.1.4.1.1.7.2": "SC",
    "1.2.840.10008.5.1.4.1.1.7.3": "SC",
    "1.2.840.10008.5.1.4.1.1.7.4": "SC",  # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.30": "PM",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.88.59": "KOS",  # Key Object Selection Document
}


class Outcome(StrEnum):
    """What happened to one instance."""

    SENT = "sent"  # the PACS answered Success or a Warning
    REFUSED = "refused"  # permanent: not retried
    FAILED = "failed"  # not delivered; ``transient`` says whether a retry may help


def sop_kind(sop_class_uid: str) -> str:
    """Short name of a SOP class for summaries (SR, SC, SEG, else the UID's keyword)."""
    kind = _KIND_BY_SOP_CLASS.get(sop_class_uid)
    if kind is not None:
        return kind
    keyword = UID(sop_class_uid).keyword
    return keyword or sop_class_uid


class InstanceOutcome(BaseModel):
    """The result of sending one file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    outcome: Outcome
    status: int | None = None  # the C-STORE response status, when there was one (0 = Success)
    reason: str
    transient: bool = False

    @property
    def kind(self) -> str:
        """SR, SC, SEG, ..."""
        return sop_kind(self.sop_class_uid)


class SendReport(BaseModel):
    """Per-instance outcomes of one or more send attempts to one PACS (JSON-serialisable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pacs: str
    instances: tuple[InstanceOutcome, ...]
    seconds: float = 0.0

    @property
    def sent(self) -> tuple[InstanceOutcome, ...]:
        """Instances the PACS stored."""
        return tuple(i for i in self.instances if i.outcome is Outcome.SENT)

    @property
    def transient(self) -> bool:
        """True when some instance failed for a reason a later retry may cure."""
        return any(i.outcome is Outcome.FAILED and i.transient for i in self.instances)

    @property
    def retry_paths(self) -> tuple[Path, ...]:
        """Files to send again on a retry: the transiently failed ones only."""
        return tuple(
            i.path for i in self.instances if i.outcome is Outcome.FAILED and i.transient
        )

    @property
    def state(self) -> SendState:
        """sent (all stored), partially_sent (some stored), send_failed (none stored)."""
        n_sent = len(self.sent)
        if n_sent == len(self.instances):
            return "sent"
        return "partially_sent" if n_sent else "send_failed"

    @property
    def summary(self) -> str:
        """One line for people, e.g. ``partially sent: SEG refused (SOP class not supported)``."""
        if not self.instances:
            return "sent: nothing to send"
        if self.state == "sent":
            counts = Counter(i.kind for i in self.instances)
            parts = [_counted(kind, n) for kind, n in counts.items()]
            text = f"sent: {', '.join(parts)}"
            warnings = Counter((i.kind, i.reason) for i in self.instances if i.status not in (None, 0))
            if warnings:
                text += "; " + "; ".join(
                    f"{_counted(kind, n)} {reason}" for (kind, reason), n in warnings.items()
                )
            return text
        problems: dict[tuple[str, str], Counter[str]] = {}
        for i in self.instances:
            if i.outcome is not Outcome.SENT:
                problems.setdefault((i.outcome.value, i.reason), Counter())[i.kind] += 1
        details = "; ".join(
            f"{', '.join(_counted(kind, n) for kind, n in kinds.items())} {outcome} ({reason})"
            for (outcome, reason), kinds in problems.items()
        )
        head = "partially sent" if self.state == "partially_sent" else "send failed"
        return f"{head}: {details}"

    def merged(self, later: SendReport) -> SendReport:
        """This report updated with a later attempt (later outcomes win, per SOP Instance UID)."""
        by_uid = {i.sop_instance_uid: i for i in self.instances}
        for item in later.instances:
            by_uid[item.sop_instance_uid] = item
        return SendReport(pacs=later.pacs, instances=tuple(by_uid.values()),
                          seconds=self.seconds + later.seconds)


def _counted(kind: str, n: int) -> str:
    return kind if n == 1 else f"{kind} x{n}"


def backoff_seconds(attempt: int, settings: Settings) -> float:
    """Delay before retry number ``attempt`` (0 = first retry): doubling, capped."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    delay = settings.send_backoff_seconds * (2.0 ** min(attempt, 64))
    return float(min(delay, settings.send_backoff_cap_seconds))


@dataclass
class _Item:
    path: Path
    dataset: Dataset


@dataclass
class _AssociationWatch:
    """Records what happened on the wire, and turns TCP_NODELAY on once connected."""

    connected: bool = False
    negotiated: bool = False
    nodelay: bool = False
    handlers: list[EventHandlerType] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handlers = [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_ACCEPTED, self._on_accepted)]

    def _on_open(self, event: Any) -> None:
        self.connected = True
        sock = event.assoc.dul.socket.socket
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def _on_accepted(self, event: Any) -> None:
        self.negotiated = True


def _read(path: Path) -> _Item | InstanceOutcome:
    """Read one file to send; an unreadable file is a permanent failure of that file."""
    try:
        ds = dcmread(path)
    except (OSError, InvalidDicomError) as exc:
        reason = f"unreadable file: {type(exc).__name__}"
    else:
        if "SOPClassUID" in ds and "SOPInstanceUID" in ds and "TransferSyntaxUID" in ds.file_meta:
            return _Item(path=path, dataset=ds)
        reason = "not a DICOM instance file (SOP Class/Instance or Transfer Syntax UID missing)"
    return InstanceOutcome(
        path=path, sop_instance_uid=f"unreadable:{path.name}", sop_class_uid="",
        outcome=Outcome.FAILED, reason=reason,
    )


def _outcome(item: _Item, outcome: Outcome, reason: str, *, status: int | None = None,
             transient: bool = False) -> InstanceOutcome:
    return InstanceOutcome(
        path=item.path,
        sop_instance_uid=str(item.dataset.SOPInstanceUID),
        sop_class_uid=str(item.dataset.SOPClassUID),
        outcome=outcome,
        status=status,
        reason=reason,
        transient=transient,
    )


def _transfer_syntaxes(items: Sequence[_Item]) -> dict[str, list[str]]:
    """Per SOP class: the files' own transfer syntaxes, then Explicit and Implicit VR LE."""
    contexts: dict[str, list[str]] = {}
    for item in items:
        syntaxes = contexts.setdefault(str(item.dataset.SOPClassUID), [])
        own = str(item.dataset.file_meta.TransferSyntaxUID)
        for ts in (own, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if ts not in syntaxes:
                syntaxes.append(str(ts))
    return contexts


def _association_failure(assoc: Any, watch: _AssociationWatch, tls: bool) -> tuple[str, bool]:
    """Why the association was not established, and whether that is transient."""
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        permanent = rsp is not None and rsp.result == RejectResult.PERMANENT
        why = rsp.reason_str.lower() if rsp is not None else "no reason given"
        kind = "rejected" if permanent else "rejected (transient)"
        return f"association {kind}: {why}", not permanent
    if not watch.connected:
        return ("connection refused, unreachable or TLS handshake failed" if tls
                else "connection refused or unreachable"), True
    if watch.negotiated:
        return "association aborted after negotiation", True
    if assoc.is_aborted:
        return "association aborted", True
    return "association time-out", True


def send_instances(paths: Sequence[Path], *, settings: Settings) -> SendReport:
    """Send ``paths`` to the configured PACS in one association and report every instance."""
    started = time.monotonic()
    pacs = f"{settings.pacs_ae_title}@{settings.pacs_host}:{settings.pacs_port}"
    outcomes: dict[int, InstanceOutcome] = {}
    items: dict[int, _Item] = {}
    for index, path in enumerate(paths):
        read = _read(Path(path))
        if isinstance(read, InstanceOutcome):
            outcomes[index] = read
        else:
            items[index] = read

    if items:
        outcomes.update(_send(items, settings))
    report = SendReport(
        pacs=pacs,
        instances=tuple(outcomes[i] for i in sorted(outcomes)),
        seconds=round(time.monotonic() - started, 3),
    )
    log.info(
        "send finished", pacs=pacs, state=report.state, transient=report.transient,
        sent=len(report.sent), total=len(report.instances), seconds=report.seconds,
        summary=report.summary,
    )
    return report


def _send(items: dict[int, _Item], settings: Settings) -> dict[int, InstanceOutcome]:
    ae = AE(ae_title=settings.ae_title)
    ae.connection_timeout = CONNECT_TIMEOUT_SECONDS
    ae.acse_timeout = ACSE_TIMEOUT_SECONDS
    ae.dimse_timeout = settings.network_timeout_seconds
    ae.network_timeout = settings.network_timeout_seconds
    for sop_class, syntaxes in _transfer_syntaxes(list(items.values())).items():
        ae.add_requested_context(sop_class, syntaxes)
    try:
        tls = (client_context(settings), settings.pacs_host) if settings.pacs_tls else None
    except TlsConfigError as exc:  # a configuration error: no retry will cure it
        return {index: _outcome(item, Outcome.REFUSED, f"TLS not usable: {exc}") for index, item in items.items()}

    watch = _AssociationWatch()
    assoc = ae.associate(
        settings.pacs_host, settings.pacs_port, ae_title=settings.pacs_ae_title,
        evt_handlers=watch.handlers, tls_args=tls,
    )
    rejected = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
    if not assoc.is_established:
        if watch.negotiated and rejected and not assoc.accepted_contexts:
            # No context accepted at all: pynetdicom aborts; every instance is refused for good.
            return {
                index: _outcome(item, Outcome.REFUSED,
                                context_rejection_reason(rejected.get(str(item.dataset.SOPClassUID))))
                for index, item in items.items()
            }
        reason, transient = _association_failure(assoc, watch, tls is not None)
        log.warning("association failed", pacs_ae=settings.pacs_ae_title, reason=reason,
                    transient=transient)
        outcome = Outcome.FAILED if transient else Outcome.REFUSED
        return {index: _outcome(item, outcome, reason, transient=transient)
                for index, item in items.items()}

    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    log.info("association established", pacs_ae=settings.pacs_ae_title,
             accepted_sop_classes=len(accepted), refused_sop_classes=len(rejected),
             tcp_nodelay=watch.nodelay, tls=tls is not None)
    results: dict[int, InstanceOutcome] = {}
    try:
        for index, item in items.items():
            results[index] = _store_one(assoc, item, accepted, rejected)
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def _store_one(assoc: Any, item: _Item, accepted: set[str], rejected: dict[str, int | None]) -> InstanceOutcome:
    sop_class = str(item.dataset.SOPClassUID)
    if sop_class not in accepted:
        return _outcome(item, Outcome.REFUSED, context_rejection_reason(rejected.get(sop_class)))
    if not assoc.is_established:
        return _outcome(item, Outcome.FAILED, "association aborted", transient=True)
    try:
        response = assoc.send_c_store(item.dataset)
    except ValueError as exc:
        # No usable context for this file's transfer syntax, or it cannot be encoded.
        return _outcome(item, Outcome.REFUSED, f"cannot send: {exc}")
    if "Status" not in response:
        return _outcome(item, Outcome.FAILED,
                        "no C-STORE response (time-out or association aborted)", transient=True)
    status = int(response.Status)
    meaning = classify_store_status(status)
    if meaning.category is StatusCategory.STORED:
        return _outcome(item, Outcome.SENT, meaning.reason, status=status)
    if meaning.category is StatusCategory.STORED_WITH_WARNING:
        return _outcome(item, Outcome.SENT, meaning.reason, status=status)
    transient = meaning.category is StatusCategory.TRANSIENT
    return _outcome(item, Outcome.FAILED if transient else Outcome.REFUSED, meaning.reason,
                    status=status, transient=transient)
