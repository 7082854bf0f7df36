"""Per-host limits of a fleet of workers, measured by the site they crawl."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from pipeline.api import Pipeline
from pipeline.connections import redis_client
from pipeline.download.fleet_limits import host_state_key
from pipeline.settings import Settings
from tests.helpers import WorkerProcess, run_burst_worker
from tests.servers.site import SiteConfig, ThreadedSite

SLACK_S = 0.01  # the site's clock and the workers' event loops: a few ms either way


async def crawl_with_workers(settings: Settings, start_url: str, workers: int) -> None:
    async with Pipeline(settings) as pipeline:
        crawl_id = await pipeline.crawl(start_url)
        await asyncio.gather(*(run_burst_worker(settings) for _ in range(workers)))
        status = await pipeline.status(crawl_id)
    assert status.done and status.stored == status.discovered and status.failed == 0


async def test_three_workers_never_exceed_per_host_together(settings: Settings) -> None:
    config = SiteConfig(pages=24, per_list_page=24, latency_ms=100, latency_sigma=0.1, links_per_page=0)
    shared = settings.replace(fetch={"per_host": 4, "adaptive": False})
    with ThreadedSite(config) as site:
        await crawl_with_workers(shared, site.base_url + "/list", workers=3)
        peak, robots_reads = site.site.max_in_flight, site.site.hits["/robots.txt"]
    assert peak <= 4
    assert robots_reads == 1  # one read for the fleet
    # The same crawl with each worker keeping its own limit: the site sees them add up.
    alone = shared.replace(fetch={"shared_limits": False})
    with ThreadedSite(config) as site:
        await crawl_with_workers(alone, site.base_url + "/list", workers=3)
        assert site.site.max_in_flight > 4


async def test_per_host_delay_spaces_every_start_of_the_fleet(settings: Settings) -> None:
    config = SiteConfig(pages=12, per_list_page=12, latency_ms=20, latency_sigma=0.1, links_per_page=0)
    settings = settings.replace(fetch={"per_host_delay": 0.2})
    with ThreadedSite(config) as site:
        await crawl_with_workers(settings, site.base_url + "/list", workers=3)
        starts = [at for at, _ in site.site.requests]
    assert len(starts) == 14  # robots.txt, the list page, 12 pages
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.2 - SLACK_S, gaps


@pytest.mark.slow
async def test_a_killed_workers_permits_come_back(settings: Settings, tmp_path: Path) -> None:
    config = SiteConfig(pages=6, per_list_page=6, latency_ms=1500, latency_sigma=0.05, links_per_page=0)
    limits = {"PIPELINE_FETCH_PER_HOST": "2", "PIPELINE_FETCH_ADAPTIVE": "false", "PIPELINE_WORKER_LEASE": "2"}
    settings = settings.replace(fetch={"per_host": 2, "adaptive": False}, worker={"lease": 2.0})
    redis = redis_client(settings)
    try:
        with ThreadedSite(config) as site:
            async with Pipeline(settings) as pipeline:
                crawl_id = await pipeline.crawl(site.base_url + "/list")
                doomed = WorkerProcess(settings, tmp_path / "doomed.log", **limits)
                try:
                    async with asyncio.timeout(60):
                        while site.site.in_flight < 2 or site.site.hits["/list"] == 0:
                            await asyncio.sleep(0.05)
                finally:
                    doomed.kill()  # it holds both permits of the host, and never gives them back
                # Were the permits a counter, the host would stay full and this crawl never end.
                await run_burst_worker(settings, timeout=60)
                status = await pipeline.status(crawl_id)
            held = await redis.hget(host_state_key("127.0.0.1"), "held")  # type: ignore[misc]
    finally:
        await redis.aclose()
    assert status.done and status.stored == 6 and status.failed == 0
    assert held == b"0"  # the survivor gave its permits back as it stopped
