"""The delivery policy (one number drives all time budgets), idempotent tasks, and the
service/workers separation."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis

from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, TASK_SEND
from marrowmap.jobstore import JobState, JobStore
from marrowmap.settings import Settings
from workers.celery_app import make_celery

REDIS_URL = "redis://127.0.0.1:6379/15"


def test_time_budgets_derive_from_the_limits() -> None:
    settings = Settings(_env_file=None, task_time_limit_seconds=600, send_time_limit_seconds=1200, queue_prefix="x.")
    app = make_celery(settings)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility == settings.visibility_timeout_seconds > 1200 + settings.send_backoff_cap_seconds, \
        "visibility > every hard limit and the send backoff, or tasks run twice"
    for name, queue, limit in ((TASK_ANALYZE, QUEUE_ANALYSIS, 600), (TASK_SEND, QUEUE_SEND, 1200)):
        task = app.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost
        assert task.time_limit == limit and task.soft_time_limit == int(limit * 0.9)
        assert task.queue == f"x.{queue}"
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]


def test_default_analysis_limit_is_short_and_a_lost_worker_is_noticed_in_seconds() -> None:
    settings = Settings(_env_file=None)
    assert settings.task_time_limit_seconds <= 300 < settings.send_time_limit_seconds
    assert settings.worker_lost_seconds + settings.reconcile_interval_seconds <= 120


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"tpol{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{value}:*"))
    if keys:
        client.delete(*keys)


@pytest.mark.integration
def test_tasks_return_early_when_the_work_is_done(prefix: str) -> None:
    settings = Settings(_env_file=None, broker_url=REDIS_URL, job_store_prefix=prefix)
    app = make_celery(settings)
    store = JobStore.from_url(REDIS_URL, prefix)
    job_id = "done0000000000000000000000000001"
    store.record(job_id, JobState.SENT, reason="sent: SR, SC, SEG")
    message = {"schema_version": 1, "job_id": job_id, "study_instance_uid": "1.2.3", "spool_path": "ready/1.2.3/001",
               "series": [{"series_instance_uid": "1.2.3.4", "modality": "MR", "instance_count": 1}],
               "calling_ae": "PACS", "first_received": "2026-01-01T00:00:00Z",
               "last_received": "2026-01-01T00:00:00Z", "sealed_at": "2026-01-01T00:00:01Z"}
    assert app.tasks[TASK_ANALYZE].apply(kwargs={"job": message}).get() == "sent"
    assert app.tasks[TASK_SEND].apply(kwargs={"job_id": job_id}).get() == "sent"
    record = store.get(job_id)
    assert record is not None and [c.state for c in record.history] == [JobState.SENT], "nothing re-recorded"


@pytest.mark.integration
def test_invalid_job_message_is_recorded_as_failed(prefix: str) -> None:
    settings = Settings(_env_file=None, broker_url=REDIS_URL, job_store_prefix=prefix)
    app = make_celery(settings)
    bad = {"job_id": "bad00000000000000000000000000001", "spool_path": "/etc"}
    assert app.tasks[TASK_ANALYZE].apply(kwargs={"job": bad}).get() == "failed"
    record = JobStore.from_url(REDIS_URL, prefix).get(bad["job_id"])
    assert record is not None and record.state == JobState.FAILED and "invalid job message" in record.reason


def test_listener_never_imports_worker_code() -> None:
    code = ("import sys, service.listener, service.sealer; "
            "bad = sorted(m for m in sys.modules if m == 'workers' or m.startswith('workers.')); "
            "assert not bad, bad; "
            "heavy = sorted(m for m in ('SimpleITK', 'highdicom', 'scipy', 'skimage') if m in sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_workers_never_import_the_listener() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for p in (root / "workers").rglob("*.py")
                 if any(line.startswith(("import service", "from service")) for line in
                        (x.strip() for x in p.read_text().splitlines()))]
    assert offenders == []


def test_visibility_timeout_outlasts_the_longest_send_backoff() -> None:
    from marrowmap.settings import load_settings

    settings = load_settings(task_time_limit_seconds=30, send_backoff_cap_seconds=3000)
    assert settings.visibility_timeout_seconds > 3000, "a retry waiting in the worker is not delivered twice"
