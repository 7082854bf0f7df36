"""Every page reached is kept: a site crawl's start page, and list pages with `store_lists`."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion


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
