"""Adaptive per-host concurrency against a site that answers 429 above N requests in flight."""

from __future__ import annotations

import asyncio

from pipeline.api import Pipeline
from pipeline.settings import Settings
from pipeline.worker.settings import build_worker
from tests.servers.site import SiteConfig, ThreadedSite


async def test_limit_settles_near_what_the_site_allows(settings: Settings) -> None:
    allowed = 6
    settings = settings.replace(
        fetch={"concurrency": 50, "per_host": 32, "per_host_initial": 16, "per_host_min": 2},
        worker={"max_jobs": 50, "max_tries": 10},
    )
    config = SiteConfig(pages=300, per_list_page=300, latency_ms=25, latency_sigma=0.2, concurrency_limit=allowed)
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            worker = build_worker(settings, handle_signals=False)
            running = asyncio.create_task(worker.async_run())
            try:
                status = await pipeline.wait(crawl_id, timeout=120)
                limit = worker.ctx["pipeline"].limiter.limits()["127.0.0.1"]
                await asyncio.sleep(2.5)  # the worker publishes its limits every 2 s
                shown = (await pipeline.status(crawl_id)).host_limits
            finally:
                await worker.close()
                running.cancel()
        rejected, peak = site.site.rejected, site.site.max_in_flight
    assert status.done and status.stored == config.pages and status.failed == 0
    assert allowed // 2 <= limit <= allowed + 2
    assert shown == {"127.0.0.1": limit}
    assert rejected < config.pages // 4  # it learnt the limit, it did not keep hammering
    assert peak <= allowed
