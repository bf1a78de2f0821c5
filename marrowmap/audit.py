"""The audit trail: who sent which study, what was exported where, in DICOM audit message form.

Each event is one JSON line with the fields of the DICOM audit message (PS3.15 A.5, after
RFC 3881): EventIdentification, ActiveParticipant, AuditSourceIdentification,
ParticipantObjectIdentification, coded with the DICOM "DCM" codes. Events:

=====================================  ==============================  =======================
what                                   EventID / EventTypeCode          action, outcome
=====================================  ==============================  =======================
application started / stopped          110100 / 110120, 110121          E, 0
association accepted                   110114 User Authentication /     E, 0
                                       110122 Login
association or connection refused      110113 Security Alert /          E, 4
                                       110126 Node Authentication
study received (per association)       110104 Instances Transferred     C, 0
results exported (per send attempt)    110106 Export                    R, 0 / 4 / 8
job failed                             110103 Instances Accessed        E, 8
sent study removed by retention        110105 DICOM Study Deleted       D, 0
=====================================  ==============================  =======================

No patient names or IDs: the patient participant object of PS3.15 is left out on purpose;
studies are named by Study Instance UID. Written append-only to ``audit_path``, rotated by
size (concurrent-log-handler: listener and workers on one host share the file safely), and,
when ``audit_syslog_host`` is set, sent as RFC 5424 messages over UDP (RFC 5426).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from concurrent_log_handler import ConcurrentRotatingFileHandler
from pydantic import BaseModel, ConfigDict, Field

from marrowmap.settings import Settings

Outcome = Literal[0, 4, 8, 12]  # success, minor failure, serious failure, major failure
_MODEL = ConfigDict(extra="forbid", frozen=True)


class Code(BaseModel):
    """A coded value (RFC 3881 CodedValueType: csd-code, codeSystemName, originalText)."""

    model_config = _MODEL

    code: str = Field(serialization_alias="csd-code")
    system: str = Field(serialization_alias="codeSystemName")
    meaning: str = Field(serialization_alias="originalText")


class EventIdentification(BaseModel):
    """What happened, when, with which outcome."""

    model_config = _MODEL

    EventID: Code
    EventActionCode: Literal["C", "R", "U", "D", "E"]
    EventDateTime: datetime
    EventOutcomeIndicator: Outcome
    EventTypeCode: tuple[Code, ...] = ()
    EventOutcomeDescription: str = ""


class ActiveParticipant(BaseModel):
    """A node or process taking part (AE title, network address)."""

    model_config = _MODEL

    UserID: str
    AlternativeUserID: str = ""
    UserIsRequestor: bool
    RoleIDCode: Code | None = None
    NetworkAccessPointID: str = ""
    NetworkAccessPointTypeCode: Literal[1, 2] | None = None  # 1 = machine name, 2 = IP address
    TLS: bool | None = None  # MarrowMap extension: was the connection DICOM TLS
    TLSPeerSubject: str = ""  # MarrowMap extension: the peer certificate's common name


class SopClassEntry(BaseModel):
    """Instances of one SOP class (PS3.15 ParticipantObjectDescription)."""

    model_config = _MODEL

    UID: str
    NumberOfInstances: int
    Instance: tuple[str, ...] = ()


class ParticipantObject(BaseModel):
    """What was acted on: a study (by Study Instance UID) or a job."""

    model_config = _MODEL

    ParticipantObjectID: str
    ParticipantObjectTypeCode: Literal[1, 2, 3, 4]  # 2 = system object
    ParticipantObjectTypeCodeRole: int  # 3 = report, 4 = resource
    ParticipantObjectIDTypeCode: Code
    SOPClass: tuple[SopClassEntry, ...] = ()
    ParticipantObjectDetail: dict[str, str | int] = Field(default_factory=dict)


class AuditSource(BaseModel):
    """Who wrote the event."""

    model_config = _MODEL

    AuditSourceID: str
    AuditSourceTypeCode: str = "4"  # application server process


class AuditMessage(BaseModel):
    """One audit event."""

    model_config = _MODEL

    EventIdentification: EventIdentification
    ActiveParticipant: tuple[ActiveParticipant, ...]
    AuditSourceIdentification: AuditSource
    ParticipantObjectIdentification: tuple[ParticipantObject, ...] = ()


def _code(value: str, meaning: str, system: str = "DCM") -> Code:
    return Code(code=value, system=system, meaning=meaning)


APPLICATION_ACTIVITY = _code("110100", "Application Activity")
APPLICATION_START = _code("110120", "Application Start")
APPLICATION_STOP = _code("110121", "Application Stop")
USER_AUTHENTICATION = _code("110114", "User Authentication")
LOGIN = _code("110122", "Login")
SECURITY_ALERT = _code("110113", "Security Alert")
NODE_AUTHENTICATION = _code("110126", "Node Authentication")
INSTANCES_TRANSFERRED = _code("110104", "DICOM Instances Transferred")
INSTANCES_ACCESSED = _code("110103", "DICOM Instances Accessed")
EXPORT = _code("110106", "Export")
STUDY_DELETED = _code("110105", "DICOM Study Deleted")
SOURCE = _code("110153", "Source Role ID")
DESTINATION = _code("110152", "Destination Role ID")
APPLICATION = _code("110150", "Application")
STUDY_UID = _code("110180", "Study Instance UID")


class _Rfc5424(logging.Formatter):
    """``1 TIMESTAMP HOST APP PROCID MSGID - MSG``; the handler puts ``<PRI>`` in front."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return f"1 {stamp} {socket.gethostname()} marrowmap {record.process} AUDIT - {record.getMessage()}"


class AuditTrail:
    """Writes audit events for one process (listener or worker)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source = AuditSource(AuditSourceID=f"{settings.ae_title}@{socket.gethostname()}")
        settings.audit_path.parent.mkdir(parents=True, exist_ok=True)
        self._handlers: list[logging.Handler] = [ConcurrentRotatingFileHandler(
            str(settings.audit_path), mode="a", maxBytes=settings.audit_max_mb * 1024 * 1024,
            backupCount=settings.audit_backups, encoding="utf-8", chmod=0o640,
        )]
        if settings.audit_syslog_host:
            syslog = logging.handlers.SysLogHandler(
                (settings.audit_syslog_host, settings.audit_syslog_port),
                facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV, socktype=socket.SOCK_DGRAM,
            )
            syslog.append_nul = False
            syslog.setFormatter(_Rfc5424())
            self._handlers.append(syslog)

    def record(self, message: AuditMessage) -> None:
        """Append one event (and send it to syslog when configured)."""
        record = logging.makeLogRecord({
            "name": "marrowmap.audit", "msg": message.model_dump_json(by_alias=True, exclude_defaults=True),
            "levelno": logging.WARNING if message.EventIdentification.EventOutcomeIndicator else logging.INFO,
            "levelname": "WARNING" if message.EventIdentification.EventOutcomeIndicator else "INFO",
        })
        for handler in self._handlers:
            handler.handle(record)

    def close(self) -> None:
        """Flush and close the outputs."""
        for handler in self._handlers:
            handler.close()

    # --- the events ------------------------------------------------------------------------
    def _us(self, *, requestor: bool, role: Code | None = None) -> ActiveParticipant:
        return ActiveParticipant(UserID=self._settings.ae_title, AlternativeUserID=str(os.getpid()),
                                 UserIsRequestor=requestor, RoleIDCode=role,
                                 NetworkAccessPointID=socket.gethostname(), NetworkAccessPointTypeCode=1)

    def _event(self, event_id: Code, action: Literal["C", "R", "U", "D", "E"], outcome: Outcome,
               participants: Sequence[ActiveParticipant], objects: Sequence[ParticipantObject] = (),
               types: Sequence[Code] = (), description: str = "") -> None:
        self.record(AuditMessage(
            EventIdentification=EventIdentification(
                EventID=event_id, EventActionCode=action, EventDateTime=datetime.now(UTC),
                EventOutcomeIndicator=outcome, EventTypeCode=tuple(types), EventOutcomeDescription=description),
            ActiveParticipant=tuple(participants),
            AuditSourceIdentification=self._source,
            ParticipantObjectIdentification=tuple(objects),
        ))

    def application(self, *, started: bool, component: str) -> None:
        """The listener (or a worker) started or stopped."""
        self._event(APPLICATION_ACTIVITY, "E", 0, [self._us(requestor=False, role=APPLICATION)],
                    types=[APPLICATION_START if started else APPLICATION_STOP], description=component)

    def association(self, *, peer: str, calling_ae: str, called_ae: str, tls: bool, tls_subject: str = "",
                    refused: str = "") -> None:
        """An association accepted, or an association/connection refused (``refused`` = why)."""
        them = ActiveParticipant(UserID=calling_ae or "(unknown)", UserIsRequestor=True, RoleIDCode=SOURCE,
                                 NetworkAccessPointID=peer, NetworkAccessPointTypeCode=2, TLS=tls,
                                 TLSPeerSubject=tls_subject)
        us = self._us(requestor=False, role=DESTINATION).model_copy(update={"UserID": called_ae or self._settings.ae_title})
        if refused:
            self._event(SECURITY_ALERT, "E", 4, [them, us], types=[NODE_AUTHENTICATION], description=refused)
        else:
            self._event(USER_AUTHENTICATION, "E", 0, [them, us], types=[LOGIN])

    def study_received(self, *, study_uid: str, instances: int, peer: str, calling_ae: str, tls: bool) -> None:
        """Instances of a study stored from one association."""
        them = ActiveParticipant(UserID=calling_ae, UserIsRequestor=True, RoleIDCode=SOURCE,
                                 NetworkAccessPointID=peer, NetworkAccessPointTypeCode=2, TLS=tls)
        self._event(INSTANCES_TRANSFERRED, "C", 0, [them, self._us(requestor=False, role=DESTINATION)],
                    [_study(study_uid, {"instances": instances})])

    def results_exported(self, *, job_id: str, study_uid: str, outcome: Outcome, summary: str,
                         instances: Sequence[tuple[str, str, bool]]) -> None:
        """One send attempt to the PACS: (SOP class, SOP instance, stored?) per instance."""
        settings = self._settings
        pacs = ActiveParticipant(UserID=settings.pacs_ae_title, UserIsRequestor=False, RoleIDCode=DESTINATION,
                                 NetworkAccessPointID=f"{settings.pacs_host}:{settings.pacs_port}",
                                 NetworkAccessPointTypeCode=1, TLS=settings.pacs_tls)
        by_class: dict[str, list[str]] = {}
        for sop_class, sop_uid, stored in instances:
            if stored:
                by_class.setdefault(sop_class, []).append(sop_uid)
        study = _study(study_uid, {"job_id": job_id, "attempted": len(instances),
                                   "stored": sum(1 for *_, stored in instances if stored)})
        study = study.model_copy(update={"SOPClass": tuple(
            SopClassEntry(UID=uid, NumberOfInstances=len(sops), Instance=tuple(sops)) for uid, sops in by_class.items())})
        self._event(EXPORT, "R", outcome, [self._us(requestor=True, role=SOURCE), pacs], [study],
                    description=summary)

    def job_failed(self, *, job_id: str, study_uid: str, reason: str) -> None:
        """A job ended in ``failed``."""
        self._event(INSTANCES_ACCESSED, "E", 8, [self._us(requestor=True)],
                    [_study(study_uid, {"job_id": job_id})], description=reason)

    def study_deleted(self, *, job_id: str, study_uid: str, removed: str) -> None:
        """Retention removed a sent job's copy of a study (``removed`` says what)."""
        self._event(STUDY_DELETED, "D", 0, [self._us(requestor=True)],
                    [_study(study_uid, {"job_id": job_id})], description=removed)


def _study(study_uid: str, detail: dict[str, str | int]) -> ParticipantObject:
    return ParticipantObject(ParticipantObjectID=study_uid or "(unknown)", ParticipantObjectTypeCode=2,
                             ParticipantObjectTypeCodeRole=3, ParticipantObjectIDTypeCode=STUDY_UID,
                             ParticipantObjectDetail=detail)
