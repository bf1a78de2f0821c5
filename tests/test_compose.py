"""docker-compose.yml and Dockerfile agree with the settings and the CLI (no Docker engine needed).

Debian's docker-compose 1.29 validates and resolves the file; the services' commands and
healthchecks must be real ``marrowmap`` subcommands, their MARROWMAP_* names real settings with
valid values, and their ports and volumes those the settings say.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from marrowmap.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
MARROWMAP_SERVICES = ("listener", "worker", "worker-send", "flower", "web")
PASSWORD = "compose-test-password"  # what an operator puts in .env

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="Debian package docker-compose is not installed")


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Resolve defaults as a fresh shell would (no MARROWMAP_* from the test environment).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    clean.update(env or {})
    return subprocess.run(["docker-compose", "-f", str(COMPOSE), *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60, check=False)


@cache
def _resolved() -> dict[str, Any]:
    run = _compose("config", env={"MARROWMAP_REDIS_PASSWORD": PASSWORD})
    assert run.returncode == 0, run.stderr
    loaded = yaml.safe_load(run.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _service(name: str) -> dict[str, Any]:
    service = _resolved()["services"][name]
    assert isinstance(service, dict)
    return service


def _marrowmap(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-c", "from marrowmap.cli import main; main()", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60, check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) from the resolved short volume syntax ``source:target:mode``."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, mode = str(volume).rsplit(":", 2)
        mounts[target] = (source, mode)
    return mounts


def test_compose_file_validates() -> None:
    run = _compose("config", "-q")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    profiles = _compose("config", "--profiles")
    assert profiles.stdout.split() == ["dev", "monitor"]


def test_expected_services_restart_and_healthchecks() -> None:
    services = _resolved()["services"]
    assert set(services) == {"redis", *MARROWMAP_SERVICES, "orthanc", "prometheus"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        if name != "orthanc":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["orthanc"]["profiles"] == ["dev"]
    assert services["flower"]["profiles"] == ["monitor"]  # not started by a plain `up`
    assert services["web"]["profiles"] == services["prometheus"]["profiles"] == ["monitor"]


@pytest.mark.parametrize("name", ["listener", "worker", "worker-send"])
def test_commands_and_healthchecks_are_real_subcommands(name: str) -> None:
    service = _service(name)
    health = service["healthcheck"]["test"]
    assert health[0] == "CMD"
    for command in (service["command"], health[1:]):
        assert command[0] == "marrowmap", command
        run = _marrowmap([*command[1:], "--help"])
        assert run.returncode == 0, f"`{' '.join(command)} --help` failed: {run.stderr}"


def _run_shell_command(service: str, env: dict[str, str], stub: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a service's ``sh -c`` command here, with ``stub`` (the program it execs) replaced by a script
    that prints its arguments."""
    command = _service(service)["command"]
    assert command[:2] == ["sh", "-c"]
    (tmp_path / stub).write_text('#!/bin/sh\necho "$0 $*"\n')
    (tmp_path / stub).chmod(0o755)
    script = command[2].replace("$$", "$")  # compose's escape of a literal $
    return subprocess.run(["sh", "-c", script], env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_flower_needs_a_password_and_runs_with_the_installed_celery(tmp_path: Path) -> None:
    flower = _service("flower")
    assert flower["ports"] == ["127.0.0.1:5555:5555/tcp"]  # this host only
    refused = _run_shell_command("flower", {}, "celery", tmp_path)
    assert refused.returncode == 1 and "set MARROWMAP_FLOWER_BASIC_AUTH" in refused.stderr
    started = _run_shell_command("flower", {"FLOWER_BASIC_AUTH": "ops:secret"}, "celery", tmp_path)
    assert started.returncode == 0 and started.stdout.split()[1:] == ["flower", "--port=5555"]
    env = _environment(flower)
    assert env["FLOWER_BASIC_AUTH"] == ""  # filled from MARROWMAP_FLOWER_BASIC_AUTH, never written here
    assert env["CELERY_BROKER_URL"] == f"redis://:{PASSWORD}@redis:6379/0"
    run = subprocess.run([sys.executable, "-m", "celery", "flower", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "/healthcheck" in flower["healthcheck"]["test"][-1]


def test_redis_needs_a_password_and_every_url_carries_it(tmp_path: Path) -> None:
    refused = _run_shell_command("redis", {}, "redis-server", tmp_path)
    assert refused.returncode == 1 and "set MARROWMAP_REDIS_PASSWORD" in refused.stderr
    started = _run_shell_command("redis", {"REDIS_PASSWORD": PASSWORD}, "redis-server", tmp_path)
    assert started.stdout.split()[1:] == ["--appendonly", "yes", "--requirepass", PASSWORD]
    assert _environment(_service("redis"))["REDIS_PASSWORD"] == PASSWORD
    assert "REDISCLI_AUTH" in _service("redis")["healthcheck"]["test"][1]
    for name in MARROWMAP_SERVICES:
        assert _environment(_service(name))[f"{ENV_PREFIX}BROKER_URL"] == f"redis://:{PASSWORD}@redis:6379/0"


def test_a_redis_with_requirepass_takes_only_urls_with_the_password(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--requirepass", PASSWORD], stdout=subprocess.DEVNULL)
    try:
        env = {f"{ENV_PREFIX}SPOOL_DIR": str(tmp_path), f"{ENV_PREFIX}CONFIG": str(ROOT / "config" / "marrowmap.toml")}
        deadline = time.monotonic() + 10
        while True:
            good = _marrowmap(["health", "worker"], {**env, f"{ENV_PREFIX}BROKER_URL":
                                                     f"redis://:{PASSWORD}@127.0.0.1:{port}/0"})
            if good.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        bad = _marrowmap(["health", "worker"], {**env, f"{ENV_PREFIX}BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    finally:
        server.terminate()
        server.wait(10)
    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1 and "unhealthy: broker" in bad.stdout and "authenticated" in bad.stdout
    assert PASSWORD not in good.stdout  # the health line redacts the URL


def test_environment_names_are_settings_and_values_load() -> None:
    fields = set(Settings.model_fields)
    for name in MARROWMAP_SERVICES:
        env = _environment(_service(name))
        for key in env:
            if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
                assert key.removeprefix(ENV_PREFIX).lower() in fields, f"{name}: {key} is no setting"
        # The values (with the repo's config standing in for the mounted one) make valid settings.
        values = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        values[f"{ENV_PREFIX}CONFIG"] = str(ROOT / "config" / "marrowmap.toml")
        run = _marrowmap(["config", "--json"], values)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        effective = json.loads(run.stdout)
        assert effective["broker_url"] == f"redis://:{PASSWORD}@redis:6379/0"
        assert effective["spool_dir"] == env[f"{ENV_PREFIX}SPOOL_DIR"]


def test_ports_match_the_settings() -> None:
    defaults = Settings()
    listener_ports = _service("listener")["ports"]
    assert [(int(p["target"]), int(p["published"])) for p in listener_ports] == [
        (defaults.port, defaults.port)
    ]
    env = _environment(_service("listener"))
    assert f"{ENV_PREFIX}PORT" not in env  # the container listens on the default port
    orthanc = _service("orthanc")
    modalities = json.loads(orthanc["environment"]["ORTHANC__DICOM_MODALITIES"])
    assert modalities["marrowmap"] == [defaults.ae_title, "listener", defaults.port]
    assert env[f"{ENV_PREFIX}PACS_HOST"] == "orthanc"
    assert env[f"{ENV_PREFIX}PACS_AE_TITLE"] == orthanc["environment"]["ORTHANC__DICOM_AET"]
    assert int(env[f"{ENV_PREFIX}PACS_PORT"]) == int(orthanc["environment"]["ORTHANC__DICOM_PORT"])
    assert any(int(p["target"]) == int(env[f"{ENV_PREFIX}PACS_PORT"]) for p in orthanc["ports"])


def test_real_pacs_comes_from_the_environment() -> None:
    resolved = _compose("config", env={"MARROWMAP_PACS_HOST": "pacs.example.org",
                                       "MARROWMAP_PACS_PORT": "104"})
    assert resolved.returncode == 0, resolved.stderr
    env = yaml.safe_load(resolved.stdout)["services"]["worker-send"]["environment"]
    assert env["MARROWMAP_PACS_HOST"] == "pacs.example.org" and str(env["MARROWMAP_PACS_PORT"]) == "104"


def test_volumes_share_the_spool_and_mount_config_read_only() -> None:
    config_file = ROOT / "config" / "marrowmap.toml"
    spool_in_config = tomllib.loads(config_file.read_text())["spool_dir"]
    for name in MARROWMAP_SERVICES:
        service = _service(name)
        env = _environment(service)
        mounts = _mounts(service)
        assert mounts[env[f"{ENV_PREFIX}SPOOL_DIR"]] == ("spool", "rw"), name
        assert env[f"{ENV_PREFIX}SPOOL_DIR"] == spool_in_config
        config_target = str(Path(env[f"{ENV_PREFIX}CONFIG"]).parent)
        assert mounts[config_target] == (str(ROOT / "config"), "ro"), name
    assert "spool" in _resolved()["volumes"]
    lua_source, lua_mode = _mounts(_service("orthanc"))["/etc/orthanc/autoroute.lua"]
    assert Path(lua_source).is_file() and lua_mode == "ro"


def test_dockerfile_copies_what_exists_and_installs_real_extras() -> None:
    text = DOCKERFILE.read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for match in re.finditer(r'pip install "\.\[([^\]]+)\]"', text):
        assert set(match.group(1).split(",")) <= extras
    assert "MARROWMAP_SPOOL_DIR=/var/lib/marrowmap/spool" in text
    assert "EXPOSE 11112" in text


def test_web_needs_a_password_and_listens_on_loopback_only(tmp_path: Path) -> None:
    web = _service("web")
    assert web["ports"] == ["127.0.0.1:8110:8110/tcp"]
    assert _run_shell_command("web", {}, "marrowmap", tmp_path).returncode == 1
    started = _run_shell_command("web", {"WEB_PASSWORD": "a-long-password"}, "marrowmap", tmp_path)
    assert started.returncode == 0 and started.stdout.split()[1:] == ["web"]
    env = _environment(web)
    assert env["WEB_PASSWORD"] == "" and env[f"{ENV_PREFIX}WEB_HOST"] == "0.0.0.0"
    assert int(web["ports"][0].split(":")[1]) == Settings().web_port


def test_prometheus_scrapes_every_marrowmap_process_on_its_metrics_port() -> None:
    scrape = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    defaults = Settings()
    assert targets == {f"listener:{defaults.listener_metrics_port}", f"worker:{defaults.worker_metrics_port}",
                       f"worker-send:{defaults.worker_metrics_port}"}
    for name in ("listener", "worker", "worker-send"):
        assert _environment(_service(name))[f"{ENV_PREFIX}METRICS_HOST"] == "0.0.0.0"  # reachable by Prometheus
    mounts = _mounts(_service("prometheus"))
    assert mounts["/etc/prometheus/prometheus.yml"] == (str(ROOT / "config" / "prometheus.yml"), "ro")
    dashboard = json.loads((ROOT / "config" / "grafana" / "marrowmap-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("marrowmap_jobs", "marrowmap_queue_depth", "marrowmap_instances_received_total",
                   "marrowmap_analysis_seconds_bucket", "marrowmap_send_failures_total", "marrowmap_spool_free_bytes"):
        assert metric in exprs, metric
