"""Start-up checks of ``listen``, ``worker``, ``up`` and ``web``: each problem in one line that says what to do.

The checks look at what a process needs before it starts: a spool it can write, a broker that
answers, and free ports. They never change anything but a probe file in ``<spool>/tmp``.
"""

from __future__ import annotations

import errno
import getpass
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from marrowmap.settings import Settings


@dataclass(frozen=True)
class Problem:
    """Why a process cannot start, in one line."""

    message: str


def redact(url: str) -> str:
    """A Redis URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def check_spool(spool_dir: Path) -> Problem | None:
    """The spool exists (or can be created) and takes a durable write."""
    probe = spool_dir / "tmp" / f".start-{uuid.uuid4().hex}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return Problem(f"spool {spool_dir} is not writable by user {getpass.getuser()} "
                           f"({exc.strerror}): create it with write access for this user "
                           f"(sudo install -d -o {getpass.getuser()} {spool_dir}) or set MARROWMAP_SPOOL_DIR")
        return Problem(f"spool {spool_dir} cannot be written ({exc.strerror or exc}): "
                       f"check the disk and the path, or set MARROWMAP_SPOOL_DIR")
    return None


def check_broker(settings: Settings, timeout: float = 3.0) -> Problem | None:
    """The broker (and the job store, when it is another Redis) answers PING."""
    for name, variable, url in (("broker", "MARROWMAP_BROKER_URL", settings.broker_url),
                                ("job store", "MARROWMAP_JOB_STORE_URL", settings.jobs_url)):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
        except redis.AuthenticationError as exc:
            return Problem(f"{name} {redact(url)} refused the password ({exc}): fix the password in {variable}")
        except redis.RedisError as exc:
            return Problem(f"{name} {redact(url)} does not answer ({exc}): start Redis "
                           f"(apt-get install -y redis-server) or set {variable}")
    return None


def check_port(host: str, port: int, what: str, variable: str) -> Problem | None:
    """Nothing else listens on ``host:port`` (0 = off: nothing to check)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return Problem(f"{what} port {port} on {host} is already in use (another marrowmap? see "
                           f"`ss -ltnp 'sport = :{port}'`): stop that process or set {variable}")
        if exc.errno == errno.EACCES:
            return Problem(f"{what} port {port} on {host} needs root (ports below 1024): "
                           f"use a port >= 1024 in {variable}")
        return Problem(f"{what} cannot listen on {host}:{port} ({exc.strerror}): check {variable} "
                       f"and the host's addresses")
    return None


def listener_problems(settings: Settings) -> list[Problem]:
    """What stops ``marrowmap listen``: the spool and its ports (a broker that is down is not: the
    listener keeps receiving and queues once it answers)."""
    found = [check_spool(settings.spool_dir),
             check_port(settings.host, settings.port, "DICOM", "MARROWMAP_PORT"),
             check_port(settings.metrics_host, settings.listener_metrics_port, "listener metrics",
                        "MARROWMAP_LISTENER_METRICS_PORT")]
    return [p for p in found if p is not None]


def worker_problems(settings: Settings) -> list[Problem]:
    """What stops ``marrowmap worker``: the spool, the broker and its metrics port."""
    found = [check_spool(settings.spool_dir), check_broker(settings),
             check_port(settings.metrics_host, settings.worker_metrics_port, "worker metrics",
                        "MARROWMAP_WORKER_METRICS_PORT")]
    return [p for p in found if p is not None]


def up_problems(settings: Settings, workers: int) -> list[Problem]:
    """What stops ``marrowmap up`` before it starts anything (the broker is checked after Redis is started)."""
    found = [*listener_problems(settings),
             check_port(settings.web_host, settings.web_port, "web page", "MARROWMAP_WEB_PORT")]
    if settings.worker_metrics_port:
        found += [check_port(settings.metrics_host, settings.worker_metrics_port + n, f"worker {n + 1} metrics",
                             "MARROWMAP_WORKER_METRICS_PORT") for n in range(workers)]
    return [p for p in found if p is not None]
