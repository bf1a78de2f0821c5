"""Late instances after an early start: one current result set per study in the PACS.

The listener registers every sealed batch of a study in the job store before queueing it
(``JobStore.register_batch``); the newest batch - which holds ALL instances of the study,
the early ones hard-linked - is the study's current job. Here the worker side:

* a job whose study has a newer batch is **superseded**: checked before its analysis, before
  its results are queued for sending and before each send attempt, so results not yet sent
  never reach the PACS;
* a study is analysed by one job at a time (``JobStore.try_lock_study``);
* results of earlier jobs that **were** sent are withdrawn by an IHE IOCM rejection note sent
  after the new results: a Key Object Selection titled (113001, DCM, "Rejected for Quality
  Reasons") listing every instance they delivered. Archives that implement IOCM (dcm4chee-arc)
  hide them; others (Orthanc) keep them, with the note beside them in the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from marrowmap.jobstore import JobState, JobStore
from marrowmap.logs import get_logger
from marrowmap.markers import MANUFACTURER, MODEL_NAME, SERIES_NUMBERS

log = get_logger(__name__)

REJECTION_NOTE_NAME = "rejection_note.dcm"
_DESCRIPTION = "MarrowMap results superseded: computed before late images of the study arrived"
_POLL_SECONDS = 0.5


def superseded_reason(newer_job: str) -> str:
    """The job-store reason of a superseded job."""
    return (f"superseded by job {newer_job}: images of the study arrived after the analysis started; "
            "the new job analyses the complete study")


def lock_study(store: JobStore, study_uid: str, job_id: str, *, ttl_seconds: float, wait_seconds: float,
               sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Wait until ``job_id`` holds the study's analysis lock; return the newer job instead when one appears.

    Raises TimeoutError when another job still holds the lock after ``wait_seconds``.
    """
    deadline = time.monotonic() + wait_seconds
    logged = False
    while True:
        newer = store.newer_job(study_uid, job_id)
        if newer is not None:
            return newer
        if store.try_lock_study(study_uid, job_id, ttl_seconds):
            return None
        if time.monotonic() >= deadline:
            raise TimeoutError(f"study {study_uid} still analysed by another job after {wait_seconds:.0f} s")
        if not logged:
            log.info("job.waiting_for_study", job_id=job_id, study_instance_uid=study_uid,
                     note="another job of the study is being analysed")
            logged = True
        sleep(_POLL_SECONDS)


def sent_by_earlier_jobs(store: JobStore, study_uid: str, job_id: str, *, keep: set[str],
                         wait_seconds: float = 15.0) -> list[Path]:
    """Result files that earlier jobs of the study delivered to the PACS (waits briefly while one is sending).

    ``keep``: SOP Instance UIDs the new job sends itself (same input, same UIDs): never rejected.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        jobs = store.study_jobs(study_uid)
        earlier = jobs[:jobs.index(job_id)] if job_id in jobs else []
        records = [r for r in (store.get(j) for j in earlier) if r is not None]
        if all(r.state is not JobState.SENDING for r in records) or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    paths: list[Path] = []
    for record in records:
        report = record.send.get("report") or {}
        paths.extend(Path(i["path"]) for i in report.get("instances", [])
                     if i.get("outcome") == "sent" and i.get("sop_instance_uid") not in keep)
    return paths


def write_rejection_note(rejected: list[Path], out_dir: Path, *, job_id: str, uid_prefix: str) -> Path | None:
    """Write the IOCM rejection note listing ``rejected`` (readable ones) to ``out_dir``; None when none is readable.

    Its UIDs derive from the job and the rejected instances, so a re-sent note is the same object.
    """
    references = []
    for path in rejected:
        try:
            references.append(dcmread(path, stop_before_pixels=True))
        except (OSError, InvalidDicomError) as exc:
            log.warning("supersede.unreadable_result", job_id=job_id, file=path.name, error=str(exc))
    if not references:
        return None
    entropy = [job_id, *sorted(str(r.SOPInstanceUID) for r in references)]
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.RejectedForQualityReasons,
                                       referenced_objects=references, description=_DESCRIPTION)
    note = hd.ko.KeyObjectSelectionDocument(
        evidence=references, content=content,
        series_instance_uid=str(generate_uid(prefix=uid_prefix, entropy_srcs=[*entropy, "rejection.series"])),
        series_number=SERIES_NUMBERS["rejection"],
        sop_instance_uid=str(generate_uid(prefix=uid_prefix, entropy_srcs=[*entropy, "rejection.instance"])),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        series_description="MarrowMap rejection note (superseded results)")
    path = out_dir / REJECTION_NOTE_NAME
    note.save_as(path, enforce_file_format=True)
    return path
