"""Retention on a real spool and job store (Redis): sent jobs' data go after retention_days (or
earlier above the size cap), unsent data and studies being received stay, records expire;
`marrowmap status` shows the disk use."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from marrowmap.audit import AuditTrail
from marrowmap.jobstore import JobState, JobStore
from marrowmap.manifest import MANIFEST_NAME, Manifest, ManifestSeries, RouteDecision
from marrowmap.settings import Settings, load_settings
from service.retention import KEPT_FOR_FOLLOW_UP, Retention
from service.spool import Spool
from tests.listener_fixtures import MARROWMAP, REDIS_URL, Harness, harness  # noqa: F401
from workers.followup.prior import KEY_IMAGE_FILE
from workers.tasks import RESULT_NAME

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def _job(spool: Spool, store: JobStore, name: str, state: JobState, *, batch_mb: int = 1) -> str:
    """A sealed batch of study ``1.2.<name>``, its results (result.json, key image, a 1 MB SEG) and a record."""
    job_id, study = f"job{name}", f"1.2.{name}"
    now = datetime.now(UTC)
    batch = spool.ready / study / "001"
    (batch / "1.3").mkdir(parents=True)
    (batch / "1.3" / "1.4.dcm").write_bytes(os.urandom(batch_mb * MB))
    manifest = Manifest(job_id=job_id, study_instance_uid=study, batch=1, first_received=now, last_received=now,
                        sealed_at=now, series=(ManifestSeries(series_instance_uid="1.3", instance_count=1),),
                        new_instances=1, resent_instances=0, carried_instances=0,
                        route=RouteDecision(analyse=True, reason="test"))
    (batch / MANIFEST_NAME).write_text(manifest.model_dump_json())
    (batch / "queued").write_text(job_id)
    results = spool.root / "results" / job_id
    (results / "dicom").mkdir(parents=True)
    (results / RESULT_NAME).write_text("{}")
    (results / KEY_IMAGE_FILE).write_bytes(b"png")
    (results / "dicom" / "seg.dcm").write_bytes(os.urandom(MB))
    store.record(job_id, state, reason="test", study_instance_uid=study)
    return job_id


def _settings(harness: Harness, **extra: object) -> Settings:  # noqa: F811
    return load_settings(spool_dir=harness.spool, broker_url=REDIS_URL, job_store_prefix=harness.prefix, **extra)


def test_follow_up_files_are_the_workers_own_names() -> None:
    assert {RESULT_NAME, KEY_IMAGE_FILE} == KEPT_FOR_FOLLOW_UP


def test_sent_studies_go_after_retention_days_unsent_stay(harness: Harness) -> None:  # noqa: F811
    settings = _settings(harness, retention_days=7, job_record_days=30)
    spool = Spool(settings.spool_dir)
    spool.ensure_layout()
    store = JobStore.from_url(REDIS_URL, harness.prefix)
    sent = _job(spool, store, "1", JobState.SENT)
    partially = _job(spool, store, "2", JobState.PARTIALLY_SENT)
    failed = _job(spool, store, "3", JobState.SEND_FAILED)
    sending = _job(spool, store, "4", JobState.SENDING)
    receiving = _job(spool, store, "5", JobState.SENT)
    (spool.incoming / "1.2.5" / "1.9").mkdir(parents=True)  # more of study 1.2.5 is arriving right now
    store.record("jobskipped", JobState.SKIPPED, reason="not a hip")
    audit = AuditTrail(settings)
    retention = Retention(spool, store, settings, audit)

    assert retention.run_once().removed_jobs == ()  # nothing is older than 7 days yet
    week_later = retention.run_once(datetime.now(UTC) + timedelta(days=8))

    assert set(week_later.removed_jobs) == {sent, partially, receiving}
    assert week_later.freed_bytes >= 5 * MB  # two batches and three SEGs
    for job, study in ((sent, "1.2.1"), (partially, "1.2.2")):
        assert not (spool.ready / study).exists()
        assert sorted(p.name for p in (spool.root / "results" / job).iterdir()) == sorted(KEPT_FOR_FOLLOW_UP)
    assert (spool.ready / "1.2.5" / "001").is_dir(), "a study being received keeps its batch"
    assert not (spool.root / "results" / receiving / "dicom").exists()
    for job, study in ((failed, "1.2.3"), (sending, "1.2.4")):
        assert (spool.ready / study / "001" / "1.3" / "1.4.dcm").is_file()
        assert (spool.root / "results" / job / "dicom" / "seg.dcm").is_file()
    assert week_later.kept_unsent == 2

    later = retention.run_once(datetime.now(UTC) + timedelta(days=31))
    assert later.expired_records == 3  # sent, partially sent, skipped; not the job whose batch is still there
    assert {j for j in (sent, partially, failed, sending, receiving, "jobskipped") if store.get(j) is None} == {
        sent, partially, "jobskipped"}
    audit.close()
    deleted = [json.loads(line) for line in settings.audit_path.read_text().splitlines()]
    assert {e["ParticipantObjectIdentification"][0]["ParticipantObjectID"] for e in deleted
            if e["EventIdentification"]["EventID"]["csd-code"] == "110105"} == {"1.2.1", "1.2.2", "1.2.5"}


def test_size_cap_removes_sent_studies_early_oldest_first(harness: Harness) -> None:  # noqa: F811
    settings = _settings(harness, retention_max_spool_mb=10)
    spool = Spool(settings.spool_dir)
    spool.ensure_layout()
    store = JobStore.from_url(REDIS_URL, harness.prefix)
    oldest = _job(spool, store, "1", JobState.SENT, batch_mb=2)
    newer = _job(spool, store, "2", JobState.SENT, batch_mb=2)
    unsent = _job(spool, store, "3", JobState.FAILED, batch_mb=4)  # 11 MB in all, 10 MB allowed
    retention = Retention(spool, store, settings, AuditTrail(settings))

    report = retention.run_once()

    assert report.removed_jobs == (oldest,)  # 11 MB - 3 MB is below the cap: the newer one stays
    assert store.get(newer) is not None and store.get(unsent) is not None
    assert (spool.ready / "1.2.2" / "001").is_dir() and (spool.ready / "1.2.3" / "001").is_dir()
    status = subprocess.run([*MARROWMAP, "status"], env=harness.env(MARROWMAP_RETENTION_MAX_SPOOL_MB="10"),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    first = status.stdout.splitlines()[0]
    print(first)
    assert first.startswith(f"spool {harness.spool}: 8.")  # MB used
    assert "ready 6.0 MB, results 2.0 MB" in first and "sent jobs' data kept 7 days, at most 10 MB" in first
