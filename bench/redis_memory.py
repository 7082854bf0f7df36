"""Redis bytes per discovered URL: `python -m bench.redis_memory [--urls 100000,1000000]`.

Registers N realistic URLs through the pipeline's own frontier (`Frontier.register`, the Lua
script a crawl runs for every page, in batches of a page's worth of links) into a fresh Redis,
and reads what the crawl's seen-set costs: `MEMORY USAGE` of its keys and the server's
`used_memory` before and after, per URL. Beside it, in the same server, the same URLs stored
the way the seen-set used to hold them (one hash, the whole URL as the field) as the reference.
No queue is written (every URL is parked, as a crawl far past `max_queued` parks them), so the
figures are the seen-set's alone. Prints one JSON line per N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.report import machine, source, versions

LINKS_PER_PAGE = 100
_WORDS = (
    "library reference tutorial howto install config api guide asyncio typing collections itertools "
    "functools pathlib logging unittest datetime concurrency networking security database http json "
    "parser stream buffer socket process thread queue event loop task future client server module"
).split()


def realistic_urls(count: int, seed: int = 0) -> Iterator[str]:
    """Distinct URLs shaped like a documentation site's (about 60-90 characters each)."""
    rng = random.Random(seed)
    for index in range(count):
        section, topic = rng.choice(_WORDS), rng.choice(_WORDS)
        yield f"https://docs.example.org/en/3.{index % 14}/{section}/{topic}-{rng.choice(_WORDS)}-{index}.html"


async def _used_memory(redis: Any) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def _key_bytes(redis: Any, pattern: str) -> tuple[int, int]:
    """MEMORY USAGE summed over the keys matching `pattern`, and how many keys."""
    total = keys = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        total += int(await redis.memory_usage(key, samples=0) or 0)
        keys += 1
    return total, keys


async def measure(url: str, count: int) -> dict[str, Any]:
    from redis.asyncio import Redis

    from pipeline.schedule.frontier import Discovery, Frontier

    redis = Redis.from_url(url)
    try:
        await redis.flushall()
        frontier = Frontier(redis, "bench:memory:queue")
        crawl_id = f"memory{count}"
        await frontier.create(crawl_id, {"max_pages": count, "max_queued": 10})
        before = await _used_memory(redis)
        batch: list[Discovery] = []
        for link in realistic_urls(count):
            batch.append(Discovery(link, "page", 1))
            if len(batch) == LINKS_PER_PAGE:
                await frontier.register(crawl_id, batch, max_pages=count, max_queued=0)
                batch = []
        if batch:
            await frontier.register(crawl_id, batch, max_pages=count, max_queued=0)
        after = await _used_memory(redis)
        seen_bytes, buckets = await _key_bytes(redis, f"pipeline:crawl:{crawl_id}:seen:*")
        counters = await frontier.counters(crawl_id)
        # The reference: the whole URL as the field of one hash, as the seen-set used to be.
        reference_key = f"bench:memory:urls:{count}"
        ref_before = await _used_memory(redis)
        links = list(realistic_urls(count))
        for start in range(0, count, 1000):
            await redis.hset(reference_key, mapping=dict.fromkeys(links[start : start + 1000], "w"))
        ref_after = await _used_memory(redis)
        ref_bytes = int(await redis.memory_usage(reference_key, samples=0) or 0)
        server = await redis.info("server")
        await redis.flushall()
    finally:
        await redis.aclose()
    return {
        "urls": count,
        "discovered": counters.get("discovered"),
        "mean_url_chars": round(sum(map(len, links)) / count, 1),
        "seen_buckets": buckets,
        "seen_bytes_per_url": round(seen_bytes / count, 1),
        "used_memory_bytes_per_url": round((after - before) / count, 1),
        "whole_url_hash_bytes_per_url": round(ref_bytes / count, 1),
        "whole_url_used_memory_bytes_per_url": round((ref_after - ref_before) / count, 1),
        "projected_mb_for_10m_urls": round(seen_bytes / count * 10_000_000 / 1e6, 1),
        "redis_server": server.get("redis_version"),
        "source": source(),
        "machine": machine(),
        "versions": {key: versions()[key] for key in ("pipeline", "redis", "redis-server")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.embedded.processes import start_redis

    parser = argparse.ArgumentParser(prog="python -m bench.redis_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--urls", default="100000", help="comma-separated URL counts, e.g. 100000,1000000")
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.urls.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        server = start_redis(Path(folder), persistent=False)
        try:
            for count in counts:
                print(json.dumps(asyncio.run(measure(server.url, count))), flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
