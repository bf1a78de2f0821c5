"""``marrowmap up``: the whole service on one machine - listener, worker processes and the web page.

Starts a local ``redis-server`` (data under ``<spool_dir>/redis``, append-only) when the broker
is a local Redis that does not answer and ``redis-server`` is installed, and says so. Ctrl-C or
SIGTERM stops the children cleanly (the worker finishes or hands back its task), then Redis.
If a child dies, the others are stopped and ``up`` exits non-zero.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import redis

from marrowmap.logs import get_logger
from marrowmap.settings import Settings

log = get_logger(__name__)

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
_CLI = [sys.executable, "-c", "from marrowmap.cli import main; main()"]


class LaunchError(RuntimeError):
    """The service cannot be started (e.g. broker down and no redis-server to start)."""


@dataclass
class Child:
    """A supervised child process."""

    name: str
    popen: subprocess.Popen[bytes]


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def ensure_local_redis(settings: Settings) -> Child | None:
    """Start redis-server for a local broker URL that does not answer; None when not needed."""
    if _redis_answers(settings.broker_url):
        return None
    url = urlparse(settings.broker_url)
    if url.scheme != "redis" or (url.hostname or "") not in _LOCAL_HOSTS:
        raise LaunchError(f"broker {url.scheme}://{url.hostname}:{url.port or 6379} does not answer")
    server = shutil.which("redis-server")
    if server is None:
        raise LaunchError("the local Redis broker does not answer and redis-server is not installed "
                          "(apt-get install -y redis-server)")
    port = url.port or 6379
    data = settings.spool_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    popen = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                              "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    log.warning("up.started_redis", port=port, data_dir=str(data), pid=popen.pid,
                note="the broker did not answer, so `marrowmap up` started a local redis-server")
    deadline = time.monotonic() + 15
    while not _redis_answers(settings.broker_url):
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            raise LaunchError(f"redis-server on port {port} did not come up")
        time.sleep(0.1)
    return Child("redis", popen)


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    popen = subprocess.Popen([*_CLI, *args], env=env, start_new_session=True)
    log.info("up.started", process=name, pid=popen.pid)
    return Child(name, popen)


def _stop(child: Child, timeout: float) -> None:
    if child.popen.poll() is not None:
        return
    child.popen.send_signal(signal.SIGTERM)
    try:
        child.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("up.kill", process=child.name, after_s=timeout)
        child.popen.kill()
        child.popen.wait(5)
    log.info("up.stopped", process=child.name, returncode=child.popen.returncode)


def run_up(settings: Settings, workers: int, env_overrides: dict[str, str]) -> int:
    """Run redis (if needed), the listener and the workers until a signal or a child's death."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("up.signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    redis_child = ensure_local_redis(settings)
    env = {**os.environ, **env_overrides}
    children: list[Child] = []
    exit_code = 0
    try:
        children.append(_spawn("listener", ["listen"], env))
        for n in range(workers):
            metrics = {"MARROWMAP_WORKER_METRICS_PORT": str(settings.worker_metrics_port + n)}
            children.append(_spawn(f"worker-{n + 1}", ["worker"],
                                   {**env, **metrics} if settings.worker_metrics_port else env))
        if settings.web_port:
            children.append(_spawn("web", ["web"], env))
        log.info("up.running", ae_title=settings.ae_title, port=settings.port, workers=workers,
                 spool_dir=str(Path(settings.spool_dir)), quiet_seconds=settings.quiet_seconds,
                 web=f"http://{settings.web_host}:{settings.web_port}/" if settings.web_port else "off",
                 note="Ctrl-C stops everything; a study is analysed quiet_seconds after its last image")
        while not stop.wait(0.5):
            dead = [c for c in children if c.popen.poll() is not None]
            if dead:
                for c in dead:
                    log.error("up.child_exited", process=c.name, returncode=c.popen.returncode)
                exit_code = 1
                break
    finally:
        for child in children:  # SIGTERM to all first, then wait: they shut down in parallel
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        for child in children:
            _stop(child, timeout=settings.soft_time_limit_seconds if child.name.startswith("worker") else 20)
        if redis_child is not None:
            _stop(redis_child, timeout=10)
    return exit_code
