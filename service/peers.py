"""Who may associate: the allow-list (``AE`` or ``AE@host``) checked on the peer's address.

An entry's host is an address, a CIDR network or a DNS name resolved once when the listener
starts. The checks, in order: the called AE must be ours; the calling AE must be listed;
a listed AE bound to hosts must come from one of them. The health-check AE may only come
from this host. Each refusal carries the A-ASSOCIATE-RJ codes of PS3.8 9.3.4 and a reason
for the log and the audit trail.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from marrowmap.settings import Settings, split_allow_entry

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_ANY_HOST = "0.0.0.0", "::", ""
_LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


class AllowListError(ValueError):
    """The allow-list cannot be used (a host name does not resolve, or it is empty but required)."""


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ Source."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason(IntEnum):
    """A-ASSOCIATE-RJ Reason/Diag. (values depend on the source; the ones we send)."""

    CALLING_AE_NOT_RECOGNISED = 3  # source: service user
    CALLED_AE_NOT_RECOGNISED = 7  # source: service user
    LOCAL_LIMIT_EXCEEDED = 2  # source: service provider (presentation)


@dataclass(frozen=True)
class Refusal:
    """Why an association request is rejected, and the codes sent to the peer."""

    reason: str
    result: RejectResult
    source: RejectSource
    diagnostic: RejectReason


def parse_address(text: str) -> Address:
    """The peer address of a socket (IPv4-mapped IPv6 addresses as IPv4)."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _networks(host: str) -> tuple[Network, ...]:
    try:
        return (ipaddress.ip_network(host, strict=False),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise AllowListError(f"allowed_calling_aets: host {host!r} does not resolve: {exc}") from exc
    return tuple(sorted({ipaddress.ip_network(str(parse_address(str(info[4][0])))) for info in infos}, key=str))


@dataclass(frozen=True)
class AllowList:
    """The calling AEs allowed to associate, each with the networks it may come from (empty = any)."""

    called_ae: str
    health_ae: str
    entries: dict[str, tuple[Network, ...]]
    local: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> AllowList:
        """Parse ``allowed_calling_aets`` and resolve its host names (once, now)."""
        if settings.require_allow_list and not settings.allowed_calling_aets:
            raise AllowListError(
                "require_allow_list is set but allowed_calling_aets is empty: refusing to accept studies from anyone"
            )
        entries: dict[str, list[Network]] = {}
        unbound: set[str] = set()
        for entry in settings.allowed_calling_aets:
            ae, host = split_allow_entry(entry)
            if host:
                entries.setdefault(ae, []).extend(_networks(host))
            else:
                unbound.add(ae)
                entries.setdefault(ae, [])
        local = _LOOPBACK if settings.host in _ANY_HOST else (*_LOOPBACK, *_networks(settings.host))
        return cls(
            called_ae=settings.ae_title,
            health_ae=settings.health_calling_ae,
            entries={ae: () if ae in unbound else tuple(nets) for ae, nets in entries.items()},
            local=local,
        )

    @property
    def is_open(self) -> bool:
        """True when anyone may associate (empty allow-list)."""
        return not self.entries

    def address_listed(self, address: Address) -> bool:
        """True when some association from this address could be accepted (capacity is kept for it)."""
        if self.is_open or _within(address, self.local):
            return True
        return any(not nets or _within(address, nets) for nets in self.entries.values())

    def check(self, calling_ae: str, called_ae: str, address: Address) -> Refusal | None:
        """None when the association may go on, else why not."""
        if called_ae != self.called_ae:
            return Refusal(f"called AE title {called_ae!r} is not ours ({self.called_ae})",
                           RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.CALLED_AE_NOT_RECOGNISED)
        if calling_ae == self.health_ae and calling_ae not in self.entries:
            if _within(address, self.local):
                return None
            return _calling(f"health-check AE title {calling_ae!r} from {address} (only from this host)")
        if self.is_open:
            return None
        nets = self.entries.get(calling_ae)
        if nets is None:
            return _calling(f"calling AE title {calling_ae!r} is not on the allow-list")
        if nets and not _within(address, nets):
            return _calling(f"calling AE title {calling_ae!r} is not allowed from {address}")
        return None


def _calling(reason: str) -> Refusal:
    return Refusal(reason, RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.CALLING_AE_NOT_RECOGNISED)


def capacity_refusal(limit: int) -> Refusal:
    """The transient rejection of a listed peer while ``max_associations`` are in use."""
    return Refusal(f"max_associations ({limit}) in use", RejectResult.TRANSIENT,
                   RejectSource.SERVICE_PROVIDER_PRESENTATION, RejectReason.LOCAL_LIMIT_EXCEEDED)


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
