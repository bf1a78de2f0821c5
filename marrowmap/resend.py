"""Retry a job (``marrowmap resend`` and the web page's resend button): send its results again,
or re-run its analysis when it has none (``results/<job_id>/result.json`` is missing).

Sends Celery tasks by name, as the listener does: no worker code is imported here.
"""

from __future__ import annotations

import uuid

from celery import Celery

from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, TASK_SEND
from marrowmap.jobstore import JobState, JobStore
from marrowmap.settings import Settings
from service.spool import RESULT_FILE, results_dir

#: States after which a job's results were (to be) sent, so a retry sends them again; in any other
#: state (e.g. failed, or not analysed) a retry analyses the study again from its job message.
SENDABLE = frozenset({JobState.ANALYSED, JobState.SENDING, JobState.SENT, JobState.PARTIALLY_SENT,
                      JobState.SEND_FAILED})


class ResendError(ValueError):
    """The job cannot be retried (unknown, or neither results nor a job message)."""


class Resender:
    """A producer for retries; one per process (it keeps a broker connection pool)."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self._settings = settings
        self._store = store
        self._app = Celery("marrowmap-resend", broker=settings.broker_url, set_as_current=False)
        self._app.conf.update(task_serializer="json", accept_content=["json"],
                              broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds})

    def resend(self, job_id: str) -> str:
        """Queue the retry; return what was done, in one line. ResendError says why not; JobStoreError and
        kombu's OperationalError when Redis is down."""
        record = self._store.get(job_id)
        if record is None:
            raise ResendError(f"no job {job_id}")
        task_id = f"{job_id}.resend-{uuid.uuid4().hex[:8]}"
        if (results_dir(self._settings.spool_dir, job_id) / RESULT_FILE).is_file() and record.state in SENDABLE:
            self._store.record(job_id, JobState.SENDING, reason=f"resend requested (was {record.state.value})")
            self._app.send_task(TASK_SEND, kwargs={"job_id": job_id},
                                queue=self._settings.queue_name(QUEUE_SEND), task_id=task_id)
            return f"{job_id}: results queued for sending again"
        if record.message is not None:
            self._store.record(job_id, JobState.QUEUED, reason=f"re-analysis requested (was {record.state.value})")
            self._app.send_task(TASK_ANALYZE, kwargs={"job": record.message},
                                queue=self._settings.queue_name(QUEUE_ANALYSIS), task_id=task_id)
            return f"{job_id}: queued for analysis again"
        raise ResendError(f"job {job_id} ({record.state.value}) has neither results nor a job message")

    def close(self) -> None:
        """Release the broker connections."""
        self._app.close()
