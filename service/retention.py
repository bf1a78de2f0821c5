"""Retention: the spool keeps a sent job's data for ``retention_days``, and job records expire.

Runs in the listener (it owns the spool's ready tree), at start and every
``retention_interval_seconds``:

* a job whose state is ``sent`` or ``partially_sent`` (last change older than
  ``retention_days``) loses its ready batch and its results, except ``result.json`` and
  ``key_image.png``, which a later follow-up comparison of the same patient reads;
* above ``retention_max_spool_mb``, such jobs go earlier, oldest first;
* never: a job in any other state (queued, analysing, sending, failed, send_failed: unsent
  data stay until someone resends), a job without a record, or a batch of a study that is
  being received or sealed right now (checked under the spool's lock);
* a finished job's record expires ``job_record_days`` after its last change, once its
  spool data are gone.

Every removal is audited (DICOM Study Deleted).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from marrowmap.audit import AuditTrail
from marrowmap.jobstore import FINAL_STATES, JobRecord, JobState, JobStore, JobStoreError
from marrowmap.logs import get_logger
from marrowmap.manifest import MANIFEST_NAME
from marrowmap.settings import Settings
from service.batches import read_manifest
from service.spool import RESULT_FILE, RESULTS, Spool

log = get_logger(__name__)

#: What the follow-up comparison reads from a prior's results (workers.tasks.RESULT_NAME,
#: workers.followup.prior.KEY_IMAGE_FILE; a test keeps them equal).
KEPT_FOR_FOLLOW_UP = frozenset({RESULT_FILE, "key_image.png"})
#: Jobs whose spool data the policy may remove: sent, or superseded by a newer batch of the study (whose
#: folder holds the same instances, hard-linked; its rejection note was built when it was sent).
SENT_STATES = frozenset({JobState.SENT, JobState.PARTIALLY_SENT, JobState.SUPERSEDED})
_MB = 1024 * 1024


@dataclass(frozen=True)
class DiskUse:
    """Space the spool takes (hard-linked files counted once) and what its file system has left."""

    by_area: dict[str, int]
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        """Everything under the spool."""
        return sum(self.by_area.values())

    def describe(self) -> str:
        """One line for people."""
        areas = ", ".join(f"{name} {_size(n)}" for name, n in sorted(self.by_area.items()) if n)
        return f"{_size(self.total_bytes)} used ({areas or 'empty'}), {_size(self.free_bytes)} free"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", _MB), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _files(root: Path) -> Iterator[os.stat_result]:
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                yield os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue  # removed while we walked


def disk_use(spool_dir: Path) -> DiskUse:
    """Bytes on disk per top-level spool folder (incoming, ready, results, ...)."""
    seen: set[tuple[int, int]] = set()
    by_area: dict[str, int] = {}
    for area in sorted(p for p in spool_dir.iterdir() if p.is_dir()):
        total = 0
        for st in _files(area):
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
        by_area[area.name] = total
    fs = os.statvfs(spool_dir)
    return DiskUse(by_area=by_area, free_bytes=fs.f_bavail * fs.f_frsize)


def _freed_by_removing(paths: list[Path]) -> int:
    """Bytes that removing these files frees (files with other hard links free nothing)."""
    return sum(st.st_blocks * 512 for p in paths for st in ([p.lstat()] if p.exists() else []) if st.st_nlink == 1)


@dataclass
class JobData:
    """What the spool holds of one job."""

    job_id: str
    study_uid: str = ""
    batch: Path | None = None
    removable_results: list[Path] = field(default_factory=list)  # results except the follow-up files

    @property
    def present(self) -> bool:
        """True while retention still has something to remove."""
        return self.batch is not None or bool(self.removable_results)


@dataclass(frozen=True)
class RetentionReport:
    """What one retention pass did."""

    removed_jobs: tuple[str, ...]
    kept_unsent: int
    expired_records: int
    freed_bytes: int


class Retention:
    """The retention policy over one spool and job store."""

    def __init__(self, spool: Spool, jobs: JobStore, settings: Settings, audit: AuditTrail) -> None:
        self._spool = spool
        self._jobs = jobs
        self._settings = settings
        self._audit = audit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Apply the policy now and then every ``retention_interval_seconds`` (daemon thread)."""
        self._thread = threading.Thread(target=self._run, name="marrowmap-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except (JobStoreError, OSError) as exc:  # next pass tries again
                log.warning("retention.failed", error=str(exc))
            if self._stop.wait(self._settings.retention_interval_seconds):
                return

    def spool_data(self) -> dict[str, JobData]:
        """Every job that has a ready batch or results in the spool."""
        found: dict[str, JobData] = {}
        for batch in self._spool.all_batches():
            if (batch / MANIFEST_NAME).is_file():
                manifest = read_manifest(batch)
                found[manifest.job_id] = JobData(manifest.job_id, manifest.study_instance_uid, batch)
        results = self._spool.root / RESULTS
        for folder in sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []:
            data = found.setdefault(folder.name, JobData(folder.name))
            data.removable_results = sorted(p for p in folder.rglob("*")
                                            if p.is_file() and p.name not in KEPT_FOR_FOLLOW_UP)
        return found

    def run_once(self, now: datetime | None = None) -> RetentionReport:
        """One pass of the policy."""
        now = now or datetime.now(UTC)
        settings = self._settings
        data = {j: d for j, d in self.spool_data().items() if d.present}
        records = {j: r for j in data if (r := self._jobs.get(j)) is not None}
        sent = sorted((r for r in records.values() if r.state in SENT_STATES), key=lambda r: r.updated_at)
        cut_off = now - timedelta(days=settings.retention_days)
        removed: list[str] = []
        freed = 0
        for record in [r for r in sent if r.updated_at <= cut_off]:
            gone = self._remove(record, data[record.job_id], "sent more than retention_days ago")
            if gone is not None:
                freed += gone
                removed.append(record.job_id)
        if settings.retention_max_spool_mb:
            excess = disk_use(self._spool.root).total_bytes - settings.retention_max_spool_mb * _MB
            for record in [r for r in sent if r.job_id not in removed]:
                if excess <= 0:
                    break
                gone = self._remove(record, data[record.job_id], "spool above retention_max_spool_mb")
                if gone is not None:
                    excess -= gone
                    freed += gone
                    removed.append(record.job_id)
            if excess > 0:
                log.warning("retention.over_cap", note="only unsent data left to remove; nothing more removed",
                            over_mb=round(excess / _MB, 1))
        report = RetentionReport(
            removed_jobs=tuple(removed), kept_unsent=sum(1 for j in data if j not in records or
                                                         records[j].state not in SENT_STATES),
            expired_records=self._expire_records(now, {j for j, d in self.spool_data().items() if d.present}),
            freed_bytes=freed,
        )
        log.info("retention.done", removed_jobs=len(report.removed_jobs), kept_unsent=report.kept_unsent,
                 expired_records=report.expired_records, freed_mb=round(freed / _MB, 1))
        return report

    def _remove(self, record: JobRecord, data: JobData, why: str) -> int | None:
        """Remove what the spool holds of a sent job; the bytes freed, None when nothing could go."""
        current = self._jobs.get(record.job_id)  # a resend may have started since the listing
        if current is None or current.state not in SENT_STATES:
            return None
        removed_parts = []
        freed = 0
        if data.batch is not None:
            files = [p for p in data.batch.rglob("*") if p.is_file()]
            gone = _freed_by_removing(files)
            if self._spool.remove_batch(data.study_uid, data.batch):
                freed += gone
                removed_parts.append(f"ready batch {self._spool.relative(data.batch)}")
        if data.removable_results:
            freed += _freed_by_removing(data.removable_results)
            for path in data.removable_results:
                path.unlink(missing_ok=True)
            job_folder = self._spool.root / RESULTS / record.job_id
            for folder in sorted((p for p in job_folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                if not any(folder.iterdir()):
                    folder.rmdir()
            if not any(job_folder.iterdir()):
                job_folder.rmdir()
            removed_parts.append(f"{len(data.removable_results)} result file(s) of results/{record.job_id}")
        if not removed_parts:
            return None
        what = "; ".join(removed_parts)
        log.info("retention.removed", job_id=record.job_id, study_instance_uid=current.study_instance_uid,
                 state=current.state.value, sent_at=current.updated_at.isoformat(), reason=why, removed=what,
                 freed_mb=round(freed / _MB, 1))
        self._audit.study_deleted(job_id=record.job_id, study_uid=current.study_instance_uid, removed=f"{what} ({why})")
        return freed

    def _expire_records(self, now: datetime, with_data: set[str]) -> int:
        cut_off = now - timedelta(days=self._settings.job_record_days)
        expired = 0
        for job_id in self._jobs.created_before(cut_off.timestamp()):
            if job_id in with_data:
                continue
            record = self._jobs.get(job_id)
            if record is not None and record.state in FINAL_STATES and record.updated_at <= cut_off:
                self._jobs.expire(job_id)
                expired += 1
        return expired

