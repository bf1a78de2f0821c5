"""Reconcile the spool with the job store and the broker; re-deliver the jobs of lost workers.

The spool is the truth: every ready batch with a ``queued`` marker must have a job that is
either finished or on its way. Run by the sealer at start and every ``reconcile_interval_seconds``:

* a batch whose job has no record (Redis lost its data) is queued again, once;
* a job still ``queued`` whose message is neither waiting in a queue nor held by a worker, on
  two passes in a row (the message was lost), is queued again;
* a job ``received`` / ``analysing`` / ``sending`` on a worker whose heartbeat stopped
  (``workers.heartbeat``) gets its unacknowledged message back at the head of its queue now,
  instead of after the broker's visibility time-out; with no message left it is queued again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from marrowmap.jobstore import JobRecord, JobState, JobStore
from marrowmap.logs import get_logger
from marrowmap.manifest import MANIFEST_NAME, Manifest
from service.batches import job_message, read_manifest
from service.enqueue import JobQueue
from service.spool import QUEUED_MARKER, Spool

log = get_logger(__name__)

#: States in which a worker holds the job (its message is unacknowledged).
HELD_STATES = frozenset({JobState.RECEIVED, JobState.ANALYSING, JobState.SENDING})


@dataclass(frozen=True, slots=True)
class Batch:
    """A ready batch handed to the broker (it has the ``queued`` marker)."""

    path: Path
    manifest: Manifest


def queued_batches(spool: Spool, known: dict[Path, Manifest] | None = None) -> list[Batch]:
    """Ready batches whose job was handed to the broker (``known``: manifests already read; a ready
    batch never changes, so a caller that passes the same dict reads each manifest once)."""
    cache = {} if known is None else known
    out = []
    for batch_dir in spool.all_batches():
        if (batch_dir / QUEUED_MARKER).exists() and (batch_dir / MANIFEST_NAME).is_file():
            if batch_dir not in cache:
                cache[batch_dir] = read_manifest(batch_dir)
            out.append(Batch(batch_dir, cache[batch_dir]))
    return out


def unrecorded_batches(spool: Spool, store: JobStore) -> list[Batch]:
    """Queued batches the job store has no record of (``marrowmap status`` lists them)."""
    return [b for b in queued_batches(spool) if store.get(b.manifest.job_id) is None]


@dataclass
class Reconciler:
    """One pass at a time over the spool, the job store and the broker (not thread-safe: the sealer's thread)."""

    spool: Spool
    queue: JobQueue
    _missing_once: set[str] = field(default_factory=set, init=False)
    _manifests: dict[Path, Manifest] = field(default_factory=dict, init=False)

    def run_once(self) -> int:
        """Reconcile every queued batch; return how many jobs were re-queued or re-delivered."""
        jobs = self.queue.jobs
        batches = queued_batches(self.spool, self._manifests)
        self._manifests = {b.path: b.manifest for b in batches}  # forget batches removed from the spool
        records = {b.manifest.job_id: (b, jobs.get(b.manifest.job_id)) for b in batches}
        waiting = [job_id for job_id, (_, r) in records.items() if r is not None and r.state is JobState.QUEUED]
        held = [(job_id, r) for job_id, (_, r) in records.items()
                if r is not None and r.state in HELD_STATES and not jobs.worker_alive(r.worker)]
        pending = self.queue.pending_task_ids() if waiting or held else set()
        unacked = self.queue.unacked_task_ids() if waiting or held else {}
        in_flight = pending | set(unacked.values())
        actions = 0
        for job_id, (batch, record) in records.items():
            if record is None:
                jobs.register_batch(batch.manifest.study_instance_uid, batch.manifest.batch, job_id)
                self.queue.submit(job_message(batch.manifest, self.spool.relative(batch.path)),
                                  again="re-queued: the job store had no record of this sealed batch")
                log.warning("reconcile.requeued", job_id=job_id, reason="no job record (job store lost its data?)")
                actions += 1
        for job_id in waiting:
            if any(t == job_id or t.startswith(f"{job_id}.") for t in in_flight):
                self._missing_once.discard(job_id)
            elif job_id in self._missing_once:
                batch = records[job_id][0]
                self.queue.submit(job_message(batch.manifest, self.spool.relative(batch.path)),
                                  again="re-queued: its queue message was lost")
                log.warning("reconcile.requeued", job_id=job_id, reason="queued, but no message in the broker")
                self._missing_once.discard(job_id)
                actions += 1
            else:
                self._missing_once.add(job_id)
        for job_id, record in held:
            actions += self._redeliver(job_id, record, records[job_id][0], unacked, pending)
        return actions

    def _redeliver(self, job_id: str, record: JobRecord, batch: Batch, unacked: dict[str, str],
                   pending: set[str]) -> int:
        """Give a lost worker's job back to the queue; 1 when something was re-delivered."""
        last = self.queue.jobs.last_beat(record.worker)
        tags = [tag for tag, task_id in unacked.items() if task_id == job_id or task_id.startswith(f"{job_id}.")]
        if not tags and any(t == job_id or t.startswith(f"{job_id}.") for t in pending):
            return 0  # already back in its queue
        now = datetime.now(UTC)
        reason = (f"worker {record.worker} lost (last heartbeat "
                  f"{last.isoformat(timespec='seconds') if last else 'unknown'}); "
                  f"re-delivered at {now.isoformat(timespec='seconds')}")
        if tags:
            for tag in tags:
                self.queue.redeliver(tag)
            self.queue.jobs.record(job_id, JobState.QUEUED, reason=reason, worker="")
        else:
            self.queue.submit(job_message(batch.manifest, self.spool.relative(batch.path)), again=reason)
        log.warning("reconcile.worker_lost", job_id=job_id, worker=record.worker, state=record.state.value,
                    messages=len(tags), reason=reason)
        return 1
