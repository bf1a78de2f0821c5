"""Structured logging (structlog over the standard library), configured once at the entry point.

Readable lines for a person at a terminal, JSON lines for everything else (files, journald,
Docker), unless ``log_format`` says otherwise. The libraries' own log lines (pynetdicom,
highdicom, pydicom) are held back to ``library_log_level``: MarrowMap logs every association,
send failure and header repair itself, and pynetdicom at DEBUG/INFO shows data set contents.

Log UIDs, AE titles, counts and timings; never PatientName, PatientID or other identity.
"""

from __future__ import annotations

import logging
import sys

import structlog

#: Loggers of the libraries whose lines ``library_log_level`` holds back.
LIBRARY_LOGGERS = ("pynetdicom", "highdicom", "pydicom")


def resolve_format(fmt: str) -> str:
    """``auto`` -> ``console`` when stderr is a terminal, else ``json``; other values unchanged."""
    if fmt != "auto":
        return fmt
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(level: str = "INFO", fmt: str = "auto", library_level: str = "CRITICAL") -> None:
    """Route stdlib and structlog records through one renderer on stderr."""
    console = resolve_format(fmt) == "console"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()) if console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S" if console else "iso", utc=not console),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger for a module."""
    return structlog.stdlib.get_logger(name)
