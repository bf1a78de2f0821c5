"""The ``marrowmap`` command. Each subcommand loads the settings once and hands them down.

Subcommands import their deployable lazily, so the listener image never needs the
analysis stack and the worker image never needs the listener.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from marrowmap import __version__
from marrowmap.logs import configure_logging
from marrowmap.settings import Settings, SettingsError, load_settings


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@click.group()
@click.version_option(__version__, prog_name="marrowmap")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="Override MARROWMAP_LOG_FORMAT.")
@click.pass_context
def main(ctx: click.Context, log_format: str | None) -> None:
    """MarrowMap: hip MRI bone-marrow oedema map, integrated with the PACS."""
    overrides = {"log_format": log_format} if log_format else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective settings (after config file and environment)."""
    click.echo(_settings(ctx).model_dump_json(indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()

# Subcommands are registered below by their modules' owners; keep one block per command.
_ = Path


# --- listen ---------------------------------------------------------------------------------
@main.command("listen")
@click.pass_context
def listen(ctx: click.Context) -> None:
    """Run the DICOM listener (C-STORE/C-ECHO SCP) and its sealer until Ctrl-C / SIGTERM."""
    from service.listener import ListenerStartError, run_listener

    try:
        run_listener(_settings(ctx))
    except ListenerStartError as exc:
        click.echo(f"marrowmap: listener not started: {exc}", err=True)
        sys.exit(2)


# --- analyze --------------------------------------------------------------------------------
@main.command("analyze")
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for result.json, the maps and the DICOM outputs.")
@click.option("--prior", "prior_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="result.json of the same patient's prior analysed study: adds the follow-up comparison.")
@click.pass_context
def analyze(ctx: click.Context, input_dir: Path, out_dir: Path, prior_json: Path | None) -> None:
    """Analyse one study folder offline (no Redis, no network); exit 1 when the analysis failed."""
    import time

    from workers.analysis.summary import summarize
    from workers.followup.compare import ComparisonError
    from workers.followup.prior import load_prior
    from workers.pipeline import analyze_study_dir

    try:
        prior = load_prior(prior_json) if prior_json is not None else None
    except ComparisonError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(2)
    start = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)

    result = analyze_study_dir(input_dir, out_dir, settings=_settings(ctx), progress=progress, prior=prior)
    click.echo(f"[{time.perf_counter() - start:6.1f}s] wrote {out_dir / 'result.json'}", err=True)
    click.echo(summarize(result))
    sys.exit(1 if result.status == "failed" else 0)


# --- worker ---------------------------------------------------------------------------------
@main.command("worker")
@click.option("--queues", default="analysis,send", show_default=True,
              help="Comma list of base queue names to consume (queue_prefix is added).")
@click.option("--concurrency", type=int, default=None, help="Worker processes (default: CPU count).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int | None, pool: str) -> None:
    """Run a Celery worker for the analysis and send queues."""
    import os

    from workers.celery_app import make_celery

    settings = _settings(ctx)
    app = make_celery(settings)
    names = ",".join(settings.queue_name(q.strip()) for q in queues.split(",") if q.strip())
    argv = ["worker", "-Q", names, "--loglevel", settings.log_level, "--pool", pool,
            "-n", f"marrowmap-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)


# --- status ---------------------------------------------------------------------------------
@main.command("status")
@click.argument("job_id", required=False)
@click.option("--limit", type=int, default=20, show_default=True, help="How many recent jobs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, job_id: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs and their states (and the spool's disk use), or show one job in full."""
    import json

    from marrowmap.jobstore import JobStore, JobStoreError
    from service.retention import disk_use

    settings = _settings(ctx)
    store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)
    try:
        if job_id:
            record = store.get(job_id)
            if record is None:
                click.echo(f"marrowmap: no job {job_id}", err=True)
                sys.exit(1)
            click.echo(record.model_dump_json(indent=2, exclude={"message"}))
            return
        records = store.recent(limit)
    except JobStoreError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(1)
    try:
        lost = {r.job_id: _redelivery_note(store, r, settings) for r in records}
    except JobStoreError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(1)
    orphans = _batches_without_job(settings, store)
    if as_json:
        listed = [{**r.model_dump(mode="json", exclude={"message", "history"}), "note": lost[r.job_id]}
                  for r in records]
        listed += [{**o, "state": "no_job_record"} for o in orphans]  # the listener re-queues them
        click.echo(json.dumps(listed, indent=2))
        return
    if settings.spool_dir.is_dir():
        cap = f", at most {settings.retention_max_spool_mb} MB" if settings.retention_max_spool_mb else ""
        click.echo(f"spool {settings.spool_dir}: {disk_use(settings.spool_dir).describe()}; "
                   f"sent jobs' data kept {settings.retention_days:g} days{cap}")
    else:
        click.echo(f"spool {settings.spool_dir}: not found on this host")
    for orphan in orphans:
        click.echo(f"spool batch without a job: {orphan['spool_path']} (job {orphan['job_id']}, study "
                   f"{orphan['study_instance_uid']}); the listener re-queues it within "
                   f"{settings.reconcile_interval_seconds:g} s")
    if not records:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB':<32}  {'STATE':<14}  {'UPDATED (UTC)':<19}  {'SERIES':>6}  {'INST':>5}  STUDY / REASON")
    for r in records:
        series = ", ".join(f"{s.get('modality', '?')}:{s.get('instance_count', '?')}" for s in r.series)
        click.echo(
            f"{r.job_id:<32}  {r.state.value:<14}  {r.updated_at:%Y-%m-%d %H:%M:%S}  {len(r.series):>6}  "
            f"{r.instance_count if r.instance_count is not None else '-':>5}  {r.study_instance_uid}"
        )
        if series:
            click.echo(f"{'':<32}  series: {series}")
        steps = sorted(r.times.items(), key=lambda item: item[1])
        if len(steps) > 1:
            click.echo(f"{'':<32}  " + " -> ".join(f"{state} {at:%H:%M:%S}" for state, at in steps))
        if r.reason:
            click.echo(f"{'':<32}  {r.reason}")
        if lost[r.job_id]:
            click.echo(f"{'':<32}  {lost[r.job_id]}")


def _redelivery_note(store: Any, record: Any, settings: Settings) -> str:
    """'worker lost, re-delivery at ...' for a job held by a worker whose heartbeat stopped, else ''."""
    from datetime import timedelta

    from service.reconcile import HELD_STATES

    if record.state not in HELD_STATES or not record.worker or store.worker_alive(record.worker):
        return ""
    last = store.last_beat(record.worker) or record.updated_at
    due = last + timedelta(seconds=settings.worker_lost_seconds + settings.reconcile_interval_seconds)
    return f"worker lost ({record.worker}), re-delivery at {due:%Y-%m-%d %H:%M:%S} UTC at the latest"


def _batches_without_job(settings: Settings, store: Any) -> list[dict[str, str]]:
    """Sealed spool batches handed to the broker whose job the job store does not know."""
    from service.reconcile import unrecorded_batches
    from service.spool import Spool

    spool = Spool(settings.spool_dir)
    if not spool.ready.is_dir():
        return []
    return [{"spool_path": spool.relative(b.path), "job_id": b.manifest.job_id,
             "study_instance_uid": b.manifest.study_instance_uid} for b in unrecorded_batches(spool, store)]


# --- resend ---------------------------------------------------------------------------------
@main.command("resend")
@click.argument("job_id")
@click.pass_context
def resend(ctx: click.Context, job_id: str) -> None:
    """Retry a job: send its results again, or re-run its analysis if it has none."""
    import uuid

    from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND, TASK_ANALYZE, TASK_SEND
    from marrowmap.jobstore import JobState, JobStore, JobStoreError
    from workers.celery_app import make_celery
    from workers.tasks import RESULT_NAME, results_dir

    settings = _settings(ctx)
    store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)
    try:
        record = store.get(job_id)
        if record is None:
            click.echo(f"marrowmap: no job {job_id}", err=True)
            sys.exit(1)
        app = make_celery(settings)
        task_id = f"{job_id}.resend-{uuid.uuid4().hex[:8]}"
        if (results_dir(settings, job_id) / RESULT_NAME).is_file() and record.state in (
            JobState.SENDING, JobState.SENT, JobState.PARTIALLY_SENT, JobState.SEND_FAILED, JobState.ANALYSED
        ):
            store.record(job_id, JobState.SENDING, reason=f"resend requested (was {record.state.value})")
            app.send_task(TASK_SEND, kwargs={"job_id": job_id}, queue=settings.queue_name(QUEUE_SEND), task_id=task_id)
            click.echo(f"{job_id}: results queued for sending again")
        elif record.message is not None:
            store.record(job_id, JobState.QUEUED, reason=f"re-analysis requested (was {record.state.value})")
            app.send_task(TASK_ANALYZE, kwargs={"job": record.message}, queue=settings.queue_name(QUEUE_ANALYSIS),
                          task_id=task_id)
            click.echo(f"{job_id}: queued for analysis again")
        else:
            click.echo(f"marrowmap: job {job_id} ({record.state.value}) has neither results nor a job message", err=True)
            sys.exit(1)
    except JobStoreError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(1)


# --- phantom -------------------------------------------------------------------------------
@main.command("phantom")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--case", "case", required=True, help="normal, itoh_left, itoh_right, bilateral, avn_left, "
              "followup_resolved, followup_improved")
@click.option("--seed", type=int, default=0, show_default=True, help="Patient and noise seed.")
@click.option("--variant", "variants", multiple=True, help="Acquisition variant (repeatable), e.g. oblique.")
@click.option("--small", is_flag=True, help="Small matrices (128 x 128, ~18 slices) for tests.")
def phantom_cmd(out_dir: Path, case: str, seed: int, variants: tuple[str, ...], small: bool) -> None:
    """Write a synthetic hip MRI study (DICOM) with ground truth into OUT_DIR."""
    from workers.phantom import PhantomError, generate_study

    try:
        truth = generate_study(out_dir, case, seed, variants=variants, small=small)
    except PhantomError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(2)
    for s in truth.series:
        click.echo(f"{s.folder}: {s.n_files} file(s), {s.contrast} {s.plane}")
    for side in ("right", "left"):
        t = truth.sides[side]
        click.echo(f"{side}: oedema {t.pattern} {t.volume_ml:.1f} mL, effusion {t.effusion_volume_ml:.1f} mL")
    click.echo(f"truth: {out_dir / 'truth' / 'truth.json'}")


# --- up -------------------------------------------------------------------------------------
@main.command("up")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes to start.")
@click.pass_context
def up(ctx: click.Context, workers: int) -> None:
    """Run the whole service here: listener + worker(s), and a local Redis if none answers."""
    from marrowmap.launcher import LaunchError, run_up

    settings = _settings(ctx)
    try:
        code = run_up(settings, workers, {"MARROWMAP_LOG_FORMAT": settings.log_format})
    except LaunchError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


# --- health ---------------------------------------------------------------------------------
@main.command("health")
@click.argument("component", type=click.Choice(["listener", "worker"]))
@click.pass_context
def health(ctx: click.Context, component: str) -> None:
    """Exit 0 when healthy, 1 when not (listener: C-ECHO to itself; worker: broker + spool)."""
    from marrowmap.health import check_listener, check_worker

    settings = _settings(ctx)
    result = check_listener(settings) if component == "listener" else check_worker(settings)
    click.echo(f"{'healthy' if result.ok else 'unhealthy'}: {result.detail}")
    sys.exit(0 if result.ok else 1)


# --- series ---------------------------------------------------------------------------------
@main.command("series")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def series(study_dir: Path) -> None:
    """List a study folder's series (kind, plane, evidence), problems and the selection."""
    from workers.io.load import load_study
    from workers.io.select import describe, select_series

    study = load_study(study_dir)
    for loaded in study.loaded:
        click.echo(f"{describe(loaded)}  {loaded.series_instance_uid}")
        for line in (*loaded.classification.evidence, *(f"warning: {w}" for w in loaded.warnings)):
            click.echo(f"    {line}")
    for problem in study.problems:
        click.echo(f"not loaded: '{problem.series_description}' {problem.series_instance_uid}: "
                   f"[{problem.kind}] {problem.reason}")
    for skipped in study.skipped_files:
        click.echo(f"skipped: {skipped.path}: {skipped.reason}")
    selection = select_series(study.loaded, study.problems)
    for reason in selection.reasons:
        click.echo(f"selection: {reason}")
    if selection.not_applicable_reason:
        click.echo(f"not applicable: {selection.not_applicable_reason}")
