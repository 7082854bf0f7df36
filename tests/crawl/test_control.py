"""Steering crawls against real Redis, SecantusDB, S3 and several arq workers: pause, resume,
cancel, retry, and a crawl whose start page fails saying why."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from pipeline.api import Pipeline
from pipeline.crawl.periodic import run_schedule
from pipeline.crawl.status import CrawlStatus, counters_add_up
from pipeline.errors import CrawlNotFound, InvalidTransition
from pipeline.schedule.frontier import Discovery, job_id
from pipeline.settings import ScheduleSpec, Settings
from pipeline.worker.queue import HELD_CRAWLS, job_record
from tests.helpers import StaticSite, crawl_to_completion, eventually, run_burst_worker, running_workers
from tests.servers.site import SiteConfig, ThreadedSite

# Slow enough that a crawl is still running when it is steered: two workers, four requests in
# flight each, 60 ms a page.
SLOW = SiteConfig(pages=240, per_list_page=60, latency_ms=60, latency_sigma=0.1, links_per_page=0)


def slow(settings: Settings, **crawl: Any) -> Settings:
    return settings.replace(
        fetch={"per_host": 4, "per_host_min": 4, "adaptive": False}, crawl=crawl, worker={"queue_read_limit": 30}
    )


async def _crawl_docs(settings: Settings, crawl_id: str) -> tuple[int, int, int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        return (
            await db.pages.count_documents({"crawl_id": crawl_id}),
            await db.failures.count_documents({"crawl_id": crawl_id, "kind": "page"}),
            await db.backlog.count_documents({"crawl_id": crawl_id}),
        )
    finally:
        await client.close()


def assert_adds_up(status: CrawlStatus) -> None:
    assert counters_add_up(status.counters), status.counters
    assert status.pending == 0


async def test_pause_holds_other_crawls_go_on_and_resume_completes(settings: Settings) -> None:
    settings = slow(settings)
    with ThreadedSite(SLOW) as site, ThreadedSite(SiteConfig(pages=30, latency_ms=2, links_per_page=0)) as other:
        async with Pipeline(settings) as pipeline, running_workers(settings, 2):
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            await eventually(lambda: _stored_at_least(pipeline, crawl_id, 20))
            paused = await pipeline.pause(crawl_id)
            assert paused.state == "paused"
            # What was running finishes; then nothing more of it starts.
            await eventually(lambda: _no_jobs_running(pipeline, crawl_id))
            held = await pipeline.status(crawl_id)
            hits = sum(site.site.hits.values())

            # Another crawl runs to the end meanwhile, though the paused one has far more jobs
            # queued than a worker reads from the head of the queue (queue_read_limit 30).
            assert held.counters["queued"] > 30
            other_id = await pipeline.crawl(other.base_url + "/list")
            other_done = await pipeline.wait(other_id, timeout=60)
            assert other_done.done and other_done.stored == 30

            still = await pipeline.status(crawl_id)
            assert still.state == "paused"
            assert still.stored == held.stored and sum(site.site.hits.values()) == hits
            assert still.stored < 240

            with pytest.raises(InvalidTransition, match="is paused: only a running crawl can be paused"):
                await pipeline.pause(crawl_id)
            resumed = await pipeline.resume(crawl_id)
            assert resumed.state == "running"
            done = await pipeline.wait(crawl_id, timeout=90)

    assert done.done and done.stored == 240 and done.failed == 0 and done.cancelled == 0
    assert_adds_up(done)
    assert (await _crawl_docs(settings, crawl_id))[:2] == (240, 0)
    assert site.site.duplicates() == 0


async def test_cancel_stops_every_worker_and_nothing_revives_it(settings: Settings) -> None:
    settings = slow(settings, max_queued=40)  # most URLs wait in the MongoDB backlog
    with ThreadedSite(SLOW) as site:
        async with Pipeline(settings) as pipeline, running_workers(settings, 2):
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            await eventually(lambda: _stored_at_least(pipeline, crawl_id, 20))
            status = await pipeline.cancel(crawl_id, timeout=30)
            assert status.state == "cancelled"
            hits = sum(site.site.hits.values())
            pages, failures, parked = await _crawl_docs(settings, crawl_id)

            # The workers are still polling: nothing of the crawl starts again.
            await asyncio.sleep(1.0)
            assert sum(site.site.hits.values()) == hits

            # A late re-run of one of its jobs (a lease that lapsed, a retry) does no work.
            redis = pipeline.control.frontier.redis
            url = site.base_url + "/page/0"
            late = job_id(crawl_id, "page", url)
            await redis.set("arq:retry:" + late, 1)
            await redis.psetex("arq:job:" + late, 60_000, job_record("fetch_page", [crawl_id, url, 1]))
            await redis.zadd(settings.redis.queue, {late: 0})
            await eventually(lambda: _gone(redis, settings.redis.queue, late))
            # Nor can its frontier be fed again.
            found = [Discovery(site.base_url + "/page/100000", "page", 1)]
            registered = await pipeline.control.frontier.register(crawl_id, found, max_pages=10**6, max_queued=10**6)
            assert registered.new_pages == 0
            after = await pipeline.status(crawl_id)
            leftovers = [k async for k in redis.scan_iter(match=f"arq:job:?:{crawl_id}:*")]
            queued = [m async for m, _ in redis.zscan_iter(settings.redis.queue, match=f"*:{crawl_id}:*")]
            held = await redis.hexists(HELD_CRAWLS, crawl_id)

    assert after.state == "cancelled" and after.counters == status.counters
    assert sum(site.site.hits.values()) == hits
    assert status.cancelled > 0 and status.stored >= 20
    assert status.discovered == status.stored + status.failed + status.cancelled
    assert_adds_up(status)
    assert (pages, failures, parked) == (status.stored, status.failed, 0)
    assert leftovers == [] and queued == [] and not held
    with pytest.raises(InvalidTransition, match="is cancelled"):
        async with Pipeline(settings) as pipeline:
            await pipeline.cancel(crawl_id)


async def test_retry_recovers_the_failures(settings: Settings) -> None:
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(10))
    pages = {"/list": f"<html><body>{links}</body></html>"}
    pages.update({f"/p/{i}": f"<html><title>{i}</title><body>page {i}</body></html>" for i in range(7)})
    async with StaticSite(pages) as site:
        first = await crawl_to_completion(settings, site.base_url + "/list")
        assert first.done and (first.stored, first.failed) == (7, 3)
        # The missing pages come back; a retry queues the three failures as fresh attempts.
        site.pages.update({f"/p/{i}": f"<html><body>back {i}</body></html>" for i in range(7, 10)})
        async with Pipeline(settings) as pipeline:
            retrying = await pipeline.retry(crawl_id := first.crawl_id)
            assert retrying.state == "running" and retrying.pending == 3 and retrying.failed == 0
            async with running_workers(settings, 2):
                done = await pipeline.wait(crawl_id, timeout=60)
            with pytest.raises(InvalidTransition, match="no recorded failures"):
                await pipeline.retry(crawl_id)
        hits = dict(site.hits)

    assert done.done and (done.stored, done.failed, done.discovered, done.counters["fetched"]) == (10, 0, 10, 10)
    assert_adds_up(done)
    assert await _crawl_docs(settings, crawl_id) == (10, 0, 0)
    assert all(hits[f"/p/{i}"] == (2 if i >= 7 else 1) for i in range(10))


async def test_a_refused_start_page_fails_the_crawl_with_the_reason(settings: Settings) -> None:
    guarded = settings.replace(fetch={"allow_private_networks": False})
    async with StaticSite({"/list": '<a href="/p">p</a>', "/p": "<p>p</p>"}) as site:
        status = await crawl_to_completion(guarded, site.base_url + "/list")
        assert status.state == "failed" and status.finished and not status.done
        assert status.error is not None and site.base_url + "/list" in status.error
        assert "non-public address" in status.error
        assert site.hits == {}
        # Allowed now, the retry walks the start page and the crawl ends done.
        async with Pipeline(settings) as pipeline:
            await pipeline.retry(status.crawl_id)
            await run_burst_worker(settings)
            done = await pipeline.status(status.crawl_id)
    assert done.done and done.error is None and done.stored == 1
    assert_adds_up(done)


async def test_unknown_ids_and_impossible_moves_are_refused(settings: Settings) -> None:
    async with StaticSite({"/list": "<p>nothing</p>"}) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
    async with Pipeline(settings) as pipeline:
        for action in (pipeline.pause, pipeline.resume, pipeline.cancel, pipeline.retry):
            with pytest.raises(CrawlNotFound, match="no crawl with id 'nope'"):
                await action("nope")
        with pytest.raises(InvalidTransition, match="is done: only a running crawl can be paused"):
            await pipeline.pause(status.crawl_id)
        with pytest.raises(InvalidTransition, match="is done: only a paused crawl can be resumed"):
            await pipeline.resume(status.crawl_id)
        with pytest.raises(InvalidTransition, match="is done: only a running or paused crawl can be cancelled"):
            await pipeline.cancel(status.crawl_id)
        with pytest.raises(InvalidTransition, match="no recorded failures"):
            await pipeline.retry(status.crawl_id)
        running = await pipeline.crawl(site.base_url + "/list")  # no worker: it stays running
        with pytest.raises(InvalidTransition, match="is running: only a finished"):
            await pipeline.retry(running)
        with pytest.raises(InvalidTransition, match="is running: only a paused crawl"):
            await pipeline.resume(running)
        cancelled = await pipeline.cancel(running, timeout=5)
        assert cancelled.state == "cancelled" and cancelled.counters["lists_cancelled"] == 1
        assert_adds_up(cancelled)


async def test_a_paused_schedule_skips_its_ticks(settings: Settings) -> None:
    spec = ScheduleSpec(name="news", cron="* * * * *", start_url="http://127.0.0.1:9/list")
    settings = dataclasses.replace(settings, schedules=(spec,))
    async with Pipeline(settings) as pipeline:
        store, frontier = pipeline.control.store, pipeline.control.frontier
        with pytest.raises(CrawlNotFound, match="no schedule named 'nope'"):
            await pipeline.pause_schedule("nope")
        with pytest.raises(InvalidTransition, match="is not paused"):
            await pipeline.resume_schedule("news")
        await pipeline.pause_schedule("news")
        with pytest.raises(InvalidTransition, match="already paused"):
            await pipeline.pause_schedule("news")
        assert await run_schedule(store, frontier, settings, spec) is None
        rows = await pipeline.schedules()
        assert rows[0]["paused"] and rows[0]["skipped"] == 1 and rows[0]["last_skip_reason"] == "the schedule is paused"
        await pipeline.resume_schedule("news")
        crawl_id = await run_schedule(store, frontier, settings, spec)
        assert crawl_id is not None
        await pipeline.cancel(crawl_id, timeout=5)


async def _stored_at_least(pipeline: Pipeline, crawl_id: str, count: int) -> bool:
    return (await pipeline.status(crawl_id)).stored >= count


async def _no_jobs_running(pipeline: Pipeline, crawl_id: str) -> bool:
    return await pipeline.running_jobs(crawl_id) == 0


async def _gone(redis: Redis, queue: str, job: str) -> bool:
    return await redis.zscore(queue, job) is None
