"""The web status page: studies and jobs, health, spool use, summary images and a resend button.

A small ASGI app (Starlette, server-rendered Jinja2 templates, no JavaScript) served by uvicorn
(``marrowmap web``, or by ``marrowmap up``). It reads the job store (Redis) and the spool, and
writes only through the resend button (:mod:`marrowmap.resend`).

What it shows of a study: Study Instance UID, study date, series descriptions, calling AE, the
summary key image (pixels only: it carries no names) - never the patient's name or ID, so a
person who can reach the page learns nothing about who was scanned. Bound to loopback by
default; on any other address it asks for a login (HTTP Basic, ``web_user`` and the password in
``web_password_file``; put it behind the hospital's HTTPS reverse proxy).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from kombu.exceptions import OperationalError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from marrowmap.health import Health, check_broker, check_listener
from marrowmap.jobstore import JobRecord, JobState, JobStore, JobStoreError
from marrowmap.resend import Resender, ResendError
from marrowmap.settings import Settings
from service.spool import RESULT_FILE, results_dir

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
_JOB_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: Job states shown in colour: good, waiting, bad.
STATE_CLASS = {
    JobState.SENT: "good", JobState.ANALYSED: "good", JobState.SKIPPED: "quiet", JobState.SUPERSEDED: "quiet",
    JobState.NOT_APPLICABLE: "warn", JobState.PARTIALLY_SENT: "warn",
    JobState.FAILED: "bad", JobState.SEND_FAILED: "bad",
}
_HEALTH_SECONDS = 5.0
_DISK_SECONDS = 30.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class WebConfigError(ValueError):
    """The page cannot be served as configured (e.g. no password on a non-loopback address)."""


@dataclass
class _Cached:
    """A value recomputed at most every ``seconds``."""

    seconds: float
    value: Any = None
    at: float = field(default=-1e9)

    def get(self, compute: Callable[[], Any]) -> Any:
        """The value, recomputed by ``compute`` when it is older than ``seconds``."""
        if time.monotonic() - self.at > self.seconds:
            self.value, self.at = compute(), time.monotonic()
        return self.value


@dataclass
class Page:
    """What every request needs: settings, job store, resender, a key for the resend form."""

    settings: Settings
    store: JobStore
    resender: Resender
    form_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    health: _Cached = field(default_factory=lambda: _Cached(_HEALTH_SECONDS))
    disk: _Cached = field(default_factory=lambda: _Cached(_DISK_SECONDS))

    def form_token(self, job_id: str) -> str:
        """The token the resend form of ``job_id`` carries (a cross-site form cannot know it)."""
        return hmac.new(self.form_key, job_id.encode(), hashlib.sha256).hexdigest()


def job_view(record: JobRecord, settings: Settings) -> dict[str, Any]:
    """What the page shows of one job (no patient identity)."""
    result = _result_json(settings, record.job_id)
    times = record.times
    started = times.get("queued") or times.get("skipped") or record.updated_at
    return {
        "record": record,
        "short_id": record.job_id[:12],
        "state_class": STATE_CLASS.get(record.state, "busy"),
        "series": [f"{s.get('series_description') or s.get('modality', '?')} ({s.get('instance_count', '?')})"
                   for s in record.series],
        "study_date": _date(str(result.get("study_date", ""))),
        "received": started,
        "steps": [(state, at, _seconds(at - started)) for state, at in sorted(times.items(), key=lambda t: t[1])],
        "summary": _summary_path(settings, record.job_id, result) is not None,
        "destination": record.send.get("report", {}).get("pacs", ""),
        "result": record.result,
    }


def _seconds(delta: Any) -> str:
    total = delta.total_seconds()
    return f"+{total:.0f} s" if total < 120 else f"+{total / 60:.1f} min"


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if re.fullmatch(r"\d{8}", value) else value


def _result_json(settings: Settings, job_id: str) -> dict[str, Any]:
    path = results_dir(settings.spool_dir, job_id) / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary_path(settings: Settings, job_id: str, result: dict[str, Any]) -> Path | None:
    """The summary key image (SC) of a job's results, when it is on the spool."""
    folder = results_dir(settings.spool_dir, job_id)
    for output in result.get("outputs", []):
        if isinstance(output, dict) and output.get("kind") == "sc_summary":
            path = (folder / str(output.get("path", ""))).resolve()
            if path.is_relative_to(folder.resolve()) and path.is_file():
                return path
    return None


@lru_cache(maxsize=256)
def _thumbnail(path: str, mtime_ns: int, width: int) -> bytes:
    """PNG of a summary key image (RGB Secondary Capture) at most ``width`` pixels wide."""
    import pydicom
    from PIL import Image

    image = Image.fromarray(pydicom.dcmread(path).pixel_array)
    image.thumbnail((width, width * 4))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _health(page: Page) -> dict[str, Any]:
    settings = page.settings
    try:
        workers = page.store.workers()
    except JobStoreError:
        workers = {}
    return {
        "listener": check_listener(settings, timeout=2.0),
        "broker": check_broker(settings, timeout=2.0),
        "workers": workers,
        "workers_ok": Health(any(alive for _, alive in workers.values()),
                             f"{sum(alive for _, alive in workers.values())} of {len(workers)} beating"),
    }


def _disk(page: Page) -> Health:
    """The spool's use; not ok below min_free_disk_mb (the listener then refuses instances)."""
    from service.retention import disk_use

    spool = page.settings.spool_dir
    if not spool.is_dir():
        return Health(False, "not found on this host")
    use = disk_use(spool)
    low = use.free_bytes < page.settings.min_free_disk_mb * 1024 * 1024
    return Health(not low, use.describe() + (" - below min_free_disk_mb: instances are refused" if low else ""))


def _job_id(request: Request) -> str:
    job_id = str(request.path_params["job_id"])
    if not _JOB_ID.match(job_id):
        raise JobNotFound(job_id)
    return job_id


class JobNotFound(LookupError):
    """No such job (or not a job id at all)."""


def index(request: Request) -> Response:
    """Health, spool use and the recent jobs."""
    page: Page = request.app.state.page
    limit = request.query_params.get("limit", "50")
    try:
        records = page.store.recent(min(500, int(limit)) if limit.isdigit() else 50)
        error = ""
    except JobStoreError as exc:
        records, error = [], str(exc)
    return TEMPLATES.TemplateResponse(request, "index.html", {
        "health": page.health.get(lambda: _health(page)), "disk": page.disk.get(lambda: _disk(page)),
        "settings": page.settings, "jobs": [job_view(r, page.settings) for r in records], "error": error,
        "now": datetime.now(UTC),
    })


def job_page(request: Request) -> Response:
    """One job: its study, series, result, send, history, summary image and the resend button."""
    page: Page = request.app.state.page
    job_id = _job_id(request)
    record = page.store.get(job_id)
    if record is None:
        raise JobNotFound(job_id)
    return TEMPLATES.TemplateResponse(request, "job.html", {
        "job": job_view(record, page.settings), "token": page.form_token(job_id),
        "message": request.query_params.get("message", ""), "settings": page.settings, "state_class": STATE_CLASS,
    })


def summary_png(request: Request) -> Response:
    """The job's summary key image as PNG (``?width=``, 64-2048 pixels)."""
    page: Page = request.app.state.page
    job_id = _job_id(request)
    path = _summary_path(page.settings, job_id, _result_json(page.settings, job_id))
    if path is None:
        raise JobNotFound(job_id)
    width = min(2048, max(64, int(request.query_params.get("width", "320"))))
    png = _thumbnail(str(path), path.stat().st_mtime_ns, width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


async def resend(request: Request) -> Response:
    """POST: retry the job (send again, or analyse again), then show the job."""
    page: Page = request.app.state.page
    job_id = _job_id(request)
    form = parse_qs((await request.body()).decode("ascii", errors="replace"))
    token = form.get("token", [""])[0]
    if not hmac.compare_digest(token, page.form_token(job_id)):
        return PlainTextResponse("the form has expired: reload the page and press resend again", status_code=403)
    try:
        message = page.resender.resend(job_id)
    except ResendError as exc:
        message = str(exc)
    except (JobStoreError, OperationalError) as exc:
        message = f"not queued, the broker does not answer: {exc}"
    return RedirectResponse(f"/jobs/{job_id}?message={quote(message, safe='')}", status_code=303)


def healthz(request: Request) -> Response:
    """For compose/systemd: 200 while the page can read the job store."""
    page: Page = request.app.state.page
    if page.store.ping():
        return PlainTextResponse("ok")
    return PlainTextResponse("job store unreachable", status_code=503)


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"no such job: {exc}", status_code=404)


async def _store_down(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"the job store does not answer: {exc}", status_code=503)


class LoginRequired(BaseHTTPMiddleware):
    """HTTP Basic login for every page but /healthz."""

    def __init__(self, app: Any, user: str, password: str) -> None:
        super().__init__(app)
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Let the request through with the right credentials; ask for them otherwise."""
        given = request.headers.get("authorization", "")
        if request.url.path == "/healthz" or hmac.compare_digest(given.encode(), self._expected.encode()):
            return await call_next(request)
        return PlainTextResponse("login required", status_code=401,
                                 headers={"WWW-Authenticate": 'Basic realm="MarrowMap", charset="UTF-8"'})


def web_password(settings: Settings) -> str | None:
    """The login password, or None for an open page (loopback only); WebConfigError says what is missing."""
    if settings.web_password_file is None:
        if settings.web_host not in LOOPBACK:
            raise WebConfigError(f"the web page on {settings.web_host} needs a login: write a password into a file "
                                 "and set MARROWMAP_WEB_PASSWORD_FILE to it (or bind it to 127.0.0.1)")
        return None
    try:
        password = settings.web_password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise WebConfigError(f"web_password_file {settings.web_password_file} cannot be read: {exc.strerror}") from None
    if len(password) < 12:
        raise WebConfigError(f"web_password_file {settings.web_password_file}: the password needs 12 characters "
                             "or more (e.g. openssl rand -hex 16)")
    return password


def create_app(settings: Settings) -> Starlette:
    """The status page of these settings; WebConfigError when it would be open on the network."""
    password = web_password(settings)
    store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix)
    middleware = [Middleware(LoginRequired, user=settings.web_user, password=password)] if password else []
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/jobs/{job_id}", job_page),
            Route("/jobs/{job_id}/summary.png", summary_png),
            Route("/jobs/{job_id}/resend", resend, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        middleware=middleware,
        exception_handlers={JobNotFound: _not_found, JobStoreError: _store_down},
    )
    app.state.page = Page(settings=settings, store=store, resender=Resender(settings, store))
    return app
