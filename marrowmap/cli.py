"""The ``marrowmap`` command. Each subcommand loads the settings once and hands them down.

Subcommands import their deployable lazily, so the listener image never needs the
analysis stack and the worker image never needs the listener.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from marrowmap import __version__
from marrowmap.logs import configure_logging, resolve_format
from marrowmap.preflight import Problem, redact
from marrowmap.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    config_path,
    load_settings,
    unknown_variables,
)

#: Exit status of a command that cannot start (spool, broker, ports) or whose input is unusable.
EXIT_CANNOT_START = 1
EXIT_USAGE = 2


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


def _refuse(problems: Sequence[Problem]) -> None:
    """Exit with one line per problem when there are any."""
    for problem in problems:
        click.echo(f"marrowmap: cannot start: {problem.message}", err=True)
    if problems:
        sys.exit(EXIT_CANNOT_START)


@click.group()
@click.version_option(__version__, prog_name="marrowmap")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default=None,
              help="Override MARROWMAP_LOG_FORMAT (auto: readable on a terminal, JSON lines otherwise).")
@click.pass_context
def main(ctx: click.Context, log_format: str | None) -> None:
    """MarrowMap: hip MRI bone-marrow oedema map, integrated with the PACS."""
    for warning in unknown_variables():
        click.echo(f"marrowmap: warning: {warning}", err=True)
    overrides = {"log_format": log_format} if log_format else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    configure_logging(settings.log_level, settings.log_format, settings.library_log_level)
    ctx.obj = settings


def _toml_value(value: Any) -> str:
    """A JSON-mode setting value written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@main.command("config")
@click.option("--json", "as_json", is_flag=True, help="The effective values as JSON (passwords included).")
@click.pass_context
def show_config(ctx: click.Context, as_json: bool) -> None:
    """Print which config file was read, and the effective settings (after config file and environment)
    as TOML; exit 1 when a MARROWMAP_* variable is no setting."""
    settings = _settings(ctx)
    if as_json:
        click.echo(settings.model_dump_json(indent=2))
    else:
        path = config_path()
        click.echo(f"# config file: {path}" if path else
                   "# config file: none, defaults (looked for $MARROWMAP_CONFIG, ./config/marrowmap.toml, "
                   "/etc/marrowmap/marrowmap.toml)")
        variables = sorted(n for n in os.environ
                           if n.startswith(ENV_PREFIX) and n.removeprefix(ENV_PREFIX).lower() in Settings.model_fields)
        click.echo(f"# set in the environment (these win): {', '.join(variables) or 'nothing'}")
        for name, value in settings.model_dump(mode="json").items():
            if value is None:
                click.echo(f"# {name} = (unset)")
            else:
                shown = redact(value) if name in ("broker_url", "job_store_url") else value
                click.echo(f"{name} = {_toml_value(shown)}")
    if unknown_variables():
        sys.exit(1)


# Subcommands are registered below by their modules' owners; keep one block per command.


# --- listen ---------------------------------------------------------------------------------
@main.command("listen")
@click.pass_context
def listen(ctx: click.Context) -> None:
    """Run the DICOM listener (C-STORE/C-ECHO SCP) and its sealer until Ctrl-C / SIGTERM."""
    from marrowmap.preflight import check_broker, listener_problems
    from service.listener import ListenerStartError, run_listener

    settings = _settings(ctx)
    _refuse(listener_problems(settings))
    broker = check_broker(settings)
    if broker is not None:
        click.echo(f"marrowmap: warning: {broker.message}; meanwhile studies are received and kept, and "
                   "queued once it answers", err=True)
    try:
        run_listener(settings)
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
    """Analyse one study folder offline (no Redis, no network).

    Exit status: 0 analysed, 3 not applicable (the first line says why), 1 failed, 2 unusable input
    (no DICOM files, a bad --prior, a wrong option).
    """
    import time

    from workers.analysis.summary import summarize
    from workers.pipeline import analyze_study_dir, has_source_header

    prior = None
    if prior_json is not None:
        from workers.followup.compare import ComparisonError
        from workers.followup.prior import load_prior

        try:
            prior = load_prior(prior_json)
        except ComparisonError as exc:
            click.echo(f"marrowmap: --prior {prior_json}: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    if not has_source_header(input_dir):
        files = sum(1 for p in input_dir.rglob("*") if p.is_file())
        click.echo(f"marrowmap: no DICOM files in {input_dir} ({files} file(s), none a DICOM instance with "
                   "study, series and SOP instance UIDs): give the study folder (for a phantom: OUT/dicom)", err=True)
        sys.exit(EXIT_USAGE)
    start = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)

    result = analyze_study_dir(input_dir, out_dir, settings=_settings(ctx), progress=progress, prior=prior)
    click.echo(f"[{time.perf_counter() - start:6.1f}s] wrote {out_dir / 'result.json'}", err=True)
    if result.status != "analyzed":
        click.echo(f"{result.status.replace('_', ' ')}: {result.reason}")
    click.echo(summarize(result))
    sys.exit(ANALYZE_EXIT[result.status])


#: Exit status of ``marrowmap analyze`` by result status.
ANALYZE_EXIT = {"analyzed": 0, "not_applicable": 3, "failed": 1}


# --- worker ---------------------------------------------------------------------------------
@main.command("worker")
@click.option("--queues", default="analysis,send", show_default=True,
              help="Comma list of base queue names to consume (queue_prefix is added).")
@click.option("--concurrency", type=int, default=None, help="Worker processes (default: CPU count).")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int | None, pool: str) -> None:
    """Run a Celery worker for the analysis and send queues (its /metrics on worker_metrics_port)."""
    import shutil
    import tempfile

    from marrowmap.preflight import worker_problems

    settings = _settings(ctx)
    _refuse(worker_problems(settings))
    own_dir = None
    if settings.worker_metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: the pool processes write their values here
        own_dir = tempfile.mkdtemp(prefix="marrowmap-worker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    from marrowmap.metrics import serve_metrics
    from workers.celery_app import make_celery

    app = make_celery(settings)
    serve_metrics(settings, settings.worker_metrics_port, jobs=False)
    names = ",".join(settings.queue_name(q.strip()) for q in queues.split(",") if q.strip())
    argv = ["worker", "-Q", names, "--loglevel", settings.log_level, "--pool", pool,
            "-n", f"marrowmap-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    try:
        app.worker_main(argv)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


# --- status ---------------------------------------------------------------------------------
@main.command("status")
@click.argument("job_id", required=False)
@click.option("--limit", type=int, default=20, show_default=True, help="How many recent jobs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one job: its whole record).")
@click.pass_context
def status(ctx: click.Context, job_id: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs and their states (and the spool's disk use), or show one job."""
    from marrowmap.jobstore import JobStore, JobStoreError
    from marrowmap.status_text import describe_job, job_lines
    from service.retention import disk_use

    settings = _settings(ctx)
    store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)
    try:
        if job_id:
            record = store.get(job_id)
            if record is None:
                click.echo(f"marrowmap: no job {job_id} (`marrowmap status` lists the recent ones)", err=True)
                sys.exit(1)
            click.echo(record.model_dump_json(indent=2) if as_json else describe_job(record, settings))
            return
        records = store.recent(limit)
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
        click.echo(f"no jobs (a study becomes a job {settings.quiet_seconds:g} s after its last image arrived)")
        return
    click.echo(f"{'JOB':<32}  {'STATE':<14}  {'UPDATED (UTC)':<19}  {'SERIES':>6}  {'INST':>5}  STUDY / REASON")
    for r in records:
        for line in job_lines(r, settings, lost[r.job_id]):
            click.echo(line)


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
    from kombu.exceptions import OperationalError

    from marrowmap.jobstore import JobStore, JobStoreError
    from marrowmap.resend import Resender, ResendError

    settings = _settings(ctx)
    resender = Resender(settings, JobStore.from_url(settings.jobs_url, settings.job_store_prefix))
    try:
        click.echo(resender.resend(job_id))
    except (ResendError, JobStoreError, OperationalError) as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(1)
    finally:
        resender.close()


# --- phantom -------------------------------------------------------------------------------
@main.command("phantom")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--case", "case", required=True, help="normal, itoh_left, itoh_right, bilateral, avn_left, "
              "followup_resolved, followup_improved")
@click.option("--seed", type=int, default=0, show_default=True, help="Patient and noise seed.")
@click.option("--variant", "variants", multiple=True,
              help="Acquisition variant (repeatable), e.g. oblique, one_hip_left, arthroplasty_right, "
              "axial_stir, pd_fs_3d, dixon, gapped, partial_coverage, coil_shading, t1_shifted, "
              "repacked_12bit; README 'Phantom variants' lists them all.")
@click.option("--small", is_flag=True, help="Small matrices (128 x 128, ~18 slices) for tests.")
def phantom_cmd(out_dir: Path, case: str, seed: int, variants: tuple[str, ...], small: bool) -> None:
    """Write a synthetic hip MRI study into OUT_DIR/dicom and its ground truth into OUT_DIR/truth."""
    import time

    from workers.phantom import PhantomError, dicom_dir, generate_study, truth_dir

    start = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)

    try:
        truth = generate_study(out_dir, case, seed, variants=variants, small=small, progress=progress)
    except PhantomError as exc:
        click.echo(f"marrowmap: {exc}", err=True)
        sys.exit(2)
    for s in truth.series:
        click.echo(f"{s.folder}: {s.n_files} file(s), {s.contrast} {s.plane}")
    for side in ("right", "left"):
        t = truth.sides[side]
        click.echo(f"{side}: oedema {t.pattern} {t.volume_ml:.1f} mL, effusion {t.effusion_volume_ml:.1f} mL")
    click.echo(f"study: {dicom_dir(out_dir)}  (push this folder, e.g. /usr/bin/storescu +sd +r -aec MARROWMAP "
               f"127.0.0.1 11112 {dicom_dir(out_dir)})")
    click.echo(f"truth: {truth_dir(out_dir) / 'truth.json'}")


# --- up -------------------------------------------------------------------------------------
@main.command("up")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes to start.")
@click.pass_context
def up(ctx: click.Context, workers: int) -> None:
    """Run the whole service here: listener + worker(s) + web page, and a local Redis if none answers."""
    from marrowmap.launcher import LaunchError, run_up
    from marrowmap.preflight import up_problems
    from marrowmap.web.app import WebConfigError, web_password

    settings = _settings(ctx)
    _refuse(up_problems(settings, workers))
    if settings.web_port:
        try:
            web_password(settings)
        except WebConfigError as exc:
            click.echo(f"marrowmap: cannot start: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    try:
        code = run_up(settings, workers, {"MARROWMAP_LOG_FORMAT": resolve_format(settings.log_format)})
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


# --- web ------------------------------------------------------------------------------------
@main.command("web")
@click.pass_context
def web(ctx: click.Context) -> None:
    """Serve the web status page on web_host:web_port (login required off loopback) until Ctrl-C."""
    import uvicorn

    from marrowmap.preflight import check_port
    from marrowmap.web.app import WebConfigError, create_app

    settings = _settings(ctx)
    _refuse([p for p in [check_port(settings.web_host, settings.web_port, "web page", "MARROWMAP_WEB_PORT")]
             if p is not None])
    try:
        app = create_app(settings)
    except WebConfigError as exc:
        click.echo(f"marrowmap: cannot start: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"marrowmap: web status page on http://{settings.web_host}:{settings.web_port}/", err=True)
    uvicorn.run(app, host=settings.web_host, port=settings.web_port, log_config=None, access_log=False,
                server_header=False)


if __name__ == "__main__":  # pragma: no cover
    main()
