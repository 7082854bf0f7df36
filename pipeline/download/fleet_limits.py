"""Per-host limits kept in Redis for the whole fleet: permits, the agreed limit, pauses, start spacing.

Each worker's `AdaptiveLimiter` (`pipeline.download.host_limits`) asks here for what it lacks and
gives back what it no longer needs, for every host at once, in one script call per round
(`lua/host_permits.lua`). Permits are leased, not counted: a worker holds its permits of a host
under a lease it renews every `TICK_S`, and a worker that dies stops renewing, so its permits come
back to the fleet when the lease lapses.

Cost: a worker keeps the permits it holds while it has requests for the host, so a busy host
costs no round trip per request; requests that arrive together share one call, whatever their
hosts; idle permits go back at the next tick (or at once when another worker was refused one).
Start spacing (`fetch.per_host_delay`, Crawl-delay) needs the fleet's last start, so it costs one
call per batch of requests to a spaced host, which starts at most one request per delay anyway.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis

from pipeline.connections import read_script

__all__ = ["FleetLimits", "HostAsk", "HostGrant", "host_state_key"]

_PERMITS = read_script("pipeline.download", "host_permits.lua")

# Seconds between a worker's rounds for the hosts it holds permits of: the lease renewal, and how
# soon a limit or a Retry-After another worker set reaches a worker that needed nothing else.
TICK_S = 1.0
# Seconds an idle host's state is kept in Redis (its agreed limit, its last start).
IDLE_STATE_S = 3600.0
# A refusal marks its host as contended this long: holders then return idle permits at once
# and take no more than a fair share.
CONTENDED_S = 2.0


def host_state_key(host: str) -> str:
    return f"pipeline:host:{host}"


@dataclass(slots=True)
class HostAsk:
    """What one worker tells the fleet about one host in a round."""

    held: int  # permits it holds after this round's returns
    want: int = 0  # permits it asks for on top
    must: int = 0  # request starts to reserve however far ahead
    may: int = 0  # request starts to reserve only within the longest deferrable wait
    delay_ms: int = 0  # least ms between two starts
    seen: int = 0  # the limit a proposed change starts from
    proposed: int = 0  # a new limit (0: none)
    pause_ms: int = 0  # a Retry-After, from now
    tail_ms: int = 0  # how late this worker may start its last reserved request


class HostGrant(NamedTuple):
    """The fleet's answer for one host; times are on this worker's clock."""

    granted: int
    limit: int
    paused_s: float
    first_start_at: float  # the first reserved start
    reserved: int
    next_free_at: float  # the next start nobody has reserved yet
    contended: bool
    fleet_held: int


class FleetLimits:
    """One worker's side of the fleet's per-host state in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        initial_limit: int,
        min_limit: int,
        max_limit: int,
        lease_s: float,
        max_start_wait_s: float,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker_id = worker_id or uuid.uuid4().hex
        self._clock = clock
        # The Redis server's clock minus ours, from the quickest recent round (see `_learn_offset`).
        self._offset: float | None = None
        self._offset_rtt = 0.0
        self._offset_at = 0.0
        self._script = redis.register_script(_PERMITS)
        self._fixed: list[int | str] = [
            self.worker_id,
            int(lease_s * 1000),
            int(max(IDLE_STATE_S, lease_s * 3) * 1000),
            initial_limit,
            min_limit,
            max_limit,
            int(max_start_wait_s * 1000),
            int(CONTENDED_S * 1000),
        ]
        self.round_trips = 0

    async def exchange(self, asks: dict[str, HostAsk]) -> dict[str, HostGrant]:
        """One round for every host in `asks`: returns, requests, reservations, proposals."""
        if not asks:
            return {}
        keys: list[str] = []
        args: list[int | str] = list(self._fixed)
        for host, ask in asks.items():
            state = host_state_key(host)
            keys += [state, state + ":leases"]
            args += [ask.held, ask.want, ask.must, ask.may, ask.delay_ms, ask.seen, ask.proposed, ask.pause_ms]
            args.append(ask.tail_ms)
        self.round_trips += 1
        sent = self._clock()
        replies = await self._script(keys=keys, args=args)
        offset = self._learn_offset(sent, self._clock(), int(replies[0][8]) / 1000)
        return {
            host: HostGrant(
                int(r[0]),
                int(r[1]),
                int(r[2]) / 1000,
                int(r[3]) / 1000 - offset,
                int(r[4]),
                int(r[5]) / 1000 - offset,
                bool(int(r[6])),
                int(r[7]),
            )
            for host, r in zip(asks, replies, strict=True)
        }

    def _learn_offset(self, sent: float, received: float, server_now: float) -> float:
        """The server's clock minus ours, judged from rounds that came back quickly.

        A reserved start is a time on the server's clock. Turned into ours by the reply's arrival,
        it would be late by however long this event loop took to look at the reply, and a request
        started late leaves less than the delay before the next worker's. So the offset comes
        from the round with the shortest round trip lately, whose midpoint is within half of it.
        """
        rtt = received - sent
        if self._offset is None or rtt <= 2 * self._offset_rtt + 0.001 or received - self._offset_at > 10.0:
            self._offset = server_now - (sent + received) / 2
            self._offset_rtt, self._offset_at = rtt, received
        return self._offset
