"""Health checks for docker-compose/systemd: the listener answers C-ECHO; a worker reaches the
broker and can write to the spool. Each returns a typed result; the CLI exits 0/1 on it."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from marrowmap.preflight import check_spool as spool_problem
from marrowmap.preflight import redact
from marrowmap.settings import Settings

_LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class Health:
    """Outcome of one health check."""

    ok: bool
    detail: str


def check_listener(settings: Settings, timeout: float = 5.0) -> Health:
    """C-ECHO to our own listener (on loopback when it binds to every address; over TLS when it
    requires TLS, presenting our own certificate)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from marrowmap.tls import TlsConfigError, client_context

    host = _LOCAL if settings.host in ("0.0.0.0", "::", "") else settings.host
    ae = AE(ae_title=settings.health_calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    try:
        tls = (client_context(settings, verify_server=False), host) if settings.listener_tls else None
    except TlsConfigError as exc:
        return Health(False, str(exc))
    assoc = ae.associate(host, settings.port, ae_title=settings.ae_title, tls_args=tls)
    if not assoc.is_established:
        how = "rejected" if assoc.is_rejected else "not established"
        return Health(False, f"association to {settings.ae_title}@{host}:{settings.port} {how}")
    status = assoc.send_c_echo()
    assoc.release()
    if status and int(status.Status) == 0:
        return Health(True, f"C-ECHO {settings.ae_title}@{host}:{settings.port} ok")
    return Health(False, f"C-ECHO {settings.ae_title}@{host}:{settings.port} got no Success")


def check_broker(settings: Settings, timeout: float = 5.0) -> Health:
    """The Redis broker (and job store) answers PING."""
    for name, url in (("broker", settings.broker_url), ("job store", settings.jobs_url)):
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            client.ping()
        except redis.RedisError as exc:
            return Health(False, f"{name} {redact(url)} unreachable: {exc}")
    return Health(True, f"broker {redact(settings.broker_url)} answers")


def check_spool(settings: Settings) -> Health:
    """The spool exists and takes a durable write (create, fsync, delete)."""
    problem = spool_problem(settings.spool_dir)
    if problem is not None:
        return Health(False, problem.message)
    return Health(True, f"spool {settings.spool_dir} writable")


def check_worker(settings: Settings) -> Health:
    """Broker reachable and spool writable."""
    results = [check_broker(settings), check_spool(settings)]
    return Health(all(r.ok for r in results), "; ".join(r.detail for r in results))

