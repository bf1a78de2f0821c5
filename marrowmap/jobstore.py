"""The job store: every job's state, shared by the listener and all workers (Redis).

One Redis hash per job (``<prefix>:job:<job_id>``), field values JSON encoded, plus a sorted
set ``<prefix>:jobs`` (score = creation time) for "recent jobs", and a bounded history list
``<prefix>:job:<job_id>:history`` of every state change with its reason. Only UIDs, AE
titles, counts, times and reasons are stored; no patient identity.

States (``JobState``)::

    queued -> received -> analysing -> analysed | not_applicable | failed
           -> sending -> sent | partially_sent | send_failed
    skipped (the listener's routing said "not a hip MR"; no job message was sent)
    superseded (a newer batch of the same study - instances that arrived after an early start -
                replaced this job before its results were sent)

Per study, ``<prefix>:study:<uid>:batches`` maps each sealed batch number to its job id (the newest
batch is the study's current job) and ``<prefix>:study:<uid>:analysing`` holds the job analysing
the study (one at a time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from marrowmap.contract import JobMessage

_HISTORY_LIMIT = 100


class JobState(StrEnum):
    """Where a job is."""

    QUEUED = "queued"
    SKIPPED = "skipped"
    RECEIVED = "received"
    ANALYSING = "analysing"
    ANALYSED = "analysed"
    NOT_APPLICABLE = "not_applicable"
    FAILED = "failed"
    SENDING = "sending"
    SENT = "sent"
    PARTIALLY_SENT = "partially_sent"
    SEND_FAILED = "send_failed"
    SUPERSEDED = "superseded"


#: States after which nothing more happens unless a person asks (``marrowmap resend``).
FINAL_STATES = frozenset(
    {JobState.SKIPPED, JobState.NOT_APPLICABLE, JobState.FAILED, JobState.SENT,
     JobState.PARTIALLY_SENT, JobState.SEND_FAILED, JobState.SUPERSEDED}
)
#: How long the batch list of a study is kept after its last batch.
_STUDY_BATCHES_TTL_S = 90 * 86400
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class JobStoreError(RuntimeError):
    """The job store (Redis) cannot be reached or holds an unreadable record."""


class StateChange(BaseModel):
    """One entry of a job's history."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: JobState
    at: datetime
    reason: str = ""


class JobRecord(BaseModel):
    """What the store knows about one job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    state: JobState
    updated_at: datetime
    study_instance_uid: str = ""
    calling_ae: str = ""
    worker: str = Field("", description="Celery node name of the worker that holds the job (received .. sending).")
    series: list[dict[str, Any]] = Field(default_factory=list)
    instance_count: int | None = None
    reason: str = ""
    error: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    send: dict[str, Any] = Field(default_factory=dict)
    times: dict[str, datetime] = Field(default_factory=dict, description="First time each state was entered.")
    message: dict[str, Any] | None = Field(None, description="The job message, for `marrowmap resend`.")
    history: list[StateChange] = Field(default_factory=list)


_KNOWN_FIELDS = frozenset(JobRecord.model_fields) - {"job_id", "history", "times"}


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Typed access to the job records in Redis."""

    def __init__(self, client: redis.Redis[bytes], prefix: str = "marrowmap") -> None:
        self._r = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "marrowmap") -> JobStore:
        """Connect to the Redis at ``url`` (connection happens lazily on first use)."""
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        return cls(client, prefix)

    # --- keys ------------------------------------------------------------------------------
    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def _history_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:history"

    def _queued_key(self, job_id: str) -> str:
        return f"{self._prefix}:enqueue:{job_id}"

    def _batches_key(self, study_uid: str) -> str:
        return f"{self._prefix}:study:{study_uid}:batches"

    def _analysing_key(self, study_uid: str) -> str:
        return f"{self._prefix}:study:{study_uid}:analysing"

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}:jobs"

    def _alive_key(self, worker: str) -> str:
        return f"{self._prefix}:worker:{worker}"

    @property
    def _beats_key(self) -> str:
        return f"{self._prefix}:workers"

    # --- writing ---------------------------------------------------------------------------
    def record(self, job_id: str, state: JobState, *, reason: str = "", **details: Any) -> None:
        """Set the job's state (with a reason) and merge ``details`` (JobRecord field names)."""
        unknown = set(details) - _KNOWN_FIELDS
        if unknown:
            raise ValueError(f"unknown job record field(s): {sorted(unknown)}")
        at = _now()
        fields: dict[str, str] = {
            "state": json.dumps(str(state)),
            "updated_at": json.dumps(at.isoformat()),
            "reason": json.dumps(reason),
        }
        for name, value in details.items():
            fields[name] = json.dumps(value, default=str)
        change = StateChange(state=state, at=at, reason=reason).model_dump_json()
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._job_key(job_id), mapping=fields)  # type: ignore[arg-type]
            pipe.hsetnx(self._job_key(job_id), f"time:{state}", json.dumps(at.isoformat()))
            pipe.rpush(self._history_key(job_id), change)
            pipe.ltrim(self._history_key(job_id), -_HISTORY_LIMIT, -1)
            pipe.zadd(self._index_key, {job_id: time.time()}, nx=True)
            pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while recording {job_id}: {exc}") from exc

    def save_message(self, job: JobMessage) -> None:
        """Keep the job message with the record so the job can be re-queued later."""
        self._hset(job.job_id, "message", job.model_dump(mode="json"))

    def _hset(self, job_id: str, name: str, value: Any) -> None:
        try:
            self._r.hset(self._job_key(job_id), name, json.dumps(value, default=str))
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while updating {job_id}: {exc}") from exc

    def claim_enqueue(self, job_id: str) -> bool:
        """True if this caller may send the job to the queue (first claim, or an unconfirmed one).

        A claim is confirmed by :meth:`confirm_enqueued` after the broker accepted the message;
        a claim left unconfirmed by a crash can be taken again (at-least-once; tasks are idempotent).
        """
        key = self._queued_key(job_id)
        try:
            if self._r.set(key, "claimed", nx=True):
                return True
            return self._r.get(key) != b"sent"
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while claiming {job_id}: {exc}") from exc

    def confirm_enqueued(self, job_id: str) -> None:
        """Mark the job's message as accepted by the broker."""
        try:
            self._r.set(self._queued_key(job_id), "sent")
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while confirming {job_id}: {exc}") from exc

    # --- batches of one study -----------------------------------------------------------------
    def register_batch(self, study_uid: str, batch: int, job_id: str) -> None:
        """Record that sealed batch ``batch`` of a study is job ``job_id`` (idempotent; before queueing it)."""
        key = self._batches_key(study_uid)
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(key, str(batch), job_id)
            pipe.expire(key, _STUDY_BATCHES_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while registering {job_id}: {exc}") from exc

    def study_jobs(self, study_uid: str) -> list[str]:
        """Job ids of a study's sealed batches, oldest batch first."""
        try:
            raw = self._r.hgetall(self._batches_key(study_uid))
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while listing batches of a study: {exc}") from exc
        return [raw[k].decode() for k in sorted(raw, key=lambda k: int(k))]

    def newer_job(self, study_uid: str, job_id: str) -> str | None:
        """The study's current job when it is newer than ``job_id`` (``job_id`` is superseded), else None."""
        jobs = self.study_jobs(study_uid)
        if job_id not in jobs or jobs[-1] == job_id:
            return None
        return jobs[-1]

    def try_lock_study(self, study_uid: str, job_id: str, ttl_seconds: float) -> bool:
        """Take the study's analysis lock for ``job_id`` (True also when it already holds it)."""
        key = self._analysing_key(study_uid)
        try:
            if self._r.set(key, job_id, nx=True, px=max(1, int(ttl_seconds * 1000))):
                return True
            return self._r.get(key) == job_id.encode()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while locking a study for {job_id}: {exc}") from exc

    def unlock_study(self, study_uid: str, job_id: str) -> None:
        """Release the study's analysis lock if ``job_id`` holds it."""
        try:
            self._r.eval(_UNLOCK, 1, self._analysing_key(study_uid), job_id)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while unlocking a study for {job_id}: {exc}") from exc

    # --- worker heartbeats -------------------------------------------------------------------
    def beat(self, worker: str, lost_after_seconds: float) -> None:
        """Worker ``worker`` is alive now; it counts as lost when no beat comes for ``lost_after_seconds``."""
        now = _now().isoformat()
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.set(self._alive_key(worker), now, px=max(1, int(lost_after_seconds * 1000)))
            pipe.hset(self._beats_key, worker, now)
            pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while recording a heartbeat: {exc}") from exc

    def retire_worker(self, worker: str) -> None:
        """A worker stopped cleanly: forget its heartbeat."""
        try:
            self._r.delete(self._alive_key(worker))
            self._r.hdel(self._beats_key, worker)
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while retiring a worker: {exc}") from exc

    def worker_alive(self, worker: str) -> bool:
        """True while ``worker`` beats (a job without a worker name counts as alive: nothing to check)."""
        if not worker:
            return True
        try:
            return bool(self._r.exists(self._alive_key(worker)))
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while checking a worker: {exc}") from exc

    def last_beat(self, worker: str) -> datetime | None:
        """When ``worker`` last beat, or None when it never did (or stopped cleanly)."""
        try:
            raw = self._r.hget(self._beats_key, worker)
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while reading a heartbeat: {exc}") from exc
        return None if raw is None else datetime.fromisoformat(raw.decode())

    # --- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when the store has never heard of it."""
        try:
            raw = self._r.hgetall(self._job_key(job_id))
            history = self._r.lrange(self._history_key(job_id), 0, -1)
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while reading {job_id}: {exc}") from exc
        if not raw:
            return None
        return _parse(job_id, raw, history)

    def recent(self, limit: int = 20) -> list[JobRecord]:
        """The most recently created jobs, newest first."""
        try:
            ids = self._r.zrevrange(self._index_key, 0, max(0, limit - 1))
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while listing jobs: {exc}") from exc
        records = [self.get(i.decode()) for i in ids]
        return [r for r in records if r is not None]

    def count_by_state(self) -> dict[str, int]:
        """How many jobs of the index are in each state (pipelined reads, 1000 jobs at a time)."""
        counts: dict[str, int] = {}
        try:
            ids = [i.decode() for i in self._r.zrange(self._index_key, 0, -1)]
            for start in range(0, len(ids), 1000):
                pipe = self._r.pipeline(transaction=False)
                for job_id in ids[start:start + 1000]:
                    pipe.hget(self._job_key(job_id), "state")
                for raw in pipe.execute():
                    if raw is not None:
                        state = str(json.loads(raw))
                        counts[state] = counts.get(state, 0) + 1
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while counting jobs: {exc}") from exc
        return counts

    def workers(self) -> dict[str, tuple[datetime, bool]]:
        """Every worker that beat and did not stop cleanly: name -> (last beat, still alive)."""
        try:
            beats = self._r.hgetall(self._beats_key)
            names = sorted(k.decode() for k in beats)
            pipe = self._r.pipeline(transaction=False)
            for name in names:
                pipe.exists(self._alive_key(name))
            alive = pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while listing workers: {exc}") from exc
        return {name: (datetime.fromisoformat(beats[name.encode()].decode()), bool(up))
                for name, up in zip(names, alive, strict=True)}

    def created_before(self, timestamp: float) -> list[str]:
        """Ids of the jobs created before ``timestamp`` (seconds since the epoch), oldest first."""
        try:
            ids = self._r.zrangebyscore(self._index_key, "-inf", f"({timestamp}")
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while listing jobs: {exc}") from exc
        return [i.decode() for i in ids]

    def expire(self, job_id: str) -> None:
        """Forget a job: its record, history, queueing claim and place in the index."""
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(self._job_key(job_id), self._history_key(job_id), self._queued_key(job_id))
            pipe.zrem(self._index_key, job_id)
            pipe.execute()
        except redis.RedisError as exc:
            raise JobStoreError(f"job store unreachable while expiring {job_id}: {exc}") from exc

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False


def _parse(job_id: str, raw: Mapping[bytes, bytes], history: list[bytes]) -> JobRecord:
    values: dict[str, Any] = {}
    times: dict[str, Any] = {}
    try:
        for key_b, value_b in raw.items():
            key = key_b.decode()
            value = json.loads(value_b)
            if key.startswith("time:"):
                times[key.removeprefix("time:")] = value
            elif key in _KNOWN_FIELDS or key == "updated_at":
                values[key] = value
        changes = [StateChange.model_validate_json(h) for h in history]
        return JobRecord(job_id=job_id, times=times, history=changes, **values)
    except (ValueError, TypeError) as exc:
        raise JobStoreError(f"unreadable job record {job_id}: {exc}") from exc
