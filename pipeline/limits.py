"""Concurrency limits on outgoing requests: one global, one per host.

The global limit protects the worker (sockets, memory); the per-host limit protects each site
from us. Per-host semaphores exist only while a request to that host is running or waiting, so
a crawl over millions of hosts does not grow a map forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class _HostSlot:
    semaphore: asyncio.Semaphore
    users: int = 0


class HostLimiter:
    """At most `total` requests in flight overall and `per_host` to any one host."""

    def __init__(self, total: int, per_host: int) -> None:
        self.total = total
        self.per_host = per_host
        self._global = asyncio.Semaphore(total)
        self._hosts: dict[str, _HostSlot] = {}
        self.in_flight = 0
        self.peak_in_flight = 0

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one request slot for `host` (waiting for the host first, then the global pool)."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _HostSlot(asyncio.Semaphore(self.per_host))
        entry.users += 1
        try:
            # Host first: a request waiting on a busy host must not hold a global slot that
            # requests to idle hosts could use.
            async with entry.semaphore, self._global:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    yield
                finally:
                    self.in_flight -= 1
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[host]

    def hosts_tracked(self) -> int:
        return len(self._hosts)
