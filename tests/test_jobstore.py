"""The job store against the real Redis: states, details, history, recent list, enqueue claims."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from marrowmap.jobstore import JobState, JobStore, JobStoreError

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def store() -> Iterator[JobStore]:
    prefix = f"tjs{uuid.uuid4().hex[:10]}"
    yield JobStore.from_url(REDIS_URL, prefix)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_record_merges_details_and_keeps_history(store: JobStore) -> None:
    store.record("job-0001", JobState.QUEUED, study_instance_uid="1.2.3", series=[{"modality": "MR"}],
                 instance_count=4, calling_ae="PACS")
    store.record("job-0001", JobState.RECEIVED, reason="checked")
    store.record("job-0001", JobState.FAILED, reason="no T1", error="ValueError")
    record = store.get("job-0001")
    assert record is not None
    assert record.state == JobState.FAILED and record.reason == "no T1" and record.error == "ValueError"
    assert record.study_instance_uid == "1.2.3" and record.instance_count == 4 and record.calling_ae == "PACS"
    assert [c.state for c in record.history] == [JobState.QUEUED, JobState.RECEIVED, JobState.FAILED]
    assert set(record.times) == {"queued", "received", "failed"}
    assert record.times["queued"] <= record.times["received"] <= record.times["failed"]
    assert store.get("never-seen") is None


def test_recent_lists_newest_first(store: JobStore) -> None:
    for n in range(5):
        store.record(f"job-{n:04d}", JobState.QUEUED)
    assert [r.job_id for r in store.recent(3)] == ["job-0004", "job-0003", "job-0002"]


def test_claims_make_queueing_idempotent(store: JobStore) -> None:
    assert store.claim_enqueue("job-0009") is True
    assert store.claim_enqueue("job-0009") is True, "an unconfirmed claim may be retried"
    store.confirm_enqueued("job-0009")
    assert store.claim_enqueue("job-0009") is False


def test_unknown_fields_and_unreachable_redis_are_typed_errors(store: JobStore) -> None:
    with pytest.raises(ValueError, match="unknown job record field"):
        store.record("job-0001", JobState.QUEUED, patient_name="x")
    dead = JobStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(JobStoreError, match="unreachable"):
        dead.record("job-0001", JobState.QUEUED)
    assert dead.ping() is False


def test_newest_batch_supersedes_and_one_job_holds_a_study(store: JobStore) -> None:
    store.register_batch("1.2.3", 1, "job-early")
    assert store.newer_job("1.2.3", "job-early") is None
    store.register_batch("1.2.3", 2, "job-late")
    store.register_batch("1.2.3", 1, "job-early")  # re-queued by a reconcile pass: still the older batch
    assert store.study_jobs("1.2.3") == ["job-early", "job-late"]
    assert store.newer_job("1.2.3", "job-early") == "job-late"
    assert store.newer_job("1.2.3", "job-late") is None
    assert store.newer_job("1.2.3", "job-unknown") is None

    assert store.try_lock_study("1.2.3", "job-early", 60)
    assert store.try_lock_study("1.2.3", "job-early", 60)  # held already: still ours
    assert not store.try_lock_study("1.2.3", "job-late", 60)
    store.unlock_study("1.2.3", "job-late")  # not the holder: no effect
    assert not store.try_lock_study("1.2.3", "job-late", 60)
    store.unlock_study("1.2.3", "job-early")
    assert store.try_lock_study("1.2.3", "job-late", 60)
