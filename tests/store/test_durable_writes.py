"""Durable writes: a page counted as stored survives the database being SIGKILLed right after."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from pipeline.api import Pipeline
from pipeline.connections import mongo_client
from pipeline.embedded.processes import ServiceProcess, start_mongo
from pipeline.settings import Settings
from tests.helpers import run_burst_worker
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths


async def _counted(redis: Redis, crawl_id: str) -> int:
    return int(await redis.hget(f"pipeline:crawl:{crawl_id}:stats", "stored") or 0)  # type: ignore[misc]


async def _documents(url: str, db: str, crawl_id: str) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=20_000)
    try:
        return [page["url"] for page in await client[db].pages.find({"crawl_id": crawl_id}, {"url": 1}).to_list()]
    finally:
        await client.close()


def test_every_write_waits_for_the_journal_unless_told_otherwise(settings: Settings) -> None:
    assert mongo_client(settings).write_concern.document == {"j": True}
    assert mongo_client(settings.replace(mongo={"journal": False})).write_concern.document == {"j": False}


@pytest.mark.slow
async def test_database_killed_mid_crawl_loses_no_page_counted_as_stored(settings: Settings, tmp_path: Path) -> None:
    mongo = await asyncio.to_thread(start_mongo, tmp_path / "db")
    holder: dict[str, ServiceProcess] = {"mongo": mongo}
    own = settings.replace(
        mongo={"url": mongo.url, "server_selection_timeout": 2.0},
        storage={"batch_delay_ms": 20.0},
        worker={"max_jobs": 40},
        fetch={"concurrency": 40},
    )
    config = SiteConfig(pages=300, per_list_page=100, latency_ms=30, latency_sigma=0.1)
    redis = Redis.from_url(own.redis.url)
    seen: dict[str, Any] = {}
    try:
        with ThreadedSite(config) as site:
            async with Pipeline(own) as pipeline:
                crawl_id = await pipeline.crawl(site.base_url + "/list")

            async def crash() -> None:
                while await _counted(redis, crawl_id) < 60:
                    await asyncio.sleep(0.01)
                holder["mongo"].kill()  # SIGKILL: no clean shutdown, no checkpoint
                seen["counted"] = await _counted(redis, crawl_id)
                holder["mongo"] = await asyncio.to_thread(start_mongo, tmp_path / "db", port=mongo.port)
                seen["there"] = await _documents(own.mongo.url, own.mongo.db, crawl_id)

            crash_task = asyncio.create_task(crash())
            await run_burst_worker(own, timeout=240)
            await crash_task
        async with Pipeline(own) as pipeline:
            status = await pipeline.status(crawl_id)
        stored = await _documents(own.mongo.url, own.mongo.db, crawl_id)
    finally:
        await redis.aclose()
        holder["mongo"].stop()
    # Everything counted before the crash was on disk when the server came back...
    assert 60 <= seen["counted"] <= len(seen["there"])
    # ...and the crawl went on to store every page exactly once.
    assert status.done and status.failed == 0
    assert status.stored == len(stored) == config.pages
    assert sorted(stored) == sorted(site.base_url + path for path in expected_child_paths(config))
