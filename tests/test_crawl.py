"""The fan-out crawl end to end: real site, arq workers, Redis, MongoDB and S3."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from pipeline.settings import Settings
from tests.helpers import crawl_to_completion
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths, flaky_paths, missing_paths


async def test_paginated_crawl_stores_every_page_once(settings: Settings, s3_client: Any) -> None:
    config = SiteConfig(pages=120, per_list_page=25, latency_ms=3, error_rate=0.05, missing_rate=0.04, seed=7)
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        hits = dict(site.site.hits)

    expected = {site.base_url + p for p in expected_child_paths(config) - missing_paths(config)}
    missing = {site.base_url + p for p in missing_paths(config)}
    assert status.done
    assert status.stored == len(expected)
    assert status.failed == len(missing)
    assert status.discovered == status.stored + status.failed
    assert status.counters["lists_done"] == config.list_pages

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        pages = await db.pages.find({"crawl_id": status.crawl_id}).to_list()
        failures = await db.failures.find({"crawl_id": status.crawl_id}).to_list()
        record = await db.crawls.find_one({"_id": status.crawl_id})
    finally:
        await client.close()

    assert {p["url"] for p in pages} == expected
    assert len(pages) == len(expected)  # one document per URL
    assert {f["url"] for f in failures} == missing
    assert all(f["status"] == 404 and f["error"] == "HTTP 404" for f in failures)
    assert record is not None and record["state"] == "done"
    assert record["counters"]["stored"] == len(pages)
    assert record["counters"]["failed"] == len(failures)

    page = next(p for p in pages if p["url"].endswith("/page/3"))
    assert page["title"] and page["description"] and page["language"] == "en"
    assert page["word_count"] > 100 and len(page["simhash"]) == 16 and page["top_words"]
    assert page["content_type"] == "text/html" and page["status"] == 200

    # Every body is in S3 under its sha256 key; identical bodies would share one object.
    listed = await s3_client.list_objects_v2(Bucket=settings.s3.bucket)  # type: ignore[attr-defined]
    keys = {o["Key"] for o in listed.get("Contents", [])}
    assert {p["blob_key"] for p in pages} <= keys
    body = await s3_client.get_object(Bucket=settings.s3.bucket, Key=page["blob_key"])  # type: ignore[attr-defined]
    assert len(await body["Body"].read()) == page["length"]

    # Every job left the queue with nothing of it behind (most were taken out by the frontier's
    # finish script, the last one by arq), and the backpressure count is back to zero.
    redis = Redis.from_url(settings.redis.url)
    try:
        assert await redis.zcard(settings.redis.queue) == 0
        leftovers = [key async for key in redis.scan_iter(match=f"arq:*:?:{status.crawl_id}:*")]
        queued = await redis.hget(f"pipeline:crawl:{status.crawl_id}:stats", "queued")
    finally:
        await redis.aclose()
    assert leftovers == []
    assert queued == b"0"

    # No page fetched twice unless a retry needed it (the flaky ones answered 503 first).
    flaky = flaky_paths(config)
    for path, count in hits.items():
        if path.startswith("/page/"):
            assert count == (2 if path in flaky else 1), path


async def test_discovery_never_floods_the_queue(settings: Settings) -> None:
    """The 200k-task backlog: a crawl keeps at most `max_queued` jobs in Redis, the rest in MongoDB."""
    import asyncio

    settings = settings.replace(crawl={"max_queued": 25}, worker={"max_jobs": 10})
    config = SiteConfig(pages=600, per_list_page=200, latency_ms=2, links_per_page=0)
    peak = 0

    async def sample(redis: Redis) -> None:
        nonlocal peak
        while True:
            peak = max(peak, int(await redis.zcard(settings.redis.queue)))
            await asyncio.sleep(0.005)

    redis = Redis.from_url(settings.redis.url)
    sampler = asyncio.create_task(sample(redis))
    try:
        with ThreadedSite(config) as site:
            status = await crawl_to_completion(settings, site.base_url + "/list")
        live = await redis.hmget(f"pipeline:crawl:{status.crawl_id}:stats", ["queued", "waiting"])
    finally:
        sampler.cancel()
        await redis.aclose()

    assert status.done and status.stored == 600
    assert 0 < peak <= 25
    assert live == [b"0", b"0"]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        assert await db.backlog.count_documents({}) == 0
        assert await db.pages.count_documents({"crawl_id": status.crawl_id}) == 600
    finally:
        await client.close()
