"""Server-side request forgery guard: which addresses the fetcher may connect to.

A crawler follows URLs written by strangers. Without this guard a page could send the worker to
`http://169.254.169.254/` (cloud credentials) or to services on the worker's own network. The
check runs on the *resolved* address of every connection (so DNS names pointing inwards are
caught) and on IP literals before any connection, for every redirect hop.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from pipeline.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Carrier-grade NAT and the IPv6 NAT64/IPv4-translated ranges are not flagged `is_private` by
# the standard library, yet they reach internal hosts.
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def is_public_address(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return not any(address in network for network in _EXTRA_BLOCKED)


def check_host(host: str, allow_private: bool) -> None:
    """Refuse an IP-literal host that is not public (names are checked when resolved)."""
    if allow_private:
        return
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not is_public_address(address):
        raise BlockedAddress(f"refused to connect to non-public address {address}")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops non-public addresses."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        allowed = [r for r in results if is_public_address(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise BlockedAddress(f"refused to connect to {host}: it resolves to non-public addresses only")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def blocked_cause(exc: BaseException) -> BlockedAddress | None:
    """The `BlockedAddress` behind an aiohttp connection error, if that is what it was."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedAddress):
            return current
        seen.add(id(current))
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return None
