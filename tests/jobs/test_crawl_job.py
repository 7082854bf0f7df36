"""Every page reached is kept: a site crawl's start page, and list pages with `store_lists`; kept
pages and sitemaps under cancel and retry."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.crawl.status import counters_add_up
from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion, run_burst_worker


async def _stored(settings: Settings, crawl_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        pages = {p["url"]: p for p in await db.pages.find({"crawl_id": crawl_id}).to_list()}
        failures = {f["url"]: f for f in await db.failures.find({"crawl_id": crawl_id}).to_list()}
    finally:
        await client.close()
    return pages, failures


async def test_a_site_crawl_stores_its_start_page_once(settings: Settings) -> None:
    pages = {
        "/": "<title>Home</title><a href='/a'>a</a><a href='/b'>b</a>",
        "/a": "<a href='/'>home</a><a href='/b'>b</a>",  # links back to the start page
        "/b": "<a href='/index'>home, another way</a>",
        "/index": "<p>leaf</p>",
        "/solo": "<a href='/leaf'>only link</a>",  # a start page nothing links back to
        "/leaf": "<p>leaf</p>",
    }
    async with StaticSite(pages) as site:
        linked = await crawl_to_completion(settings, site.base_url + "/", max_depth=3)
        hits = dict(site.hits)
        alone = await crawl_to_completion(settings, site.base_url + "/solo", max_depth=2)
    base = site.base_url

    assert linked.done and (linked.discovered, linked.stored, linked.failed) == (4, 4, 0)
    assert linked.counters["lists_done"] == 1
    assert hits["/"] == 1  # walked as the list page and stored from that one response
    stored, _ = await _stored(settings, linked.crawl_id)
    assert set(stored) == {f"{base}/", f"{base}/a", f"{base}/b", f"{base}/index"}
    assert stored[f"{base}/"]["depth"] == 0 and stored[f"{base}/"]["title"] == "Home"

    assert alone.done and (alone.discovered, alone.stored) == (2, 2)
    stored, _ = await _stored(settings, alone.crawl_id)
    assert set(stored) == {f"{base}/solo", f"{base}/leaf"}


async def test_store_lists_keeps_every_list_page(settings: Settings) -> None:
    pages = {
        "/list": "<a href='/a'>a</a><a href='/b'>b</a><a rel=next href='/list2'>next</a>",
        "/list2": "<a href='/c'>c</a><a rel=next href='/list3'>next</a>",
        "/a": "<a href='/list2'>a child linking a list page</a>",
        "/b": "<p>b</p>",
        "/c": "<p>c</p>",
        # /list3 is missing: a kept list page that fails is a failed page
    }
    async with StaticSite(pages) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list", store_lists=True, max_depth=2)
        hits = dict(site.hits)
    base = site.base_url

    counters = status.counters
    assert status.done
    assert (status.discovered, status.stored, status.failed) == (6, 5, 1)
    assert status.discovered == status.stored + status.unchanged_count + status.failed
    assert (counters["lists"], counters["lists_done"], counters["lists_failed"]) == (3, 2, 1)
    assert all(count == 1 for count in hits.values()), hits  # list pages too: fetched once, stored from it
    stored, failures = await _stored(settings, status.crawl_id)
    assert set(stored) == {f"{base}/{p}" for p in ("list", "list2", "a", "b", "c")}
    assert stored[f"{base}/list2"]["depth"] == 0
    assert set(failures) == {f"{base}/list3"}
    assert failures[f"{base}/list3"]["kind"] == "page" and failures[f"{base}/list3"]["status"] == 404


async def test_kept_pages_and_sitemaps_are_cancelled_and_retried_like_the_rest(settings: Settings) -> None:
    sitemap = '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/s</loc></url></urlset>'
    pages: dict[str, str | tuple[bytes, str]] = {
        "/list": "<a href='/a'>a</a><a rel=next href='/list2'>next</a>",
        "/a": "<p>a</p>",
        "/c": "<p>c</p>",
        "/s": "<p>from the sitemap</p>",
    }
    async with StaticSite(pages) as site:
        base = site.base_url
        options: dict[str, Any] = {"store_lists": True, "sitemaps": [f"{base}/sitemap.xml"]}
        async with Pipeline(settings) as pipeline:
            # Cancelled before any worker ran: the kept start page goes with its list page.
            idle = await pipeline.crawl(base + "/list", **options)
            cancelled = await pipeline.cancel(idle, timeout=10)
        assert cancelled.state == "cancelled" and counters_add_up(cancelled.counters), cancelled.counters
        assert (cancelled.discovered, cancelled.counters["cancelled"], cancelled.counters["lists_cancelled"]) == (
            1,
            1,
            2,
        )

        # /list2 and the sitemap are missing: a kept list page and a sitemap fail...
        first = await crawl_to_completion(settings, base + "/list", **options)
        assert first.done and (first.stored, first.failed) == (2, 1)  # /list, /a; /list2 failed
        assert (first.counters["lists_done"], first.counters["lists_failed"]) == (1, 2)
        # ...then come back, and a retry walks and keeps /list2 and reads the sitemap.
        site.pages["/list2"] = "<a href='/c'>c</a>"
        site.pages["/sitemap.xml"] = (sitemap.replace("{base}", base).encode(), "application/xml")
        async with Pipeline(settings) as pipeline:
            await pipeline.retry(first.crawl_id)
            await run_burst_worker(settings)
            done = await pipeline.status(first.crawl_id)
    assert done.done and counters_add_up(done.counters), done.counters
    assert (done.discovered, done.stored, done.failed) == (5, 5, 0)  # /list, /a, /list2, /c, /s
    assert (done.counters["lists_done"], done.counters["lists_failed"]) == (3, 0)
    stored, failures = await _stored(settings, done.crawl_id)
    assert set(stored) == {f"{base}/{p}" for p in ("list", "a", "list2", "c", "s")} and failures == {}
