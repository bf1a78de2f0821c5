"""The Celery tasks. Thin: validate the message, re-read the job's state, do the step, record it.

Every task is idempotent: it returns early ("nothing to do") when the job store says its
work is already done, so a redelivered message (worker lost, visibility time-out) is harmless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Task
from pydantic import ValidationError

from marrowmap.audit import Outcome as AuditOutcome
from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, TASK_SEND, JobMessage
from marrowmap.jobstore import JobState, JobStore
from marrowmap.logs import get_logger
from marrowmap.metrics import (
    ANALYSIS_SECONDS,
    JOBS_FINISHED,
    OUTPUT_SECONDS,
    SEND_ATTEMPTS,
    SEND_FAILURES,
    SEND_SECONDS,
)
from marrowmap.priors import PriorIndex, site_secret
from marrowmap.settings import Settings
from workers.analysis.result import AnalysisResult
from workers.followup.lookup import find_prior_study, read_study_identity, register_study
from workers.pacs.store_scu import Outcome, SendReport, backoff_seconds, send_instances
from workers.pipeline import analyze_study_dir
from workers.spool_check import SpoolMismatch, study_folder, verify_study_folder
from workers.supersede import (
    lock_study,
    sent_by_earlier_jobs,
    superseded_reason,
    write_rejection_note,
)
from workers.taskdefs import house_task, task_audit, task_settings

log = get_logger(__name__)

#: States after which analyze_study has nothing left to do for a job.
ANALYSIS_DONE = frozenset({
    JobState.ANALYSED, JobState.NOT_APPLICABLE, JobState.FAILED, JobState.SENDING,
    JobState.SENT, JobState.PARTIALLY_SENT, JobState.SEND_FAILED,
})
#: States after which send_results has nothing left to do (``resend`` resets them).
SEND_DONE = frozenset({JobState.SENT, JobState.PARTIALLY_SENT})
RESULT_NAME = "result.json"
#: Audit outcome of a send attempt by its state (success, minor failure, serious failure).
_EXPORT_OUTCOME: dict[str, AuditOutcome] = {"sent": 0, "partially_sent": 4, "send_failed": 8}


def job_store(settings: Settings) -> JobStore:
    """The shared job store of these settings."""
    return JobStore.from_url(settings.jobs_url, settings.job_store_prefix)


def results_dir(settings: Settings, job_id: str) -> Path:
    """Where a job's outputs go: ``<spool_dir>/results/<job_id>/``."""
    return settings.spool_dir / "results" / job_id


@house_task(TASK_ANALYZE, queue=QUEUE_ANALYSIS)
def analyze_study(task: Task, *, job: dict[str, Any]) -> str:
    """Check the sealed study folder against its manifest, analyse it, chain the sending of the results."""
    settings = task_settings(task)
    store = job_store(settings)
    try:
        message = JobMessage.model_validate(job)
    except ValidationError as exc:
        job_id = str(job.get("job_id", "")) if isinstance(job, dict) else ""
        reason = f"invalid job message: {exc.error_count()} error(s): {exc.errors()[0]['msg']}"
        log.error("job.invalid_message", job_id=job_id, reason=reason)
        task_audit(task).job_failed(job_id=job_id, study_uid=str(job.get("study_instance_uid", "")), reason=reason)
        if job_id:
            store.record(job_id, JobState.FAILED, reason=reason)
        return JobState.FAILED.value
    current = store.get(message.job_id)
    if current is not None and current.state in ANALYSIS_DONE | {JobState.SUPERSEDED}:
        log.info("job.nothing_to_do", job_id=message.job_id, state=current.state.value, task=TASK_ANALYZE)
        return current.state.value
    study = message.study_instance_uid
    limit = settings.task_time_limit_seconds
    try:
        newer = lock_study(store, study, message.job_id, ttl_seconds=limit, wait_seconds=0.8 * limit)
    except TimeoutError as exc:
        raise task.retry(countdown=5, max_retries=None, exc=exc) from exc
    if newer is not None:
        return _supersede(store, message.job_id, newer)
    try:
        return _received(task, settings, store, message)
    finally:
        store.unlock_study(study, message.job_id)


def _supersede(store: JobStore, job_id: str, newer: str) -> str:
    """Record that a newer batch of the study replaced ``job_id``; nothing of it is (further) sent."""
    store.record(job_id, JobState.SUPERSEDED, reason=superseded_reason(newer))
    log.info("job.superseded", job_id=job_id, newer_job_id=newer)
    return JobState.SUPERSEDED.value


def _received(task: Task, settings: Settings, store: JobStore, message: JobMessage) -> str:
    """Check the study folder against its manifest, analyse it (the caller holds the study's lock)."""
    try:
        manifest = verify_study_folder(settings.spool_dir, message)
    except SpoolMismatch as exc:
        log.error("job.spool_mismatch", job_id=message.job_id, reason=str(exc))
        store.record(message.job_id, JobState.FAILED, reason=f"spool check failed: {exc}",
                     study_instance_uid=message.study_instance_uid)
        task_audit(task).job_failed(job_id=message.job_id, study_uid=message.study_instance_uid,
                                    reason=f"spool check failed: {exc}")
        return JobState.FAILED.value
    series = [s.model_dump(mode="json", exclude={"files"}) for s in manifest.series]
    store.record(
        message.job_id,
        JobState.RECEIVED,
        reason=f"{len(series)} series, {manifest.instance_count} instances checked against the manifest",
        study_instance_uid=message.study_instance_uid,
        calling_ae=message.calling_ae,
        worker=_worker(task),
        series=series,
        instance_count=manifest.instance_count,
        message=message.model_dump(mode="json"),
    )
    log.info("job.received", job_id=message.job_id, study_instance_uid=message.study_instance_uid,
             series=len(series), instances=manifest.instance_count, spool_path=message.spool_path)
    state = _analyse(task, settings, store, message, manifest.incomplete_reason)
    return state.value


def _worker(task: Task) -> str:
    """The Celery node name running ``task`` (its heartbeat key; ``service.reconcile`` watches it)."""
    return str(task.request.hostname or "")


def result_summary(result: AnalysisResult) -> dict[str, Any]:
    """What the job store keeps of a result (numbers exactly as the analysis computed them)."""
    sides = {
        side: {
            "localized": r.localized,
            "present": r.present,
            "oedema_volume_ml": r.oedema_volume_ml,
            "head_involvement_pct": r.head_involvement_pct,
            "pattern": r.pattern,
            "reason": r.reason,
        }
        for side, r in result.sides.items()
    }
    return {
        "status": result.status,
        "reason": result.reason,
        "sides": sides,
        "confidence": result.quality.confidence,
        "outputs": [o.kind for o in result.outputs],
        "seconds": result.timings_s.get("total"),
        "comparison": None if result.comparison is None else {
            "prior_study_instance_uid": result.comparison.prior.study_instance_uid,
            "sides": {side: c.status for side, c in result.comparison.sides.items()},
        },
    }


_STATE_OF_RESULT = {"analyzed": JobState.ANALYSED, "not_applicable": JobState.NOT_APPLICABLE,
                    "failed": JobState.FAILED}


def _analyse(task: Task, settings: Settings, store: JobStore, message: JobMessage, incomplete: str) -> JobState:
    """Run the analysis on the study folder; record the outcome; chain sending when there are outputs.

    ``incomplete``: why the sealed batch is partial; such a study is not analysed (its SR and summary say why).
    A failed analysis still sends its SR and summary with the reason, so the radiologist knows it was seen.
    """
    out_dir = results_dir(settings, message.job_id)
    store.record(message.job_id, JobState.ANALYSING, reason=f"analysis started, outputs in results/{message.job_id}",
                 worker=_worker(task))
    folder = study_folder(settings.spool_dir, message)
    priors = PriorIndex.from_url(settings.jobs_url, settings.job_store_prefix)
    identity = read_study_identity(folder, secret=site_secret(settings.site_secret_path))
    prior = None if incomplete else find_prior_study(priors, identity)
    result = analyze_study_dir(folder, out_dir, settings=settings, prior=prior, not_applicable_reason=incomplete)
    newer = store.newer_job(message.study_instance_uid, message.job_id)
    if newer is None:  # a superseded result is never a prior for follow-up comparisons
        register_study(priors, identity, message.job_id, result, out_dir / RESULT_NAME)
    state = _STATE_OF_RESULT[result.status]
    store.record(message.job_id, state, reason=result.reason or f"{len(result.outputs)} output object(s)",
                 result=result_summary(result))
    _count_analysis(result, state)
    log.info("job.analysed", job_id=message.job_id, state=state.value, reason=result.reason,
             outputs=len(result.outputs), seconds=result.timings_s.get("total"))
    if state is JobState.FAILED:
        task_audit(task).job_failed(job_id=message.job_id, study_uid=message.study_instance_uid,
                                    reason=result.reason or "analysis failed")
    if newer is not None:
        _supersede(store, message.job_id, newer)
        return JobState.SUPERSEDED
    if result.outputs:
        store.record(message.job_id, JobState.SENDING, reason=f"{len(result.outputs)} object(s) queued for sending"
                     + ("" if state is JobState.ANALYSED else f" ({state.value}: the SR and summary say why)"))
        task.app.send_task(TASK_SEND, kwargs={"job_id": message.job_id},
                           queue=settings.queue_name(QUEUE_SEND), task_id=f"{message.job_id}.send")
    return state


def _count_analysis(result: AnalysisResult, state: JobState) -> None:
    """The analysis in the worker's metrics: its outcome and how long it and its outputs took."""
    JOBS_FINISHED.labels(state=state.value).inc()
    if "total" in result.timings_s:
        ANALYSIS_SECONDS.labels(status=result.status).observe(result.timings_s["total"])
    if "outputs" in result.timings_s:
        OUTPUT_SECONDS.observe(result.timings_s["outputs"])


def _output_paths(settings: Settings, job_id: str) -> list[Path]:
    folder = results_dir(settings, job_id)
    result = AnalysisResult.model_validate_json((folder / RESULT_NAME).read_bytes())
    return [Path(o.path) if Path(o.path).is_absolute() else folder / o.path for o in result.outputs]


def _rejection_note(settings: Settings, store: JobStore, study_uid: str, job_id: str) -> list[Path]:
    """The IOCM rejection note withdrawing what earlier jobs of the study sent (sent last), or nothing."""
    folder = results_dir(settings, job_id)
    outputs = AnalysisResult.model_validate_json((folder / RESULT_NAME).read_bytes()).outputs
    rejected = sent_by_earlier_jobs(store, study_uid, job_id, keep={o.sop_instance_uid for o in outputs})
    if not rejected:
        return []
    note = write_rejection_note(rejected, folder, job_id=job_id, uid_prefix=settings.uid_prefix)
    log.info("job.rejection_note", job_id=job_id, rejected_instances=len(rejected), written=note is not None)
    return [] if note is None else [note]


@house_task(TASK_SEND, queue=QUEUE_SEND)
def send_results(task: Task, *, job_id: str, paths: list[str] | None = None) -> str:
    """Send a job's result objects to the PACS; retry transient failures with capped backoff.

    ``paths`` (set on a retry) limits the attempt to the instances not yet delivered.
    """
    settings = task_settings(task)
    store = job_store(settings)
    current = store.get(job_id)
    if current is None:
        log.error("job.unknown", job_id=job_id, task=TASK_SEND)
        return "unknown"
    if current.state in SEND_DONE | {JobState.SUPERSEDED}:
        log.info("job.nothing_to_do", job_id=job_id, state=current.state.value, task=TASK_SEND)
        return current.state.value
    newer = store.newer_job(current.study_instance_uid, job_id)
    if newer is not None:
        return _supersede(store, job_id, newer)
    try:
        todo = [Path(p) for p in paths] if paths is not None else _output_paths(settings, job_id)
        if paths is None:
            todo.extend(_rejection_note(settings, store, current.study_instance_uid, job_id))
    except (OSError, ValidationError) as exc:
        store.record(job_id, JobState.SEND_FAILED, reason=f"results unreadable: {exc}")
        return JobState.SEND_FAILED.value
    attempt = int(task.request.retries or 0)
    store.record(job_id, JobState.SENDING, reason=f"attempt {attempt + 1}: {len(todo)} object(s) to "
                 f"{settings.pacs_ae_title}@{settings.pacs_host}:{settings.pacs_port}", worker=_worker(task))
    report = send_instances(todo, settings=settings)
    SEND_ATTEMPTS.inc()
    SEND_SECONDS.observe(report.seconds)
    task_audit(task).results_exported(
        job_id=job_id, study_uid=current.study_instance_uid, outcome=_EXPORT_OUTCOME[report.state],
        summary=report.summary,
        instances=[(i.sop_class_uid, i.sop_instance_uid, i.outcome is Outcome.SENT) for i in report.instances],
    )
    if paths is not None and current.send.get("report"):
        report = SendReport.model_validate(current.send["report"]).merged(report)
    if report.transient and attempt < settings.send_max_retries:
        SEND_FAILURES.labels(outcome="retry").inc()
        delay = backoff_seconds(attempt, settings)
        store.record(job_id, JobState.SENDING, reason=f"{report.summary}; retry {attempt + 1} in {delay:.0f} s",
                     send={"report": report.model_dump(mode="json"), "summary": report.summary})
        raise task.retry(kwargs={"job_id": job_id, "paths": [str(p) for p in report.retry_paths]},
                         countdown=delay, max_retries=settings.send_max_retries)
    state = JobState(report.state)
    JOBS_FINISHED.labels(state=state.value).inc()
    if state is not JobState.SENT:
        SEND_FAILURES.labels(outcome=state.value).inc()
    store.record(job_id, state, reason=report.summary,
                 send={"report": report.model_dump(mode="json"), "summary": report.summary})
    log.info("job.send_done", job_id=job_id, state=state.value, summary=report.summary)
    return state.value
