"""Crashes and shutdowns: nothing lost, nothing stored twice.

Workers here are real `arq pipeline.WorkerSettings` processes, killed or stopped with signals.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.settings import Settings
from tests.helpers import WorkerProcess, stored_count
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths

pytestmark = pytest.mark.slow


async def wait_until(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)


async def assert_each_page_once(settings: Settings, crawl_id: str, expected: set[str], s3_client: Any) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        pages = await client[settings.mongo.db].pages.find({"crawl_id": crawl_id}).to_list()
    finally:
        await client.close()
    assert sorted(p["url"] for p in pages) == sorted(expected)
    listed = await s3_client.list_objects_v2(Bucket=settings.s3.bucket)
    assert {o["Key"] for o in listed.get("Contents", [])} == {p["blob_key"] for p in pages}


async def test_killed_worker_jobs_run_again_within_the_lease(
    settings: Settings, s3_client: Any, tmp_path: Path
) -> None:
    config = SiteConfig(pages=240, per_list_page=80, latency_ms=400, latency_sigma=0.1)
    env = {"PIPELINE_FETCH_CONCURRENCY": "24", "PIPELINE_WORKER_MAX_JOBS": "24", "PIPELINE_WORKER_LEASE": "6"}
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            doomed = WorkerProcess(settings, tmp_path / "doomed.log", **env)
            try:
                await wait_until(lambda: _at_least(settings, crawl_id, 40), timeout=60)
            finally:
                doomed.kill()  # SIGKILL: no cleanup, its running jobs keep their in-progress keys
            killed_at = time.monotonic()
            survivor = WorkerProcess(settings, tmp_path / "survivor.log", **env)
            try:
                # Without leases the killed jobs would wait out arq's 310 s in-progress TTL.
                status = await pipeline.wait(crawl_id, timeout=60)
                recovery = time.monotonic() - killed_at
            finally:
                code, log = await survivor.stop()
            assert code == 0, log
        hits = dict(site.site.hits)

    expected = {site.base_url + p for p in expected_child_paths(config)}
    assert status.done and status.stored == len(expected) and status.failed == 0
    assert recovery < 60
    await assert_each_page_once(settings, crawl_id, expected, s3_client)
    refetched = [p for p, n in hits.items() if p.startswith("/page/") and n > 1]
    assert len(refetched) <= 24  # only the jobs that were running when the worker died
    assert all(n <= 2 for n in hits.values())


async def _at_least(settings: Settings, crawl_id: str, count: int) -> bool:
    return await stored_count(settings, crawl_id) >= count


async def test_sigterm_finishes_running_jobs_and_exits_cleanly(
    settings: Settings, s3_client: Any, tmp_path: Path
) -> None:
    config = SiteConfig(pages=160, per_list_page=80, latency_ms=600, latency_sigma=0.1)
    env = {"PIPELINE_FETCH_CONCURRENCY": "16", "PIPELINE_WORKER_MAX_JOBS": "16"}
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            worker = WorkerProcess(settings, tmp_path / "first.log", **env)
            await wait_until(lambda: _at_least(settings, crawl_id, 20), timeout=60)
            code, log = await worker.stop()
            assert code == 0, log
            assert "Traceback" not in log
            stopped_with = await stored_count(settings, crawl_id)
            assert not (await pipeline.status(crawl_id)).done

            second = WorkerProcess(settings, tmp_path / "second.log", **env)
            try:
                status = await pipeline.wait(crawl_id, timeout=90)
            finally:
                await second.stop()
        hits = dict(site.site.hits)

    expected = {site.base_url + p for p in expected_child_paths(config)}
    assert stopped_with < len(expected)
    assert status.done and status.stored == len(expected)
    await assert_each_page_once(settings, crawl_id, expected, s3_client)
    # The grace period let running jobs finish: nothing was fetched twice.
    assert all(n == 1 for p, n in hits.items() if p.startswith("/page/")), hits


async def test_killed_cpu_process_is_replaced_and_its_jobs_retried(settings: Settings) -> None:
    import os
    import signal as signals

    from pipeline.worker.settings import build_worker

    config = SiteConfig(pages=150, per_list_page=150, latency_ms=20)
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            worker = build_worker(settings, handle_signals=False)
            running = asyncio.create_task(worker.async_run())
            try:
                await wait_until(lambda: _at_least(settings, crawl_id, 20), timeout=60)
                cpu = worker.ctx["pipeline"].cpu
                victims = cpu.pids()
                assert victims
                for victim in victims:
                    os.kill(victim, signals.SIGKILL)
                status = await pipeline.wait(crawl_id, timeout=60)
                rebuilds = cpu.rebuilds
            finally:
                await worker.close()
                running.cancel()
    assert status.done and status.failed == 0 and status.stored == config.pages
    assert rebuilds >= 1


async def test_claim_orphaned_before_its_lease_runs_again_soon(settings: Settings) -> None:
    """A worker killed between arq's claim and its first lease leaves a claim with arq's long TTL."""
    from redis.asyncio import Redis

    from pipeline.schedule.frontier import job_id
    from pipeline.worker.settings import arq_claim_ttl
    from tests.helpers import StaticSite, run_burst_worker

    settings = settings.replace(worker={"lease": 3.0})
    async with StaticSite({"/list": "<a href='/a'>a</a>", "/a": "a"}) as site, Pipeline(settings) as pipeline:
        start = site.base_url + "/list"
        crawl_id = await pipeline.crawl(start)
        redis = Redis.from_url(settings.redis.url)
        try:
            # As a dead worker's claim looks five seconds after it died.
            ttl_ms = int((arq_claim_ttl(settings) - 5) * 1000)
            await redis.set("arq:in-progress:" + job_id(crawl_id, "list", start), b"1", px=ttl_ms)
        finally:
            await redis.aclose()
        await run_burst_worker(settings, timeout=30)  # without the lease it would wait ~5 min
        status = await pipeline.status(crawl_id)
    assert status.done and status.stored == 1


@pytest.mark.parametrize("moment", ["just claimed", "running"])
async def test_closing_a_worker_with_a_job_in_hand_shuts_it_down_cleanly(settings: Settings, moment: str) -> None:
    """A job cancelled before arq's `run_job` reaches its function makes arq's own close raise
    CancelledError, before its `on_shutdown` has closed anything."""
    from arq import create_pool

    from pipeline.worker.queue import arq_redis_settings
    from pipeline.worker.serialization import deserialize, serialize
    from pipeline.worker.settings import build_worker

    settings = settings.replace(worker={"functions": ["tests.completion_jobs:wait_forever"]})
    queue = await create_pool(arq_redis_settings(settings), job_serializer=serialize, job_deserializer=deserialize)
    worker = build_worker(settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    try:
        job = await queue.enqueue_job("wait_forever", _queue_name=settings.redis.queue)
        assert job is not None
        async with asyncio.timeout(20):
            while not worker.tasks:
                await asyncio.sleep(0)  # close the moment the claim is made: run_job is reading the job
            if moment == "running":
                while not await queue.exists(f"test:started:{job.job_id}"):
                    await asyncio.sleep(0.02)
        await worker.close()
        assert "pipeline" not in worker.ctx  # on_shutdown ran and released the resources
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await queue.aclose()
