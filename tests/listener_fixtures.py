"""Real peers for listener and worker tests: `marrowmap listen` / `marrowmap worker` as
subprocesses on free loopback ports, dcmtk storescu and pynetdicom SCUs, and the real Redis.

Each test gets its own queue prefix and job-store prefix in Redis DB 15 (MARROWMAP_TEST_REDIS),
and its keys are deleted afterwards (the DB is not flushed: other suites may share it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pynetdicom import AE, _config
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from marrowmap.jobstore import JobRecord, JobStore

REDIS_URL = os.environ.get("MARROWMAP_TEST_REDIS", "redis://127.0.0.1:6379/15")
CALLED_AE = "MARROWMAP"
#: dcmtk's storescu by its full path: pynetdicom installs a script of the same name, which may come first on PATH.
STORESCU = "/usr/bin/storescu"
#: ``marrowmap`` as a command line, with this interpreter.
MARROWMAP = [sys.executable, "-c", "from marrowmap.cli import main; main()"]
T = TypeVar("T")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_for_job(store: JobStore, job_id: str, accept: Callable[[JobRecord], bool], timeout: float,
                 what: str) -> JobRecord:
    """Poll the job store until the job's record satisfies ``accept``; return that record."""

    def check() -> JobRecord | None:
        record = store.get(job_id)
        return record if record is not None and accept(record) else None

    record = wait_for(check, timeout, what)
    assert record is not None
    return record


def echo(port: int, calling_ae: str = "ECHOSCU") -> bool:
    """True when a C-ECHO to the listener succeeds."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 3
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


@dataclass
class Proc:
    """A `marrowmap` subprocess with its log file (JSON lines)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def records(self) -> list[dict[str, Any]]:
        """The structured log records written so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def events(self, event: str) -> list[dict[str, Any]]:
        """Log records of one event name."""
        return [r for r in self.records() if r.get("event") == event]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class Harness:
    """Per-test environment: spool, Redis namespaces, the processes started."""

    tmp: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")
    procs: list[Proc] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.spool = self.tmp / "spool"
        self.redis = redis.Redis.from_url(REDIS_URL)

    @property
    def queue_prefix(self) -> str:
        return f"{self.prefix}."

    def env(self, **extra: str) -> dict[str, str]:
        """The MARROWMAP_* environment of this test's processes."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARROWMAP_")}
        env.update({
            "MARROWMAP_PORT": str(self.port),
            "MARROWMAP_HOST": "127.0.0.1",
            "MARROWMAP_SPOOL_DIR": str(self.spool),
            "MARROWMAP_QUIET_SECONDS": "1",
            "MARROWMAP_BROKER_URL": REDIS_URL,
            "MARROWMAP_QUEUE_PREFIX": self.queue_prefix,
            "MARROWMAP_JOB_STORE_PREFIX": self.prefix,
            "MARROWMAP_MIN_FREE_DISK_MB": "1",
            "MARROWMAP_LOG_FORMAT": "json",
            "MARROWMAP_CONFIG": str(Path(__file__).resolve().parents[1] / "config" / "marrowmap.toml"),
            # no fixed ports that two test processes could both want (tests that scrape set free ones)
            "MARROWMAP_LISTENER_METRICS_PORT": "0",
            "MARROWMAP_WORKER_METRICS_PORT": "0",
            "MARROWMAP_WEB_PORT": "0",
        })
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log_path = self.tmp / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [*MARROWMAP, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_listener(self, **extra_env: str) -> Proc:
        """`marrowmap listen`, returned once it answers C-ECHO."""
        proc = self._spawn("listen", ["listen"], self.env(**extra_env))

        def up() -> bool:
            if proc.popen.poll() is not None:
                pytest.fail(f"listener exited with {proc.popen.returncode}:\n{proc.log_path.read_text()}")
            return echo(self.port, extra_env.get("TEST_ECHO_AE", "ECHOSCU"))

        wait_for(up, 30, "the listener to answer C-ECHO", interval=0.2)
        return proc

    def start_worker(self, **extra_env: str) -> Proc:
        """`marrowmap worker` (one process, solo pool), returned once it is ready."""
        proc = self._spawn("worker", ["worker", "--pool", "solo"], self.env(**extra_env))
        wait_for(lambda: "ready." in proc.log_path.read_text(errors="replace") or proc.popen.poll() is not None,
                 60, "the worker to be ready", interval=0.2)
        assert proc.popen.poll() is None, proc.log_path.read_text()
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `marrowmap` command to completion."""
        return subprocess.run([*MARROWMAP, *args], env=self.env(),
                              capture_output=True, text=True, timeout=60)

    def queue_messages(self, base: str = "analysis") -> list[dict[str, Any]]:
        """The Celery messages waiting in a queue, decoded: headers + kwargs."""
        out = []
        for raw in self.redis.lrange(self.queue_prefix + base, 0, -1):
            message = json.loads(raw)
            body = json.loads(base64.b64decode(message["body"]))
            out.append({"headers": message["headers"], "args": body[0], "kwargs": body[1]})
        return out

    def cleanup(self) -> None:
        """Stop every process and delete this test's Redis keys."""
        for proc in self.procs:
            proc.stop()
        for pattern in (f"{self.prefix}:*", f"{self.prefix}.*", f"*{self.prefix}.*"):
            keys = list(self.redis.scan_iter(match=pattern, count=500))
            if keys:
                self.redis.delete(*keys)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A per-test harness; processes are stopped and Redis keys removed at teardown."""
    h = Harness(tmp_path)
    try:
        h.redis.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis at {REDIS_URL} does not answer (start redis-server; .ci/run does)")
    yield h
    h.cleanup()


def storescu(port: int, files: Sequence[Path], calling_ae: str = "STORESCU", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Send files with dcmtk storescu (TCP_NODELAY on, as Debian's dcmtk leaves Nagle on)."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(
        [STORESCU, "-aet", calling_ae, "-aec", CALLED_AE, "127.0.0.1", str(port), *map(str, files)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def pynetdicom_send(port: int, datasets: Sequence[Dataset], calling_ae: str = "PYSCU") -> list[int]:
    """Send datasets in one association; return each C-STORE status (-1: no response)."""
    ae = AE(ae_title=calling_ae)
    for sop_class, ts in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE)
    assert assoc.is_established, "association was not established"
    statuses = []
    for ds in datasets:
        status = assoc.send_c_store(ds)
        statuses.append(int(status.Status) if status else -1)
    assoc.release()
    return statuses


@contextlib.contextmanager
def _chunked_send() -> Iterator[None]:
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def raw_file(folder: Path, name: str, sop_class: str, sop_uid: str, transfer_syntax: str, encoded: bytes) -> Path:
    """A Part-10 file whose data set is exactly ``encoded`` (which may be garbage or truncated)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    path = folder / name
    path.write_bytes(b"\x00" * 128 + b"DICM" + encode_file_meta(meta) + encoded)
    return path


def send_raw_files(port: int, files: Sequence[tuple[Path, str, str]], calling_ae: str = "PYSCU") -> list[int]:
    """Send files' data sets byte for byte (no decoding); ``files`` = (path, sop_class, ts)."""
    ae = AE(ae_title=calling_ae)
    for sop_class, ts in sorted({(c, t) for _, c, t in files}):
        ae.add_requested_context(sop_class, [ts])
    statuses = []
    with _chunked_send():
        assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE)
        assert assoc.is_established, "association was not established"
        for path, _, _ in files:
            status = assoc.send_c_store(path)
            statuses.append(int(status.Status) if status else -1)
        assoc.release()
    return statuses


def spooled_files(spool: Path) -> dict[str, Path]:
    """Every spooled instance (incoming/sealing/ready), keyed by SOP Instance UID; asserts no duplicates per stage."""
    out: dict[str, Path] = {}
    for path in sorted(spool.glob("*/*/*/*.dcm")) + sorted(spool.glob("ready/*/*/*/*.dcm")):
        out.setdefault(path.stem, path)
    return out
