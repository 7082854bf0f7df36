"""Replays: a crawl's stored pages parsed and crunched again from their bodies, nothing requested."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from pipeline.api import Pipeline
from pipeline.crawl.status import counters_add_up
from pipeline.errors import ConfigError, CrawlNotFound, InvalidTransition
from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion, run_burst_worker, running_workers, stored_pages
from tests.servers.site import SiteConfig, ThreadedSite, child_fields

STATS = "tests.cpu_tasks:page_stats"
CONFIG = SiteConfig(pages=40, per_list_page=20, page_bytes=3_000, latency_ms=1, links_per_page=2)
FIELDS = {"price": ".price", "currency": ".price@data-currency", "tags": ".tags li[]"}


async def test_a_replay_requests_nothing_and_updates_every_page(settings: Settings) -> None:
    # A small queue bound: the replay pages through the stored pages in several batches, and
    # parks what does not fit in the MongoDB backlog, like a crawl. A worker that keeps running
    # (not a burst one) refills from the backlog however its jobs happen to finish.
    settings = settings.replace(cpu={"functions": [STATS]}, crawl={"max_queued": 10}, worker={"max_jobs": 4})
    with ThreadedSite(CONFIG) as site:
        async with Pipeline(settings) as pipeline, running_workers(settings, count=1):
            crawl = await pipeline.wait(await pipeline.crawl(site.base_url + "/list"), timeout=60)
            assert crawl.done and crawl.stored == CONFIG.pages
            before = await stored_pages(settings, crawl.crawl_id)
            assert not any("fields" in page for page in before.values())
            requests = len(site.site.requests)

            replay_id = await pipeline.reprocess(crawl.crawl_id, fields=FIELDS, crunch=STATS)
            status = await pipeline.wait(replay_id, timeout=60)
            original = await pipeline.status(crawl.crawl_id)
        assert len(site.site.requests) == requests  # the site's own count: not one request

    assert status.done and status.source_crawl == crawl.crawl_id and replay_id != crawl.crawl_id
    assert (status.discovered, status.stored, status.failed) == (CONFIG.pages, CONFIG.pages, 0)
    assert status.counters.get("fetched", 0) == 0 and counters_add_up(status.counters), status.counters
    batches = math.ceil(CONFIG.pages / 5)  # max_queued 10: five pages a batch
    assert (status.counters["lists"], status.counters["lists_done"]) == (batches, batches)
    # The crawl replayed keeps its own record and counters.
    assert original.done and original.counters == crawl.counters

    after = await stored_pages(settings, crawl.crawl_id)
    assert after.keys() == before.keys()
    for index in range(CONFIG.pages):
        url = f"{site.base_url}/page/{index}"
        page, earlier = after[url], before[url]
        shown = child_fields(CONFIG, index)
        assert page["fields"] == {"price": shown.price, "currency": shown.currency, "tags": shown.tags}, url
        assert page["reprocess_id"] == replay_id and page["reprocessed_at"] > earlier["fetched_at"]
        assert page["crawl_id"] == crawl.crawl_id and page["fetched_at"] == earlier["fetched_at"]
        assert page["title"] == earlier["title"] and page["link_count"] == earlier["link_count"]
        # The new crunch ran on the same text, in a pool process, not on the worker's event loop.
        assert page["crunch"]["words"] == earlier["word_count"] and page["crunch"]["pid"] != os.getpid()


async def test_a_page_whose_body_is_gone_fails_with_the_reason(settings: Settings, s3_client: Any) -> None:
    config = SiteConfig(pages=10, per_list_page=10, page_bytes=2_000, latency_ms=1, links_per_page=1)
    with ThreadedSite(config) as site:
        crawl = await crawl_to_completion(settings, site.base_url + "/list")
    pages = await stored_pages(settings, crawl.crawl_id)
    lost = pages[f"{site.base_url}/page/3"]
    assert sum(page["blob_key"] == lost["blob_key"] for page in pages.values()) == 1
    await s3_client.delete_object(Bucket=settings.s3.bucket, Key=lost["blob_key"])

    async with Pipeline(settings) as pipeline:
        replay_id = await pipeline.reprocess(crawl.crawl_id, fields={"price": ".price"})
        await run_burst_worker(settings)
        status = await pipeline.status(replay_id)
        failures = await pipeline.failures(replay_id)
        # A replay of a replay replays the same crawl's pages.
        again = await pipeline.status(await pipeline.reprocess(replay_id))
    assert status.done and (status.discovered, status.stored, status.failed) == (10, 9, 1)
    assert counters_add_up(status.counters)
    (failure,) = failures
    assert failure["url"] == lost["url"] and failure["kind"] == "page" and failure["attempts"] == 1
    assert failure["error"].startswith("stored body missing: no body stored under " + lost["blob_key"])
    after = await stored_pages(settings, crawl.crawl_id)
    assert "reprocess_id" not in after[lost["url"]]
    assert all(page["reprocess_id"] == replay_id for url, page in after.items() if url != lost["url"])
    assert again.source_crawl == crawl.crawl_id


async def test_what_cannot_be_replayed_is_refused_before_anything_starts(settings: Settings) -> None:
    async with StaticSite({"/": "<a href='/a'>a</a>", "/a": "<p>a</p>"}) as site:
        missing = await crawl_to_completion(settings, site.base_url + "/nothing-here")
        async with Pipeline(settings) as pipeline:
            with pytest.raises(CrawlNotFound, match="no crawl with id 'nosuchcrawl'"):
                await pipeline.reprocess("nosuchcrawl")
            with pytest.raises(ConfigError, match="fields: field x: invalid CSS selector 'h1\\['"):
                await pipeline.reprocess(missing.crawl_id, fields={"x": "h1["})
            with pytest.raises(ConfigError, match="crunch"):
                await pipeline.reprocess(missing.crawl_id, crunch="tests.cpu_tasks:page_stats")  # not registered
            assert missing.state == "failed"
            with pytest.raises(InvalidTransition, match="has no stored pages"):
                await pipeline.reprocess(missing.crawl_id)
            running = await pipeline.crawl(site.base_url + "/")  # no worker: it stays running
            with pytest.raises(InvalidTransition, match="is running"):
                await pipeline.reprocess(running)
            await pipeline.cancel(running, timeout=10)
            crawls = await pipeline.control.store.crawls.count_documents({})
    assert crawls == 2  # the failed crawl and the cancelled one: no replay was recorded
