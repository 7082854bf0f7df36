"""The fleet's per-host state in Redis (`lua/host_permits.lua`), driven by two workers' clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pipeline.connections import redis_client
from pipeline.download.fleet_limits import FleetLimits, HostAsk, host_state_key
from pipeline.settings import Settings


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = redis_client(settings)
    yield client
    await client.aclose()


def fleet(redis: Redis, name: str, lease_s: float = 10.0, limit: int = 4) -> FleetLimits:
    return FleetLimits(
        redis,
        initial_limit=limit,
        min_limit=1,
        max_limit=8,
        lease_s=lease_s,
        max_start_wait_s=1.0,
        worker_id=name,
    )


async def test_permits_never_exceed_the_limit_and_come_back_when_returned(redis: Redis, settings: Settings) -> None:
    host = f"{settings.redis.queue}.example"
    a, b = fleet(redis, "a"), fleet(redis, "b")
    first = (await a.exchange({host: HostAsk(held=0, want=3)}))[host]
    second = (await b.exchange({host: HostAsk(held=0, want=3)}))[host]
    assert (first.granted, second.granted) == (3, 1)
    assert second.fleet_held == 4
    # b was refused: a hears of it, and a returning permits lets b have them.
    back = (await a.exchange({host: HostAsk(held=1)}))[host]
    assert back.contended and back.fleet_held == 2
    again = (await b.exchange({host: HostAsk(held=1, want=2)}))[host]
    assert again.granted == 2 and again.fleet_held == 4


async def test_a_lapsed_lease_gives_its_permits_back(redis: Redis, settings: Settings) -> None:
    host = f"{settings.redis.queue}.example"
    dead, alive = fleet(redis, "dead", lease_s=0.2), fleet(redis, "alive")
    assert (await dead.exchange({host: HostAsk(held=0, want=4)}))[host].granted == 4
    assert (await alive.exchange({host: HostAsk(held=0, want=4)}))[host].granted == 0
    await asyncio.sleep(0.3)  # `dead` never renews
    assert (await alive.exchange({host: HostAsk(held=0, want=4)}))[host].granted == 4
    assert int(await redis.hget(host_state_key(host), "held")) == 4  # type: ignore[misc]


async def test_one_agreed_limit_changed_only_from_what_was_seen(redis: Redis, settings: Settings) -> None:
    host = f"{settings.redis.queue}.example"
    a, b = fleet(redis, "a"), fleet(redis, "b")
    halved = (await a.exchange({host: HostAsk(held=0, seen=4, proposed=2)}))[host]
    assert halved.limit == 2
    # b halves the limit it last saw, as a did: the burst halves the limit once, not twice.
    stale = (await b.exchange({host: HostAsk(held=0, seen=4, proposed=2, want=4)}))[host]
    assert stale.limit == 2 and stale.granted == 2


async def test_a_pause_stops_every_worker(redis: Redis, settings: Settings) -> None:
    host = f"{settings.redis.queue}.example"
    a, b = fleet(redis, "a"), fleet(redis, "b")
    await a.exchange({host: HostAsk(held=0, pause_ms=500)})
    paused = (await b.exchange({host: HostAsk(held=0, want=1)}))[host]
    assert paused.granted == 0 and 0.3 < paused.paused_s <= 0.5


async def test_starts_are_spaced_fleet_wide_and_far_ones_only_on_demand(redis: Redis, settings: Settings) -> None:
    host = f"{settings.redis.queue}.example"
    a, b = fleet(redis, "a"), fleet(redis, "b")
    first = (await a.exchange({host: HostAsk(held=0, must=2, delay_ms=300)}))[host]
    assert first.reserved == 2
    assert first.next_free_at - first.first_start_at == pytest.approx(0.6, abs=0.05)
    # b's requests that may be deferred take starts only within the longest wait (1 s here).
    later = (await b.exchange({host: HostAsk(held=0, may=5, delay_ms=300)}))[host]
    assert later.reserved == 2
    assert later.first_start_at - first.first_start_at == pytest.approx(0.6, abs=0.05)
    assert later.next_free_at - first.first_start_at == pytest.approx(1.2, abs=0.05)


async def test_a_worker_leases_no_more_than_it_can_use(redis: Redis, settings: Settings) -> None:
    """A fleet-wide limit above a worker's concurrency is for several workers: one worker's
    requests beyond what it can run leave the other permits to the rest of the fleet."""
    from pipeline.download.host_limits import AdaptiveLimiter, AdaptiveSettings

    host = f"{settings.redis.queue}.wide.example"
    fixed = AdaptiveSettings(min_limit=4, max_limit=4, initial_limit=4)
    workers = [AdaptiveLimiter(2, fixed, fleet=fleet(redis, name, limit=4)) for name in ("small-a", "small-b")]
    running = {0: 0, 1: 0}
    peak = {0: 0, 1: 0}
    both_busy = asyncio.Event()
    release = asyncio.Event()

    async def request(worker: int) -> None:
        async with workers[worker].slot(host):
            running[worker] += 1
            peak[worker] = max(peak[worker], running[worker])
            if running[0] == 2 and running[1] == 2:
                both_busy.set()
            await release.wait()
            running[worker] -= 1

    # The first worker has three requests waiting for the host, more than its two slots.
    first = [asyncio.create_task(request(0)) for _ in range(3)]
    await asyncio.sleep(0.3)
    second = [asyncio.create_task(request(1)) for _ in range(2)]
    async with asyncio.timeout(5):
        await both_busy.wait()  # the second worker got the two permits the first could not use
    release.set()
    await asyncio.gather(*first, *second)
    assert peak == {0: 2, 1: 2}
