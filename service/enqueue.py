"""Hand sealed jobs to Celery by task name (the listener never imports worker code).

Queueing is idempotent per job id: the job store holds a claim that becomes "sent" once the
broker accepted the message; the Celery task id is the job id.
"""

from __future__ import annotations

import json

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, JobMessage
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
        self._send_queue = settings.queue_name(QUEUE_SEND)
        self.jobs = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)

    def submit(self, job: JobMessage, *, again: str = "") -> bool:
        """Send the job unless it was already sent; True when a message was sent now.

        ``again``: the reason to send it once more although it was sent (its message was lost).
        """
        checked = JobMessage.model_validate(job.model_dump(mode="json"))
        if not self.jobs.claim_enqueue(checked.job_id) and not again:
            return False
        current = self.jobs.get(checked.job_id)
        if current is None or current.state == JobState.QUEUED or again:
            self.jobs.record(
                checked.job_id,
                JobState.QUEUED,
                reason=again,
                worker="",
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

    def pending_task_ids(self) -> set[str]:
        """Ids of the tasks waiting in our analysis and send queues (read without taking them)."""
        ids: set[str] = set()
        with self._app.connection_for_read() as conn:
            client = conn.default_channel.client
            for queue in (self._queue, self._send_queue):
                for raw in client.lrange(queue, 0, -1):
                    ids.add(_task_id(raw))
        return ids

    def unacked_task_ids(self) -> dict[str, str]:
        """Delivery tag -> task id of every message a worker took but has not acknowledged."""
        with self._app.connection_for_read() as conn:
            channel = conn.default_channel
            raw = channel.client.hgetall(channel.unacked_key)
        out = {}
        for tag, value in raw.items():
            payload = json.loads(value)[0]
            out[tag.decode() if isinstance(tag, bytes) else str(tag)] = _task_id(json.dumps(payload))
        return out

    def redeliver(self, delivery_tag: str) -> None:
        """Put an unacknowledged message back at the head of its queue now (kombu's own restore)."""
        with self._app.connection_for_write() as conn:
            conn.default_channel.qos.restore_by_tag(delivery_tag, leftmost=True)

    def close(self) -> None:
        """Release broker connections."""
        self._app.close()


def _task_id(raw: bytes | str) -> str:
    """The Celery task id of a raw kombu message ('' when it has none)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return ""
    headers = message.get("headers") if isinstance(message, dict) else None
    return str(headers.get("id", "")) if isinstance(headers, dict) else ""
