"""The sealer: closes studies when complete by evidence or after the quiet period, routes them,
and queues their jobs.

Runs in its own thread and checks at least every second (every quarter ``early_seal_seconds`` with
early completion, :mod:`service.completion`). Everything it needs is on disk,
so a restarted listener resumes where a crashed one stopped: studies in ``incoming`` are
sealed after a fresh quiet period, studies in ``sealing`` are built into batches, and ready
batches without a ``queued`` marker are (re-)queued - idempotently per job id.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from marrowmap.jobstore import JobState
from marrowmap.logs import get_logger
from marrowmap.manifest import MANIFEST_NAME, Manifest
from marrowmap.metrics import JOBS_QUEUED, STUDIES_SEALED, STUDIES_SKIPPED
from marrowmap.settings import Settings
from service.batches import build_batch, job_message, read_manifest
from service.completion import CompletionTracker
from service.enqueue import JobQueue, QueueUnavailable
from service.reconcile import Reconciler
from service.spool import QUEUED_MARKER, SealingStudy, Spool, write_durably

log = get_logger(__name__)


class Sealer:
    """Quiet-period detector, batch builder, router and producer."""

    def __init__(self, spool: Spool, settings: Settings, queue: JobQueue,
                 completion: CompletionTracker | None = None) -> None:
        self._spool = spool
        self._settings = settings
        self._queue = queue
        self._pending: dict[Path, Manifest] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_queue_attempt = 0.0
        self._seal_failed_at: dict[Path, float] = {}
        self._reconciler = Reconciler(spool, queue)
        self._next_reconcile = 0.0
        self._completion = completion if settings.early_completion else None
        self.interval = min(1.0, settings.quiet_seconds / 4)
        if self._completion is not None:
            self.interval = min(self.interval, max(0.1, settings.early_seal_seconds / 4))

    # --- start-up ------------------------------------------------------------------------
    def recover(self) -> None:
        """Resume whatever a previous run left in the spool."""
        for leftover in self._spool.pending_seals():
            log.info("sealer.resume_sealing", study_instance_uid=leftover.study_instance_uid, job_id=leftover.job_id)
            self._try_finish(leftover)
        for batch_dir in self._spool.all_batches():
            if (batch_dir / QUEUED_MARKER).exists() or not (batch_dir / MANIFEST_NAME).is_file():
                continue
            manifest = read_manifest(batch_dir)
            if manifest.route.analyse:
                log.info("sealer.resume_queueing", job_id=manifest.job_id, spool_path=self._spool.relative(batch_dir))
                self._pending[batch_dir] = manifest
            else:
                self._skip(batch_dir, manifest)
        resumed = self._spool.resume_incoming()
        if resumed:
            log.info("sealer.resume_incoming", studies=len(resumed), quiet_seconds=self._settings.quiet_seconds)
        self._flush_queue()
        self._reconcile()

    # --- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        """Run the sealer in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="marrowmap-sealer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (the current step finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as exc:  # thread boundary: log, keep sealing (failed seals are retried)
                log.exception("sealer.error", error=f"{type(exc).__name__}: {exc}")

    def run_once(self) -> None:
        """Seal every complete or quiet study, retry failed seals when due, queue pending jobs, reconcile when due."""
        quiet = self._settings.quiet_seconds
        for study in self._spool.quiet_studies(quiet):
            sealing = self._spool.begin_seal(study, quiet)
            if sealing is not None:
                log.info("study.complete", study_instance_uid=study, job_id=sealing.job_id, by="quiet period",
                         quiet_seconds=quiet)
                self._try_finish(sealing)
        if self._completion is not None:
            self._seal_complete(self._completion)
        self._retry_failed_seals()
        self._flush_queue()
        if time.monotonic() >= self._next_reconcile:
            self._reconcile()

    def _seal_complete(self, completion: CompletionTracker) -> None:
        """Seal the studies complete by evidence (nothing arrived during the settle delay either)."""
        now = time.monotonic()
        for study in self._spool.receiving_studies():
            reason = completion.complete(study, now)
            if reason is None:
                continue
            sealing = self._spool.begin_seal(study, self._settings.early_seal_seconds)
            if sealing is not None:
                log.info("study.complete", study_instance_uid=study, job_id=sealing.job_id, by="evidence",
                         reason=reason)
                self._try_finish(sealing)
        completion.prune(now)

    # --- recovery ------------------------------------------------------------------------------
    def _try_finish(self, sealing: SealingStudy) -> None:
        """Build the batch; on failure leave the study in ``sealing`` and retry after ``seal_retry_seconds``."""
        try:
            self._finish(sealing)
        except OSError as exc:  # disk full, I/O error: the study stays in sealing/, nothing is lost
            self._seal_failed_at[sealing.path] = time.monotonic()
            log.error("sealer.seal_failed", study_instance_uid=sealing.study_instance_uid, job_id=sealing.job_id,
                      error=f"{type(exc).__name__}: {exc}", retry_in_s=self._settings.seal_retry_seconds)
        else:
            self._seal_failed_at.pop(sealing.path, None)

    def _retry_failed_seals(self) -> None:
        """Seal again what a failure left in ``sealing`` once ``seal_retry_seconds`` have passed."""
        due = time.monotonic() - self._settings.seal_retry_seconds
        for leftover in self._spool.pending_seals():
            failed_at = self._seal_failed_at.get(leftover.path)
            if failed_at is None:
                self._seal_failed_at[leftover.path] = time.monotonic()  # found, not failed here: wait one period
            elif failed_at <= due:
                log.info("sealer.retry_seal", study_instance_uid=leftover.study_instance_uid, job_id=leftover.job_id)
                self._try_finish(leftover)

    def _reconcile(self) -> None:
        """Reconcile the spool with the job store and the broker; retried next period when they are down."""
        self._next_reconcile = time.monotonic() + self._settings.reconcile_interval_seconds
        try:
            changed = self._reconciler.run_once()
        except QueueUnavailable as exc:
            log.warning("reconcile.unavailable", error=f"{type(exc).__name__}: {exc}",
                        retry_in_s=self._settings.reconcile_interval_seconds)
            return
        if changed:
            log.info("reconcile.done", changed=changed)

    # --- steps -------------------------------------------------------------------------------
    def _finish(self, sealing: SealingStudy) -> None:
        started = time.perf_counter()
        batch_dir, manifest = build_batch(self._spool, sealing, self._settings)
        STUDIES_SEALED.inc()
        log.info(
            "study.sealed",
            study_instance_uid=manifest.study_instance_uid,
            job_id=manifest.job_id,
            batch=manifest.batch,
            series=len(manifest.series),
            instances=manifest.instance_count,
            new_instances=manifest.new_instances,
            resent_instances=manifest.resent_instances,
            carried_instances=manifest.carried_instances,
            calling_aets=list(manifest.calling_aets),
            first_received=manifest.first_received.isoformat(),
            last_received=manifest.last_received.isoformat(),
            receive_span_s=round((manifest.last_received - manifest.first_received).total_seconds(), 3),
            seal_s=round(time.perf_counter() - started, 3),
            route="analyse" if manifest.route.analyse else "skip",
            route_reason=manifest.route.reason,
        )
        if manifest.resent_instances:
            log.warning(
                "study.resent",
                study_instance_uid=manifest.study_instance_uid,
                job_id=manifest.job_id,
                batch=manifest.batch,
                resent_instances=manifest.resent_instances,
                new_instances=manifest.new_instances,
                note="instances already received in an earlier batch were replaced, not duplicated"
                     + ("; this batch gets one new job" if manifest.route.analyse else ""),
            )
        if manifest.route.analyse:
            self._pending[batch_dir] = manifest
        else:
            self._skip(batch_dir, manifest)

    def _skip(self, batch_dir: Path, manifest: Manifest) -> None:
        if manifest.route.own_results:  # our results came back: not a job, so no job record
            self._remove(batch_dir)
            log.info("study.own_results", study_instance_uid=manifest.study_instance_uid, job_id=manifest.job_id,
                     instances=manifest.new_instances, reason=manifest.route.reason)
            return
        try:
            self._queue.jobs.record(
                manifest.job_id,
                JobState.SKIPPED,
                reason=manifest.route.reason,
                study_instance_uid=manifest.study_instance_uid,
                calling_ae=manifest.calling_aets[0] if manifest.calling_aets else "",
                series=[s.model_dump(mode="json", exclude={"files"}) for s in manifest.series],
                instance_count=manifest.instance_count,
            )
        except QueueUnavailable as exc:
            log.warning("study.skip_not_recorded", job_id=manifest.job_id, error=str(exc))
        self._remove(batch_dir)
        STUDIES_SKIPPED.inc()
        log.info(
            "study.skipped",
            study_instance_uid=manifest.study_instance_uid,
            job_id=manifest.job_id,
            instances=manifest.instance_count,
            reason=manifest.route.reason,
        )

    @staticmethod
    def _remove(batch_dir: Path) -> None:
        shutil.rmtree(batch_dir)
        study_dir = batch_dir.parent
        if not any(study_dir.iterdir()):
            study_dir.rmdir()

    def _flush_queue(self) -> None:
        if not self._pending or time.monotonic() < self._next_queue_attempt:
            return
        for batch_dir, manifest in list(self._pending.items()):
            job = job_message(manifest, self._spool.relative(batch_dir))
            try:
                # before queueing: a newer batch makes the earlier jobs of the study superseded
                self._queue.jobs.register_batch(manifest.study_instance_uid, manifest.batch, job.job_id)
                sent = self._queue.submit(job)
            except QueueUnavailable as exc:
                self._next_queue_attempt = time.monotonic() + 5.0
                log.warning("job.queue_unavailable", job_id=job.job_id, error=str(exc), retry_in_s=5)
                return
            write_durably(batch_dir / QUEUED_MARKER, [job.job_id.encode()], self._spool.tmp)
            del self._pending[batch_dir]
            if sent:
                JOBS_QUEUED.inc()
            log.info(
                "job.queued" if sent else "job.already_queued",
                job_id=job.job_id,
                study_instance_uid=job.study_instance_uid,
                spool_path=job.spool_path,
                series=len(job.series),
                instances=job.instance_count,
            )
