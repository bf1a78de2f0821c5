"""DICOM TLS contexts (standard library ``ssl``) for the listener, the sender and the health check.

TLS 1.2 or newer only, the library's default cipher suites (these include the BCP 195
suites dcmtk and Orthanc offer). Files are read when a context is built, so a missing or
unreadable file stops the component that needs it with a message naming the setting.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from marrowmap.settings import Settings


class TlsConfigError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the setting."""


def _load(context: ssl.SSLContext, settings: Settings, *, cert: bool, ca: bool) -> None:
    try:
        if cert and settings.tls_cert_file is not None and settings.tls_key_file is not None:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(_problem("tls_cert_file/tls_key_file", settings.tls_cert_file, exc)) from exc
    try:
        if ca and settings.tls_ca_file is not None:
            context.load_verify_locations(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(_problem("tls_ca_file", settings.tls_ca_file, exc)) from exc


def _problem(name: str, path: Path | None, exc: Exception) -> str:
    return f"MARROWMAP_{name.upper().replace('/', '/MARROWMAP_')} ({path}): {exc}"


def listener_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's server context, or None when ``listener_tls`` is off."""
    if not settings.listener_tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, settings, cert=True, ca=settings.listener_tls_client_cert)
    if settings.listener_tls_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: Settings, *, verify_server: bool = True) -> ssl.SSLContext:
    """A client context presenting our certificate (when set); checks the server against tls_ca_file.

    ``verify_server=False`` is for the health check, which talks to our own listener on loopback.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify_server:
        context.check_hostname = settings.pacs_tls_check_hostname
        if settings.tls_ca_file is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _load(context, settings, cert=True, ca=verify_server)
    return context


def peer_subject(sock: ssl.SSLSocket) -> str:
    """The common name of the peer's verified certificate, or "" when it sent none."""
    cert = sock.getpeercert()
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for attribute in rdn:
            if attribute[0] == "commonName":
                return str(attribute[1])
    return ""
