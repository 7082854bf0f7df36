"""A crawl's seen-set: digests in compact buckets that split as it grows, ~20 B of Redis per URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bench.redis_memory import realistic_urls
from pipeline.embedded.processes import ServiceProcess
from pipeline.schedule.frontier import Discovery, Frontier

URLS = 10_000


@pytest.fixture
async def redis(redis_server: ServiceProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    keys = [key async for key in client.scan_iter(match="pipeline:crawl:seen-*")]
    keys += [key async for key in client.scan_iter(match="arq:job:p:seen-*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _seen_keys(redis: Redis, crawl_id: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"pipeline:crawl:{crawl_id}:seen:*")]


@pytest.mark.parametrize("urls", [2_000, URLS])
async def test_seen_set_stores_digests_in_at_most_32_bytes_per_url(redis: Redis, urls: int) -> None:
    frontier = Frontier(redis, "test:seen:queue")
    crawl_id = f"seen-size-{urls}"
    links = [Discovery(url, "page", 1) for url in realistic_urls(urls)]
    await frontier.create(crawl_id, {"max_pages": 10_000_000, "max_queued": 10})
    for start in range(0, urls, 100):
        await frontier.register(crawl_id, links[start : start + 100], max_pages=10_000_000, max_queued=0)
    keys = await _seen_keys(redis, crawl_id)
    used = sum([int(await redis.memory_usage(key, samples=0) or 0) for key in keys])
    sizes = [int(await redis.hlen(key)) for key in keys]  # type: ignore[misc]
    fields = [field for key in keys for field in await redis.hkeys(key)]  # type: ignore[misc]
    # Known to this process or not, every URL is found again (a fresh frontier, as another worker).
    again = await Frontier(redis, "test:seen:queue").register(crawl_id, links[::97], max_pages=10_000_000, max_queued=0)
    counters = await frontier.counters(crawl_id)
    assert counters["discovered"] == counters["waiting"] == urls
    assert "seen_level" not in counters and "seen_split" not in counters
    assert len(fields) == urls and all(len(field) == 12 for field in fields)  # digests, not URLs
    assert again.new_pages == 0 and len(again.parked) == len(links[::97])
    # However large max_pages is, the buckets follow what the crawl holds, and stay compact.
    assert urls / 40 <= len(keys) <= urls / 20 and max(sizes) < 128
    assert used / urls <= 32, f"{used / urls:.1f} bytes per URL"


async def test_parked_urls_are_promoted_and_settled_once_after_the_buckets_split(redis: Redis) -> None:
    """Promote and finish find every member where register put it, however often buckets split since."""
    frontier = Frontier(redis, "test:seen:queue")
    crawl_id = "seen-splits"
    links = [Discovery(url, "page", 1) for url in realistic_urls(3_000, seed=1)]
    await frontier.create(crawl_id, {"max_pages": 100_000, "max_queued": 100})
    first = await frontier.register(crawl_id, links[:50], max_pages=100_000, max_queued=0)
    for start in range(50, len(links), 100):  # the buckets split many times meanwhile
        await frontier.register(crawl_id, links[start : start + 100], max_pages=100_000, max_queued=0)
    promoted, examined = await frontier.promote(crawl_id, first.parked, max_queued=100)
    again, _ = await frontier.promote(crawl_id, first.parked, max_queued=100)
    settled = [
        await frontier.finish(crawl_id, "page", item.url, stored=True, fetched=True, retries=0)
        for item in first.parked + first.parked
    ]
    counters = await frontier.counters(crawl_id)
    await redis.delete(f"{frontier.queue_name}")
    assert len(first.parked) == promoted == examined == 50 and again == 0
    assert [s.changed for s in settled] == [True] * 50 + [False] * 50
    assert counters["stored"] == 50 and counters["pending"] == len(links) - 50
    assert len(await _seen_keys(redis, crawl_id)) >= 64
