"""`marrowmap up` runs listener + worker (starting its own Redis when the local broker is down),
`marrowmap health` reports on both, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis

from marrowmap.jobstore import JobStore
from tests import dicom_factory as factory
from tests.listener_fixtures import MARROWMAP, echo, free_port, storescu, wait_for

pytestmark = pytest.mark.integration


def _env(tmp: Path, port: int, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARROWMAP_")}
    env.update({
        "MARROWMAP_PORT": str(port), "MARROWMAP_HOST": "127.0.0.1", "MARROWMAP_SPOOL_DIR": str(tmp / "spool"),
        "MARROWMAP_QUIET_SECONDS": "1", "MARROWMAP_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "MARROWMAP_MIN_FREE_DISK_MB": "1", "MARROWMAP_LOG_FORMAT": "json",
        "MARROWMAP_LISTENER_METRICS_PORT": str(free_port()), "MARROWMAP_WORKER_METRICS_PORT": str(free_port()),
        "MARROWMAP_WEB_PORT": str(free_port()),
    })
    return env


def _health(env: dict[str, str], component: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MARROWMAP, "health", component], env=env, capture_output=True, text=True, timeout=60)


def _answers(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except OSError:
        return b""


def test_up_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    env = _env(tmp_path, port, redis_port)
    assert _health(env, "worker").returncode == 1, "nothing runs yet"
    assert _health(env, "listener").returncode == 1
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([*MARROWMAP, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "up.started_redis" in log_path.read_text(), 30, "up to start its own redis")
        def listener_healthy() -> bool:
            assert up.poll() is None, f"marrowmap up exited:\n{log_path.read_text()[-3000:]}"
            return echo(port, "MM-HEALTH")

        wait_for(listener_healthy, 60, "the listener to answer", 0.5)
        listener_health = _health(env, "listener")
        assert listener_health.returncode == 0 and "C-ECHO" in listener_health.stdout
        worker_health = _health(env, "worker")
        assert worker_health.returncode == 0, worker_health.stdout
        assert "broker" in worker_health.stdout and "spool" in worker_health.stdout
        wait_for(lambda: "ready." in log_path.read_text(), 60, "the worker to be ready", 0.3)
        web = f"http://127.0.0.1:{env['MARROWMAP_WEB_PORT']}/healthz"
        assert wait_for(lambda: _answers(web), 30, "the web page", 0.3) == b"ok"

        study = factory.study("up-push", (factory.SeriesSpec("COR STIR", 3),))
        assert storescu(port, factory.write(study, tmp_path / "send")).returncode == 0
        client = redis.Redis(port=redis_port)

        store = JobStore.from_url(f"redis://127.0.0.1:{redis_port}/0")
        wait_for(lambda: any("received" in r.times for r in store.recent(5)), 40, "the job to reach the worker", 0.3)
        listing = subprocess.run([*MARROWMAP, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert "-> received" in listing.stdout, listing.stdout
        assert client.ping()
    finally:
        up.send_signal(signal.SIGINT)
        returncode = up.wait(60)
    text = log_path.read_text()
    assert returncode == 0, text[-3000:]
    for name in ("listener", "worker-1", "web", "redis"):
        assert f'"process": "{name}"' in text and "up.stopped" in text
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
    assert _health(env, "listener").returncode == 1
