"""Server-side request forgery guard: which addresses the fetcher may connect to.

A crawler follows URLs written by strangers. Without this guard a page could send the worker to
`http://169.254.169.254/` (cloud credentials) or to services on the worker's own network. The
check runs on the *resolved* address of every connection (so DNS names pointing inwards are
caught) and on IP literals before any connection, for every redirect hop.

Through a proxy the worker never connects to the site: the proxy resolves the name and picks
the address, so no check here can be certain. What is still checked, for every request and hop
sent through a proxy: an IP-literal host must be public, and a name must not resolve *here* to
a non-public address (`GuardedResolver.check_name`); a name this worker cannot resolve is left
to the proxy. The proxies themselves are the crawl's configuration, not a stranger's: their
hosts are trusted (`trust_proxies`), so a proxy on the private network is reachable, and a
direct request to a proxy's host is checked as a proxied one is rather than let through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from pipeline.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# How long what a name resolves to here is believed (aiohttp's own DNS cache keeps names as long),
# for how many names, and how long a lookup may take before the name is left to the proxy.
NAME_TTL_S = 300.0
NAMES_KEPT = 10_000
LOOKUP_TIMEOUT_S = 5.0

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
    """Resolves like aiohttp's default resolver, then drops non-public addresses.

    One per worker, the resolver of its session: it also remembers which hosts are proxies
    (their addresses are never dropped) and what names resolve to for `check_name`.
    """

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private
        self._proxy_hosts: set[str] = set()
        self._names: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    def trust_proxies(self, hosts: Iterable[str]) -> None:
        """Let connections reach these proxy hosts whatever they resolve to (operator configuration)."""
        self._proxy_hosts.update(host.lower() for host in hosts)

    def is_proxy_host(self, host: str) -> bool:
        return host in self._proxy_hosts

    async def check_name(self, host: str) -> None:
        """Refuse `host` if it is, or resolves here to, a non-public address.

        For requests a proxy connects for: a name that does not resolve here (or not in time)
        passes, since the proxy resolves it on its own; each name's answer is kept for
        `NAME_TTL_S`. Nothing is refused with `fetch.allow_private_networks`.
        """
        if self._allow_private:
            return
        bare = host.strip("[]")
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            pass
        else:
            if not is_public_address(address):
                raise BlockedAddress(f"refused to connect to non-public address {address}")
            return
        now = time.monotonic()
        known = self._names.get(bare)
        if known is None or known[0] <= now:
            known = (now + NAME_TTL_S, await self._refusal(bare))
            self._names[bare] = known
            if len(self._names) > NAMES_KEPT:
                self._names.popitem(last=False)
        if known[1] is not None:
            raise BlockedAddress(known[1])

    async def _refusal(self, host: str) -> str | None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                results = await self._inner.resolve(host, 0, socket.AF_UNSPEC)
        except (OSError, TimeoutError):
            return None  # not known here: the proxy's resolver decides
        inward = sorted({r["host"] for r in results if not is_public_address(ipaddress.ip_address(r["host"]))})
        if not inward:
            return None
        return f"refused to connect to {host}: it resolves to non-public address {inward[0]}"

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private or host.lower() in self._proxy_hosts:
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
