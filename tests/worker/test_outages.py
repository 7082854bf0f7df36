"""Our own services failing mid-crawl: Redis restarted, MongoDB or S3 unreachable for 10 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.embedded.processes import ServiceProcess, start_redis
from pipeline.settings import Settings
from tests.helpers import run_burst_worker
from tests.servers.outage_proxy import OutageProxy
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths

pytestmark = pytest.mark.slow


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def _stored(settings: Settings, crawl_id: str) -> int:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url, serverSelectionTimeoutMS=500)
    try:
        return await client[settings.mongo.db].pages.count_documents({"crawl_id": crawl_id})
    except Exception:  # noqa: BLE001 - unreachable on purpose during the outage
        return 0
    finally:
        await client.close()


async def _crawl_through_outage(settings: Settings, direct: Settings, outage: Any, s3_client: Any) -> None:
    """Crawl, run `outage()` once 30 pages are stored, check the crawl completes intact."""
    config = SiteConfig(pages=200, per_list_page=100, latency_ms=60, latency_sigma=0.1)
    with ThreadedSite(config) as site:
        async with Pipeline(direct) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")

        async def trigger() -> None:
            while await _stored(direct, crawl_id) < 30:
                await asyncio.sleep(0.05)
            await outage()

        trigger_task = asyncio.create_task(trigger())
        await run_burst_worker(settings, timeout=180)
        await trigger_task
        hits = dict(site.site.hits)
    async with Pipeline(direct) as pipeline:
        status = await pipeline.status(crawl_id)
        pages = await pipeline.pages(crawl_id)
    expected = {site.base_url + p for p in expected_child_paths(config)}
    assert status.done and status.failed == 0 and status.stored == len(expected)
    assert sorted(p["url"] for p in pages) == sorted(expected)
    listed = await s3_client.list_objects_v2(Bucket=direct.s3.bucket)
    assert {o["Key"] for o in listed.get("Contents", [])} == {p["blob_key"] for p in pages}
    # Refetching is allowed only for pages whose store failed during the outage.
    assert all(n <= 3 for n in hits.values())


async def test_mongodb_unreachable_for_ten_seconds(settings: Settings, s3_client: Any) -> None:
    with OutageProxy(_port(settings.mongo.url)) as proxy:
        through = settings.replace(
            mongo={"url": f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true", "server_selection_timeout": 2.0},
            worker={"max_jobs": 20},
            fetch={"concurrency": 20},
        )

        async def outage() -> None:
            proxy.down()
            await asyncio.sleep(10)
            proxy.up()

        await _crawl_through_outage(through, settings, outage, s3_client)


async def test_s3_unreachable_for_ten_seconds(settings: Settings, s3_client: Any) -> None:
    with OutageProxy(_port(settings.s3.endpoint_url)) as proxy:
        through = settings.replace(
            s3={"endpoint_url": f"http://127.0.0.1:{proxy.port}"}, worker={"max_jobs": 20}, fetch={"concurrency": 20}
        )

        async def outage() -> None:
            proxy.down()
            await asyncio.sleep(10)
            proxy.up()

        await _crawl_through_outage(through, settings, outage, s3_client)


async def test_redis_restarted_mid_crawl(settings: Settings, s3_client: Any, tmp_path: Path) -> None:
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", persistent=True)
    holder: dict[str, ServiceProcess] = {"redis": redis}
    try:
        own = settings.replace(redis={"url": redis.url}, worker={"max_jobs": 20}, fetch={"concurrency": 20})

        async def restart() -> None:
            holder["redis"].stop()  # SIGTERM: Redis writes its append-only file and exits
            await asyncio.sleep(3)
            started = time.monotonic()
            holder["redis"] = await asyncio.to_thread(
                start_redis, tmp_path / "redis", persistent=True, port=_port(redis.url)
            )
            assert time.monotonic() - started < 10

        await _crawl_through_outage(own, own, restart, s3_client)
    finally:
        holder["redis"].stop()
