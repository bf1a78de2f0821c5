"""Hand sealed jobs to Celery by task name (the listener never imports worker code).

Queueing is idempotent per job id: the job store holds a claim that becomes "sent" once the
broker accepted the message; the Celery task id is the job id.
"""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from marrowmap.contract import QUEUE_ANALYSIS, TASK_ANALYZE, JobMessage
from marrowmap.jobstore import JobState, JobStore, JobStoreError
from marrowmap.settings import Settings

#: What a broker or job-store outage looks like to the producer (the job stays pending).
QueueUnavailable = (OperationalError, KombuError, JobStoreError, ConnectionError, OSError)


class JobQueue:
    """The producer side of the analysis queue."""

    def __init__(self, settings: Settings) -> None:
        self._app = Celery("marrowmap-listener", broker=settings.broker_url, set_as_current=False)
        self._app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
            broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        )
        self._queue = settings.queue_name(QUEUE_ANALYSIS)
        self.jobs = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)

    def submit(self, job: JobMessage) -> bool:
        """Send the job unless it was already sent; True when a message was sent now."""
        checked = JobMessage.model_validate(job.model_dump(mode="json"))
        if not self.jobs.claim_enqueue(checked.job_id):
            return False
        current = self.jobs.get(checked.job_id)
        if current is None or current.state == JobState.QUEUED:
            self.jobs.record(
                checked.job_id,
                JobState.QUEUED,
                study_instance_uid=checked.study_instance_uid,
                calling_ae=checked.calling_ae,
                series=[s.model_dump(mode="json") for s in checked.series],
                instance_count=checked.instance_count,
                message=checked.model_dump(mode="json"),
            )
        self._app.send_task(
            TASK_ANALYZE,
            kwargs={"job": checked.model_dump(mode="json")},
            queue=self._queue,
            task_id=checked.job_id,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        )
        self.jobs.confirm_enqueued(checked.job_id)
        return True

    def close(self) -> None:
        """Release broker connections."""
        self._app.close()
