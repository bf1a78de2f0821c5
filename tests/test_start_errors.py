"""Mistakes a person makes get one line that says what is wrong and what to do, and a non-zero exit
(a warning for a misspelt variable): the real `marrowmap` command, a real read-only file system,
real sockets and Redis."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.listener_fixtures import MARROWMAP, REDIS_URL, free_port
from tests.tmpfs_fixtures import mounted_tmpfs

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``marrowmap ARGS`` with a clean MARROWMAP_* environment (spool in ``tmp``, ports free or off)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARROWMAP_")}
    base.update({"MARROWMAP_SPOOL_DIR": str(tmp / "spool"), "MARROWMAP_BROKER_URL": REDIS_URL,
                 "MARROWMAP_PORT": str(free_port()), "MARROWMAP_HOST": "127.0.0.1",
                 "MARROWMAP_LISTENER_METRICS_PORT": "0", "MARROWMAP_WORKER_METRICS_PORT": "0",
                 "MARROWMAP_WEB_PORT": "0", "MARROWMAP_LOG_FORMAT": "json",
                 "MARROWMAP_CONFIG": str(REPO / "config" / "marrowmap.toml")})
    base.update(env)
    return subprocess.run([*MARROWMAP, *args], env=base, capture_output=True, text=True, timeout=60, cwd=tmp)


def _one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.fixture
def read_only_spool(tmp_path: Path) -> Iterator[Path]:
    """A real read-only file system (tmpfs mounted ro) as the spool."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        yield mount


@pytest.mark.parametrize("command", [["listen"], ["worker", "--pool", "solo"], ["up"]])
def test_spool_not_writable(read_only_spool: Path, tmp_path: Path, command: list[str]) -> None:
    run = _run(command, tmp_path, MARROWMAP_SPOOL_DIR=str(read_only_spool / "spool"))
    line = _one_line(run)
    assert run.returncode == 1
    assert line.startswith("marrowmap: cannot start: spool ") and "not writable" in line
    assert "Read-only file system" in line and "MARROWMAP_SPOOL_DIR" in line


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "marrowmap.toml"
    config.write_text('port = 11112\nspool_dir = "/var/lib/marrowmap/spool\nquiet_seconds = 5\n')
    run = _run(["listen"], tmp_path, MARROWMAP_CONFIG=str(config))
    line = _one_line(run)
    assert run.returncode == 2
    assert f"config file {config}, line 2, column" in line and "fix the file" in line


def test_bad_value_in_the_config_file_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "marrowmap.toml"
    config.write_text('ae_title = "MARROWMAP"\n\nquiet_seconds = "soon"\n')
    run = _run(["config"], tmp_path, MARROWMAP_CONFIG=str(config))
    assert run.returncode == 2
    assert f"{config} line 3 (quiet_seconds)" in _one_line(run)


@pytest.mark.parametrize("command", [["status"], ["worker"], ["config"]])
def test_bad_broker_url(tmp_path: Path, command: list[str]) -> None:
    run = _run(command, tmp_path, MARROWMAP_BROKER_URL="http://x")
    line = _one_line(run)
    assert run.returncode == 2
    assert "MARROWMAP_BROKER_URL (broker_url): broker_url must be a Redis URL" in line and "redis://" in line


def test_broker_that_does_not_answer_stops_the_worker(tmp_path: Path) -> None:
    run = _run(["worker", "--pool", "solo"], tmp_path, MARROWMAP_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    line = _one_line(run)
    assert run.returncode == 1
    assert "does not answer" in line and "MARROWMAP_BROKER_URL" in line


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _run(["listen"], tmp_path, MARROWMAP_PORT=str(port))
    line = _one_line(run)
    assert run.returncode == 1
    assert f"DICOM port {port} on 127.0.0.1 is already in use" in line and "MARROWMAP_PORT" in line


def test_misspelt_variable_is_warned_about(tmp_path: Path) -> None:
    run = _run(["config"], tmp_path, MARROWMAP_PROT="104")
    assert _one_line(run) == ("marrowmap: warning: MARROWMAP_PROT is not a MarrowMap setting and is ignored; "
                              "did you mean MARROWMAP_PORT?")
    assert run.returncode == 1  # `marrowmap config` is the check; the services start with the warning
    assert "# config file: " in run.stdout and "port = " in run.stdout


def test_analyze_a_folder_without_dicom(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-study"
    folder.mkdir()
    (folder / "notes.txt").write_text("hip MRI next week")
    run = _run(["analyze", str(folder), "--out", str(tmp_path / "out")], tmp_path)
    line = _one_line(run)
    assert run.returncode == 2
    assert line.startswith(f"marrowmap: no DICOM files in {folder}") and "study folder" in line
    assert not (tmp_path / "out").exists()


def test_config_says_which_file_it_read(tmp_path: Path) -> None:
    run = _run(["config"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"# config file: {REPO / 'config' / 'marrowmap.toml'}"
    without = _run(["config"], tmp_path, MARROWMAP_CONFIG="")
    assert without.stdout.startswith("# config file: none, defaults")
