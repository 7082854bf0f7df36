"""What the target site does wrong, and what the crawl makes of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion
from tests.servers.site import SiteConfig, ThreadedSite


async def _documents(settings: Settings, crawl_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        pages = {p["url"]: p async for p in db.pages.find({"crawl_id": crawl_id})}
        failures = {f["url"]: f async for f in db.failures.find({"crawl_id": crawl_id})}
    finally:
        await client.close()
    return pages, failures


async def test_misbehaving_pages_are_stored_or_recorded(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings.replace(fetch={"max_body_bytes": 1_000_000, "read_timeout": 1.0, "max_redirects": 5})
    paths = [
        "/redirect/2",
        "/loop",
        "/binary.bin",
        "/latin1",
        "/gzipbomb",
        "/big",
        "/status/500",
        "/status/404",
        "/status/410",
        "/reset",
        "/slow",
        "/redirect/9",
    ]
    with ThreadedSite(SiteConfig(pages=1, latency_ms=1)) as target:
        links = "".join(f'<a href="{target.base_url}{p}">x</a>' for p in paths)
        async with StaticSite({"/list": f"<html><body>{links}<a href='mailto:x@y'>m</a></body></html>"}) as lister:
            with caplog.at_level(logging.INFO):
                status = await crawl_to_completion(settings, lister.base_url + "/list", scope="any")
    # Every fault was handled: no job failed in arq's eyes, no traceback reached the log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    pages, failures = await _documents(settings, status.crawl_id)
    url = target.base_url
    assert status.done and status.discovered == len(paths)
    assert status.counters["skipped_invalid"] == 1  # the mailto: link

    assert pages[url + "/redirect/2"]["final_url"] == url + "/page/0"
    assert pages[url + "/redirect/2"]["redirects"] == 2
    binary = pages[url + "/binary.bin"]
    assert binary["parsed"] is False and "title" not in binary and binary["length"] == 4096
    assert "é" in (pages[url + "/latin1"]["title"] or "") + str(pages[url + "/latin1"]["top_words"])
    assert pages[url + "/gzipbomb"]["truncated"] is True
    assert pages[url + "/gzipbomb"]["length"] == 1_000_000
    assert pages[url + "/big"]["truncated"] is True

    assert "redirect loop" in failures[url + "/loop"]["error"]
    assert "more than 5 redirects" in failures[url + "/redirect/9"]["error"]
    assert failures[url + "/status/500"]["attempts"] == settings.worker.max_tries
    assert failures[url + "/status/500"]["status"] == 500
    assert failures[url + "/status/404"]["attempts"] == 1  # 4xx is not retried
    assert failures[url + "/status/410"]["status"] == 410
    assert failures[url + "/reset"]["attempts"] == settings.worker.max_tries
    assert "timed out" in failures[url + "/slow"]["error"]
    assert set(pages) | set(failures) == {url + p for p in paths}


async def test_private_addresses_are_refused_by_default(settings: Settings) -> None:
    settings = settings.replace(fetch={"allow_private_networks": False})
    async with StaticSite({"/list": "<a href='/page'>p</a>"}) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        assert site.hits == {}  # not a single request reached the loopback site
    _, failures = await _documents(settings, status.crawl_id)
    # The start page failed, so the crawl did: it says so, and why.
    assert status.state == "failed" and status.counters["lists_failed"] == 1
    assert "non-public address 127.0.0.1" in failures[site.base_url + "/list"]["error"]
    assert status.error == f"start page {site.base_url}/list failed: {failures[site.base_url + '/list']['error']}"


async def test_redirect_to_private_address_is_refused(settings: Settings) -> None:
    # Allowed to reach the lister (public in this scenario) but not where it redirects: the check
    # runs on every hop. Simulated with a name that resolves to loopback.
    settings = settings.replace(fetch={"allow_private_networks": False})
    async with StaticSite({"/list": "x"}) as site:
        port = site.base_url.rsplit(":", 1)[1]
        status = await crawl_to_completion(settings, f"http://localhost:{port}/list")
        assert site.hits == {}
    _, failures = await _documents(settings, status.crawl_id)
    assert "non-public addresses only" in next(iter(failures.values()))["error"]


async def test_depth_and_max_pages(settings: Settings) -> None:
    pages = {
        "/list": "<a href='/a'>a</a><a href='/b'>b</a><a rel=next href='/list2'>next</a>",
        "/list2": "<a href='/c'>c</a><a href='/a#again'>a again</a>",
        "/a": "<a href='/a1'>deeper</a><a href='/b'>b</a>",
        "/b": "<a href='/b1'>deeper</a>",
        "/c": "<p>leaf</p>",
        "/a1": "<a href='/a2'>deeper still</a>",
        "/b1": "<p>leaf</p>",
        "/a2": "<p>too deep</p>",
    }
    async with StaticSite(pages) as site:
        shallow = await crawl_to_completion(settings, site.base_url + "/list")
        deep = await crawl_to_completion(settings, site.base_url + "/list", max_depth=2)
        capped = await crawl_to_completion(settings, site.base_url + "/list", max_depth=3, max_pages=2)
        lists_only = await crawl_to_completion(settings, site.base_url + "/list", max_depth=0)
    assert (shallow.stored, shallow.counters["lists_done"]) == (3, 2)  # a, b, c
    assert deep.stored == 6  # + a1, b1, and the start page: a site crawl keeps it
    assert capped.stored == 2 and capped.counters["capped"] > 0
    assert lists_only.stored == 0 and lists_only.counters["lists_done"] == 2
    for status in (shallow, deep, capped, lists_only):
        assert status.done and status.discovered == status.stored + status.failed
