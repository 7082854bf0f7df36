"""Host-aware scheduling: jobs for a host at its limit give their slots back to other hosts' jobs."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.api import Pipeline
from pipeline.settings import Settings
from pipeline.worker.settings import build_worker
from tests.servers.site import SiteConfig, ThreadedSite


def page_times(site: ThreadedSite) -> list[float]:
    return [at for at, path in site.site.requests if path.startswith("/page/")]


@pytest.mark.parametrize("shared", [True, False], ids=["fleet", "worker"])
async def test_a_slow_host_at_its_limit_leaves_the_slots_to_a_fast_one(settings: Settings, shared: bool) -> None:
    # One request in flight per host; the slow host takes a second per page.
    settings = settings.replace(
        fetch={"per_host": 1, "per_host_min": 1, "adaptive": False, "shared_limits": shared}, worker={"max_jobs": 4}
    )
    slow_config = SiteConfig(pages=8, per_list_page=8, latency_ms=1000, latency_sigma=0.01, links_per_page=0)
    fast_config = SiteConfig(pages=30, per_list_page=30, latency_ms=10, latency_sigma=0.1, links_per_page=0)
    with ThreadedSite(slow_config, host="127.0.0.2") as slow, ThreadedSite(fast_config) as fast:
        async with Pipeline(settings) as pipeline:
            worker = build_worker(settings, handle_signals=False)
            running = asyncio.create_task(worker.async_run())
            try:
                slow_id = await pipeline.crawl(slow.base_url + "/list")
                async with asyncio.timeout(30):  # the slow host's pages are queued first
                    while (await pipeline.status(slow_id)).discovered < slow_config.pages:
                        await asyncio.sleep(0.05)
                fast_id = await pipeline.crawl(fast.base_url + "/list")
                fast_done = await pipeline.wait(fast_id, timeout=60, poll_interval=0.1)
            finally:
                await worker.close()
                running.cancel()
        fast_pages, slow_pages = page_times(fast), page_times(slow)
    assert fast_done.stored == 30 and fast_done.failed == 0
    # Measured by the sites: every fast page was served while the slow host served a page or two.
    # Were the slow host's jobs waiting in the 4 slots, the fast pages would start only once the
    # queue ahead of them (all 8 slow pages) was down to the last 3.
    served_meanwhile = sum(1 for at in slow_pages if at <= max(fast_pages))
    assert served_meanwhile <= 3, served_meanwhile
