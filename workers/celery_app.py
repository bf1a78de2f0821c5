"""The Celery application of the workers, built from the settings (``make_celery``).

Broker and queues: Redis at ``broker_url``; analysis and sending are separate queues so
CPU-bound and network-bound work scale separately. Messages are JSON (the job contract).
"""

from __future__ import annotations

from celery import Celery

from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, TASK_SEND
from marrowmap.settings import Settings
from workers.taskdefs import register_tasks


def make_celery(settings: Settings) -> Celery:
    """A Celery app with the MarrowMap delivery policy and the tasks registered."""
    import workers.heartbeat  # noqa: F401  (connects the worker heartbeat to the worker's start and stop)
    import workers.tasks  # noqa: F401  (declares the tasks)
    from workers.dicom_out import load_standard_tables

    load_standard_tables()  # in the main process, so every pool process inherits them

    app = Celery("marrowmap", broker=settings.broker_url, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_seconds,
        task_soft_time_limit=settings.soft_time_limit_seconds,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue_name(QUEUE_ANALYSIS),
        task_routes={
            TASK_ANALYZE: {"queue": settings.queue_name(QUEUE_ANALYSIS)},
            TASK_SEND: {"queue": settings.queue_name(QUEUE_SEND)},
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    register_tasks(app, settings)
    return app
