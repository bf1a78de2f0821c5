"""MarrowMap settings: one frozen, typed object read once at start.

Sources, highest priority first: ``MARROWMAP_*`` environment variables, then the
TOML config file (``MARROWMAP_CONFIG``, default ``config/marrowmap.toml`` when it
exists, else ``/etc/marrowmap/marrowmap.toml``), then the defaults below. A bad
value stops the start with a message that names the setting and where it was set (the
environment variable, or the config file and line); a ``MARROWMAP_*`` variable that is no
setting is reported (``unknown_variables``), since a misspelt one would silently be ignored.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "MARROWMAP_"
DEFAULT_CONFIG_PATHS = (Path("config/marrowmap.toml"), Path("/etc/marrowmap/marrowmap.toml"))
#: ``MARROWMAP_*`` variables that are not settings but are read by MarrowMap's tools (not warned about).
OTHER_VARIABLES = frozenset({
    f"{ENV_PREFIX}CONFIG",  # the config file
    f"{ENV_PREFIX}TEST_REDIS",  # tests: the Redis they use
    f"{ENV_PREFIX}VIEWER_CHECK", f"{ENV_PREFIX}VIEWER_CACHE",  # tests / tools/viewer_check
    f"{ENV_PREFIX}REDIS_PASSWORD", f"{ENV_PREFIX}FLOWER_BASIC_AUTH",  # docker-compose interpolation
})
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash, 1-16 chars


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message names each bad setting."""


def config_path() -> Path | None:
    """Return the config file to read (absolute), or None when there is none."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"{ENV_PREFIX}CONFIG: config file {path} does not exist "
                                f"(unset {ENV_PREFIX}CONFIG, or point it at a file)")
        return path.resolve()
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate.resolve()
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML config file's values; SettingsError names the file, line and column of a syntax error."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        at = f", line {where.group(1)}, column {where.group(2)}" if where else ""
        raise SettingsError(f"config file {path}{at}: {what} (TOML syntax; fix the file or point "
                            f"{ENV_PREFIX}CONFIG at another one)") from None


def _line_of(path: Path, key: str) -> int | None:
    """The line of ``key = ...`` in the config file (1-based), or None."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """One warning per ``MARROWMAP_*`` environment variable that is no setting (with a likely meant one)."""
    names = os.environ if environ is None else environ
    known = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields} | OTHER_VARIABLES
    warnings = []
    for name in sorted(n for n in names if n.upper().startswith(ENV_PREFIX) and n.upper() not in known):
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else "; `marrowmap config` lists the settings"
        warnings.append(f"{name} is not a MarrowMap setting and is ignored{hint}")
    return warnings


def _split_list(value: Any) -> Any:
    """Accept a comma separated string (environment) or a list (TOML)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_ae(value: str, name: str) -> str:
    if not _AE_RE.match(value) or value.strip() == "":
        raise ValueError(f"{name} must be 1-16 printable ASCII characters without backslash")
    return value.strip()


_HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-_]*[A-Za-z0-9])?)*$")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_host(value: str, name: str, *, empty_ok: bool = False) -> str:
    """``value`` when it is an IP address or a DNS host name; ValueError naming the setting otherwise."""
    value = value.strip()
    if not value and empty_ok:
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME_RE.match(value):
            raise ValueError(f"{name}: {value!r} is no IP address or host name") from None
    return value


def check_redis_url(value: str, name: str) -> str:
    """``value`` when it is a Redis URL (redis://, rediss://, unix://); ValueError naming the setting otherwise.

    The message never repeats the URL (it may hold a password).
    """
    example = "redis://[:password@]host:6379/0 (rediss:// for TLS)"
    try:
        url = urlsplit(value.strip())
        _port = url.port  # a port that is no number raises ValueError
    except ValueError:
        raise ValueError(f"{name} is not a valid URL; use {example}") from None
    if url.scheme not in _REDIS_SCHEMES:
        raise ValueError(f"{name} must be a Redis URL, not {url.scheme or 'a bare'}://...; use {example}")
    if url.scheme == "unix":
        if not url.path:
            raise ValueError(f"{name}: unix:// needs the socket path, e.g. unix:///run/redis/redis.sock")
        return value.strip()
    if not url.hostname:
        raise ValueError(f"{name} has no host; use {example}")
    check_host(url.hostname, name)
    database = url.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"{name}: the database after the host must be a number (e.g. /0), not /{database}")
    return value.strip()


def split_allow_entry(entry: str) -> tuple[str, str]:
    """``AE`` or ``AE@host`` (host: address, CIDR network or DNS name) -> (AE, host or "")."""
    ae, sep, host = entry.strip().rpartition("@")
    return (ae.strip(), host.strip()) if sep else (entry.strip(), "")


def _check_allow_entry(entry: str) -> str:
    ae, host = split_allow_entry(entry)
    ae = _check_ae(ae, "allowed_calling_aets")
    if not host:
        return ae
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        if not _HOST_NAME_RE.match(host):
            raise ValueError(f"allowed_calling_aets: {host!r} is no address, CIDR network or host name") from None
    return f"{ae}@{host}"


class Settings(BaseSettings):
    """All MarrowMap settings (listener, workers, sender). Frozen after load."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    # --- listener -----------------------------------------------------------------------
    ae_title: str = Field("MARROWMAP", description="Our AE title (called AE the PACS sends to).")
    host: str = Field("0.0.0.0", description="Address the DICOM listener binds to.")
    port: int = Field(11112, ge=1, le=65535, description="TCP port of the DICOM listener.")
    spool_dir: Path = Field(
        Path("/var/lib/marrowmap/spool"),
        description="Durable spool shared by listener and workers (incoming, ready, results).",
    )
    quiet_seconds: float = Field(
        60.0, gt=0, le=86400, description="A study is sealed after this long without new instances."
    )
    early_completion: bool = Field(
        True, description="Seal a study before the quiet period when it is complete by evidence "
                          "(association released, the needed series complete by their headers).",
    )
    early_seal_seconds: float = Field(
        2.0, ge=0, le=3600,
        description="With early_completion: seal this long after the release of the association that carried "
                    "a study's last instance.",
    )
    allowed_calling_aets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Who may associate (comma list): `AE` (from any address) or `AE@host`, host = address, "
                    "CIDR network or DNS name (resolved at start); empty = any caller.",
    )
    require_allow_list: bool = Field(
        False, description="Refuse to start the listener while allowed_calling_aets is empty."
    )
    min_free_disk_mb: int = Field(
        1024, ge=0, description="Below this much free space in the spool, C-STORE answers Out of Resources."
    )
    max_associations: int = Field(10, ge=1, le=1000, description="Concurrent associations accepted.")
    network_timeout_seconds: float = Field(60.0, gt=0, description="Idle TCP time-out of an association.")

    health_calling_ae: str = Field(
        "MM-HEALTH",
        description="Calling AE of `marrowmap health listener`; let in for C-ECHO from this host only, never allowed to store.",
    )

    # --- who may connect, and for how long before the association request is complete ----------
    association_request_timeout_seconds: float = Field(
        5.0, gt=0, le=120,
        description="A connection (TLS handshake included) must deliver its whole A-ASSOCIATE-RQ within this time.",
    )
    max_connections_per_peer: int = Field(
        4, ge=1, le=1000, description="Concurrent connections from one peer address; more are closed at once."
    )
    max_rejected_connections: int = Field(
        4, ge=1, le=1000,
        description="Connections held only to answer them with a rejection (address on no allow-list entry, or "
                    "max_associations reached); they never use max_associations; more are closed at once.",
    )

    # --- DICOM TLS ---------------------------------------------------------------------------
    listener_tls: bool = Field(
        False, description="The listener speaks DICOM TLS only (needs tls_cert_file, tls_key_file); plain TCP is refused."
    )
    listener_tls_client_cert: bool = Field(
        False, description="With listener_tls: peers must present a certificate issued by tls_ca_file (mutual TLS)."
    )
    pacs_tls: bool = Field(
        False, description="Send results to the PACS over TLS; its certificate must chain to tls_ca_file "
                           "(or the system trust store when unset)."
    )
    pacs_tls_check_hostname: bool = Field(
        True, description="With pacs_tls: the PACS certificate must name pacs_host."
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) of MarrowMap: the listener's, and the sender's client certificate."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file (unencrypted).")
    tls_ca_file: Path | None = Field(
        None, description="PEM CA certificate(s) that peers' certificates (PACS, senders) must chain to."
    )

    # --- audit trail ---------------------------------------------------------------------------
    audit_file: Path | None = Field(
        None, description="Append-only audit trail (JSON lines, DICOM audit message fields); default "
                          "<spool_dir>/audit/audit.jsonl."
    )
    audit_max_mb: int = Field(50, ge=1, description="Size (MB) at which the audit file is rotated.")
    audit_backups: int = Field(
        20, ge=1, description="Rotated audit files kept (older ones are deleted: keep them longer via syslog)."
    )
    audit_syslog_host: str = Field(
        "", description="Also send each audit event to this syslog server (RFC 5424 over UDP); empty = off."
    )
    audit_syslog_port: int = Field(514, ge=1, le=65535, description="UDP port of audit_syslog_host.")

    # --- retention -----------------------------------------------------------------------------
    retention_days: float = Field(
        7.0, gt=0,
        description="Sealed batches and results of a sent job are removed this long after it was sent "
                    "(result.json and key_image.png stay for follow-up comparisons).",
    )
    retention_max_spool_mb: int = Field(
        0, ge=0, description="Above this spool size, sent jobs' data are removed early, oldest first; 0 = no cap."
    )
    job_record_days: float = Field(
        90.0, gt=0, description="Finished job records whose spool data are gone expire after this long."
    )
    retention_interval_seconds: float = Field(
        600.0, gt=0, description="How often the listener applies the retention policy."
    )

    # --- receive limits (issue 13): a peer over a limit gets a failure status or an abort -------
    max_pdu_bytes: int = Field(
        1_048_576, ge=16_384, le=1 << 30,
        description="Largest PDU accepted (also advertised as our maximum length); a larger one aborts the association.",
    )
    max_instance_mb: int = Field(
        256, ge=1, le=65_536, description="Largest data set of one instance; a larger one aborts the association.",
    )
    max_inflated_mb: int = Field(
        256, ge=1, le=65_536,
        description="Largest inflated size of a deflated data set; a larger one is refused (0xC001).",
    )
    max_instances_per_study: int = Field(
        20_000, ge=1, description="Instances of one study accepted before it is sealed; more are refused (0xC001).",
    )
    pdu_timeout_seconds: float = Field(
        60.0, gt=0,
        description="A PDU must arrive whole within this time of its first byte (slow peers cannot reset it byte by byte).",
    )
    seal_retry_seconds: float = Field(
        30.0, gt=0, description="After a failed seal (e.g. disk full) the sealer retries after this long.",
    )
    reconcile_interval_seconds: float = Field(
        30.0, gt=0,
        description="How often the listener reconciles the spool with the job store and re-delivers orphaned jobs.",
    )

    # --- routing: which studies become analysis jobs ----------------------------------------
    route_modalities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["MR"], description="Modalities that can become jobs."
    )
    route_body_parts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["HIP", "HIPS", "PELVIS", "PELVIS_HIP", "HIP_JOINT", "FEMUR", "BECKEN", "HUEFTE"],
        description="BodyPartExamined values (case-insensitive) that mark a hip/pelvis study.",
    )
    route_description_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["hip", "hips", "pelvis", "pelvic", "huefte", "hüfte", "becken", "hanche", "bassin", "femoral head", "coxa"],
        description="Words in Study/Series/Protocol description that mark a hip/pelvis study.",
    )

    route_sop_classes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"],
        description="SOP classes that can become jobs (MR Image, Enhanced MR Image, Legacy Converted Enhanced MR).",
    )

    # --- queue and job store ------------------------------------------------------------------
    broker_url: str = Field("redis://localhost:6379/0", description="Celery broker (Redis).")
    job_store_url: str | None = Field(None, description="Redis URL of the job store; default = broker_url.")
    # (listener/worker lead) namespaces, so several deployments (or tests) can share one Redis.
    queue_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9_.-]*$", max_length=64,
        description="Prefix of the Celery queue names (e.g. 'site1.' -> 'site1.analysis').",
    )
    job_store_prefix: str = Field(
        "marrowmap", pattern=r"^[A-Za-z0-9_.-]+$", max_length=64, description="Key prefix of the job store in Redis."
    )
    task_time_limit_seconds: int = Field(
        300, ge=30, le=86400,
        description="Hard time limit of the analysis task; its soft limit derives from it.",
    )
    send_time_limit_seconds: int = Field(
        600, ge=30, le=86400, description="Hard time limit of one attempt to send a job's results.",
    )
    worker_heartbeat_seconds: float = Field(
        10.0, gt=0, le=600,
        description="Each worker refreshes its heartbeat this often; one silent for 3 beats is lost and its job re-delivered.",
    )

    # --- sending results back to the PACS ---------------------------------------------------
    pacs_ae_title: str = Field("PACS", description="AE title of the PACS that receives results.")
    pacs_host: str = Field("127.0.0.1", description="Host name or address of the PACS.")
    pacs_port: int = Field(4242, ge=1, le=65535, description="DICOM port of the PACS.")
    send_max_retries: int = Field(8, ge=0, le=100, description="Retries of a transient send failure.")
    send_backoff_seconds: float = Field(5.0, gt=0, description="First retry delay; doubles each retry.")
    send_backoff_cap_seconds: float = Field(300.0, gt=0, description="Longest delay between retries.")

    # --- follow-up --------------------------------------------------------------------------------
    site_secret_file: Path | None = Field(
        None, description="Secret key of the prior-study index (HMAC of PatientID); generated when missing; "
                          "default <spool_dir>/secrets/site_secret."
    )

    # --- outputs -------------------------------------------------------------------------------
    uid_prefix: str = Field(
        "1.2.826.0.1.3680043.8.498.",
        description="UID root for derived output UIDs (ends with a dot; at most 40 characters).",
    )
    institution_name: str = Field("", description="Optional InstitutionName written in the outputs.")

    # --- logging -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = readable lines on a terminal, JSON lines otherwise (files, journald, Docker); "
                            "or json / console."
    )
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "CRITICAL", description="Level of the libraries' own log lines (pynetdicom, highdicom, pydicom); MarrowMap "
                                "logs every association, send failure and header repair itself. DEBUG to debug a peer."
    )

    # --- metrics and web status page ------------------------------------------------------------
    metrics_host: str = Field(
        "127.0.0.1", description="Address the Prometheus /metrics endpoints of listener and workers bind to."
    )
    listener_metrics_port: int = Field(
        9110, ge=0, le=65535, description="Port of the listener's /metrics (Prometheus); 0 = off."
    )
    worker_metrics_port: int = Field(
        9111, ge=0, le=65535,
        description="Port of a worker's /metrics (Prometheus); 0 = off. `marrowmap up` gives worker N port + N - 1.",
    )
    web_host: str = Field(
        "127.0.0.1", description="Address the web status page (`marrowmap web`) binds to; any other than loopback "
                                 "needs web_password_file (login)."
    )
    web_port: int = Field(8110, ge=0, le=65535, description="Port of the web status page; 0 = `up` starts none.")
    web_user: str = Field("marrowmap", min_length=1, description="Login name of the web status page.")
    web_password_file: Path | None = Field(
        None, description="File holding the web page's password (login required when set, and whenever "
                          "web_host is not loopback)."
    )

    @field_validator(
        "allowed_calling_aets", "route_modalities", "route_body_parts", "route_description_keywords",
        "route_sop_classes", mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("ae_title", "pacs_ae_title", "health_calling_ae")
    @classmethod
    def _ae(cls, value: str, info: Any) -> str:
        return _check_ae(value, info.field_name)

    @field_validator("allowed_calling_aets")
    @classmethod
    def _aes(cls, value: list[str]) -> list[str]:
        return [_check_allow_entry(v) for v in value]

    @field_validator("uid_prefix")
    @classmethod
    def _uid_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"([1-9][0-9]*|0)(\.([1-9][0-9]*|0))*\.", value) or len(value) > 40:
            raise ValueError("uid_prefix must be a dotted numeric UID root ending in '.', at most 40 characters")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return check_redis_url(value, "broker_url")

    @field_validator("job_store_url")
    @classmethod
    def _job_store_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value, "job_store_url")

    @field_validator("host", "pacs_host", "metrics_host", "web_host")
    @classmethod
    def _hosts(cls, value: str, info: Any) -> str:
        return check_host(value, info.field_name)

    @field_validator("audit_syslog_host")
    @classmethod
    def _optional_host(cls, value: str, info: Any) -> str:
        return check_host(value, info.field_name, empty_ok=True)

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if self.listener_tls and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError("listener_tls needs tls_cert_file and tls_key_file")
        if self.listener_tls_client_cert and (not self.listener_tls or self.tls_ca_file is None):
            raise ValueError("listener_tls_client_cert needs listener_tls and tls_ca_file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @model_validator(mode="after")
    def _backoff(self) -> Settings:
        if self.send_backoff_cap_seconds < self.send_backoff_seconds:
            raise ValueError("send_backoff_cap_seconds must be >= send_backoff_seconds")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # --- derived values ----------------------------------------------------------------------
    @property
    def audit_path(self) -> Path:
        """Where the audit trail is written."""
        return self.audit_file or self.spool_dir / "audit" / "audit.jsonl"

    @property
    def site_secret_path(self) -> Path:
        """Where the site secret of the prior-study index is kept."""
        return self.site_secret_file or self.spool_dir / "secrets" / "site_secret"

    @property
    def jobs_url(self) -> str:
        """Redis URL of the job store."""
        return self.job_store_url or self.broker_url

    def queue_name(self, base: str) -> str:
        """The broker queue for a base queue name of ``marrowmap.contract`` (with ``queue_prefix``)."""
        return f"{self.queue_prefix}{base}"

    @property
    def soft_time_limit_seconds(self) -> int:
        """Soft limit = 0.9 x hard limit (the task gets a chance to record its failure)."""
        return max(1, int(self.task_time_limit_seconds * 0.9))

    @property
    def visibility_timeout_seconds(self) -> int:
        """Redis visibility timeout > every hard limit and send backoff, or a task is delivered twice.

        Recovery from a lost worker does not wait for it: the listener re-delivers the jobs of a
        worker whose heartbeat stopped (``worker_lost_seconds``).
        """
        longest = max(self.task_time_limit_seconds, self.send_time_limit_seconds)
        return int(longest * 1.25) + int(self.send_backoff_cap_seconds) + 60

    @property
    def worker_lost_seconds(self) -> float:
        """A worker whose heartbeat is older than this is lost (three missed beats)."""
        return 3 * self.worker_heartbeat_seconds


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; raise SettingsError naming every bad setting and where it was set."""
    path = config_path()
    file_values = read_config_file(path) if path is not None else {}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(err, path, file_values, overrides) for err in exc.errors()]
        if len(problems) == 1:
            raise SettingsError(f"invalid setting: {problems[0]}") from None
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _describe(err: Any, path: Path | None, file_values: dict[str, Any], overrides: dict[str, Any]) -> str:
    """One line for one validation error: where the value came from, and what is wrong."""
    name = ".".join(str(p) for p in err["loc"]) or "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    variable = f"{ENV_PREFIX}{name.upper()}"
    if name in overrides:
        source = f"--{name.replace('_', '-')}"
    elif variable in os.environ:
        source = variable
    elif path is not None and name in file_values:
        line = _line_of(path, name)
        source = f"{path}{f' line {line}' if line else ''}"
    else:
        source = variable
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, sorted(Settings.model_fields), n=1, cutoff=0.75)
        message = "no such setting" + (f"; did you mean {close[0]}?" if close else "")
    return f"{source} ({name}): {message}"
