"""Worker heartbeats in the job store, so a worker that dies (SIGKILL, lost host) is noticed in seconds.

Each worker's main process beats every ``worker_heartbeat_seconds``; the key expires after
``worker_lost_seconds`` (three missed beats). The listener's watchdog (``service.reconcile``)
re-delivers the jobs held by a worker whose key expired, instead of waiting for the Redis
visibility time-out (which must outlast the longest task and send backoff).
"""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from marrowmap.jobstore import JobStore, JobStoreError
from marrowmap.logs import get_logger
from marrowmap.settings import Settings
from workers.taskdefs import SETTINGS_KEY

log = get_logger(__name__)


class Heartbeat:
    """A daemon thread that keeps one worker's heartbeat key alive."""

    def __init__(self, settings: Settings, worker: str) -> None:
        self._settings = settings
        self._worker = worker
        self._store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marrowmap-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat now, then every ``worker_heartbeat_seconds`` until stopped."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and forget the worker (a clean stop is not a loss)."""
        self._stop.set()
        self._thread.join(5)
        try:
            self._store.retire_worker(self._worker)
        except JobStoreError as exc:
            log.warning("worker.heartbeat_not_retired", worker=self._worker, error=str(exc))

    def _run(self) -> None:
        while True:
            try:
                self._store.beat(self._worker, self._settings.worker_lost_seconds)
            except JobStoreError as exc:
                log.warning("worker.heartbeat_failed", worker=self._worker, error=str(exc))
            if self._stop.wait(self._settings.worker_heartbeat_seconds):
                return


_RUNNING: dict[str, Heartbeat] = {}


@worker_ready.connect(dispatch_uid="marrowmap.heartbeat.start")  # type: ignore[untyped-decorator]
def _start(sender: Any, **_: Any) -> None:
    settings = sender.app.conf.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        return
    beat = Heartbeat(settings, str(sender.hostname))
    _RUNNING[str(sender.hostname)] = beat
    beat.start()
    log.info("worker.heartbeat_started", worker=str(sender.hostname),
             every_s=settings.worker_heartbeat_seconds, lost_after_s=settings.worker_lost_seconds)


@worker_shutdown.connect(dispatch_uid="marrowmap.heartbeat.stop")  # type: ignore[untyped-decorator]
def _stop(sender: Any, **_: Any) -> None:
    for name in list(_RUNNING):
        _RUNNING.pop(name).stop()
