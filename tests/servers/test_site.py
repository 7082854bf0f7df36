"""The synthetic site must be exactly as described, or every test built on it proves nothing."""

from __future__ import annotations

import asyncio
import struct
import urllib.request
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from selectolax.lexbor import LexborHTMLParser

from tests.servers.site import (
    BOMB_BYTES,
    HIDDEN_TOKEN,
    LATIN1_TEXT,
    DemoSite,
    SiteConfig,
    ThreadedSite,
    child_fields,
    child_links,
    expected_child_paths,
    flaky_paths,
    missing_paths,
    render_list,
)

FAST = SiteConfig(pages=23, per_list_page=5, page_bytes=5_000, latency_ms=1, links_per_page=4)


def _hrefs(tree: LexborHTMLParser, selector: str = "a[href]") -> list[str]:
    return [str(a.attributes.get("href")) for a in tree.css(selector)]


def _attr(tree: LexborHTMLParser, selector: str, name: str) -> str | None:
    node = tree.css_first(selector)
    assert node is not None, selector
    return node.attributes.get(name)


@pytest.mark.asyncio
async def test_list_pages_paginate_over_every_child() -> None:
    children: set[str] = set()
    next_hrefs: list[str] = []
    async with DemoSite(FAST) as site, aiohttp.ClientSession() as session:
        url: str | None = site.url("/list")
        while url is not None:
            async with session.get(url) as response:
                assert response.status == 200
                tree = LexborHTMLParser(await response.read())
            hrefs = _hrefs(tree)
            noise = {"mailto:owner@example.com", "javascript:void(0)", "#top", "http://example.com/x"}
            assert noise <= set(hrefs)
            assert any(h.startswith("HTTP://") for h in hrefs)
            assert any(h.endswith("#section") for h in hrefs)
            paths = {urlsplit(urljoin(url, h)).path for h in hrefs}
            children |= {p for p in paths if p.startswith("/page/")}
            next_hrefs += _hrefs(tree, 'a[rel="next"]')
            url = urljoin(url, next_hrefs[-1]) if tree.css_first('a[rel="next"]') else None
    assert children == expected_child_paths(FAST)
    assert len(next_hrefs) == FAST.list_pages - 1 == 4
    assert {h.startswith("?") for h in next_hrefs} == {True, False}  # both relative forms appear


def test_a_numbered_pager_links_the_following_list_pages() -> None:
    chained = SiteConfig(pages=2000, per_list_page=100)
    assert "nav class=pager" not in render_list(chained, 1, "h").decode()
    assert chained.list_hops == 20  # each list page is found on the one before

    windowed = SiteConfig(pages=2000, per_list_page=100, pager=5)
    tree = LexborHTMLParser(render_list(windowed, 3, "h"))
    assert _hrefs(tree, "nav.pager a") == [f"/list?page={n}" for n in range(4, 9)]
    assert _hrefs(LexborHTMLParser(render_list(windowed, 20, "h")), "nav.pager a") == []  # the last page
    assert windowed.list_hops == 5  # page 1, then pages 2-6, 7-11, 12-16, 17-20

    assert SiteConfig(pages=2000, per_list_page=100, pager=20).list_hops == 2
    with pytest.raises(ValueError, match="pager"):
        SiteConfig(pager=-1)


@pytest.mark.asyncio
async def test_child_page_has_metadata_links_and_hidden_text() -> None:
    async with (
        DemoSite(FAST) as site,
        aiohttp.ClientSession() as session,
        session.get(site.url("/page/7")) as response,
    ):
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await response.read()
    tree = LexborHTMLParser(html)
    title = tree.css_first("title")
    assert title is not None
    assert title.text().startswith("Page 7:")
    assert _attr(tree, 'meta[name="description"]', "content")
    assert _attr(tree, 'link[rel="canonical"]', "href") == site.url("/page/7")
    assert _attr(tree, "html", "lang") == "en"
    assert abs(len(html) - FAST.page_bytes) < 1_000
    assert HIDDEN_TOKEN in html.decode()
    hrefs = _hrefs(tree, "ul.related a")
    assert any(h.startswith("../") for h in hrefs)
    assert any(h.startswith("http://") for h in hrefs)
    related = {urljoin(site.url("/page/7"), h) for h in hrefs}
    assert related == {site.url(f"/page/{j}") for j in child_links(FAST, 7)}
    assert len(related) == FAST.links_per_page
    assert site.url("/page/7") not in related
    shown = child_fields(FAST, 7)
    price = tree.css_first("p.price")
    assert price is not None and price.text(strip=True) == shown.price
    assert price.attributes.get("data-currency") == shown.currency
    assert [li.text(strip=True) for li in tree.css("ul.tags > li")] == shown.tags
    assert tree.body is not None
    tree.body.strip_tags(["script", "style"])
    assert HIDDEN_TOKEN not in tree.body.text()


@pytest.mark.asyncio
async def test_pages_are_deterministic_across_sites() -> None:
    async def fetch(path: str) -> str:
        async with (
            DemoSite(FAST) as site,
            aiohttp.ClientSession() as session,
            session.get(site.url(path)) as response,
        ):
            return (await response.text()).replace(urlsplit(site.base_url).netloc, "HOST")

    assert await fetch("/page/3") == await fetch("/page/3")
    assert await fetch("/list?page=2") == await fetch("/list?page=2")


@pytest.mark.asyncio
async def test_missing_pages_404_and_flaky_pages_503_once() -> None:
    config = SiteConfig(pages=40, page_bytes=2_000, latency_ms=1, error_rate=0.2, missing_rate=0.1)
    missing, flaky = missing_paths(config), flaky_paths(config)
    assert len(missing) == 4
    assert len(flaky) == 8
    assert not missing & flaky
    assert missing_paths(config) == missing  # a pure function of the config
    async with DemoSite(config) as site, aiohttp.ClientSession() as session:

        async def statuses(path: str) -> list[int]:
            out = []
            for _ in range(2):
                async with session.get(site.url(path)) as response:
                    out.append(response.status)
            return out

        for path in missing:
            assert await statuses(path) == [404, 404]
        for path in flaky:
            assert await statuses(path) == [503, 200]
        async with session.get(site.url("/page/0")) as response:
            assert response.status == 200
        # Repeats after a 503 are justified; repeating a 404 is not.
        assert site.duplicate_paths() == missing
        assert site.duplicates() == len(missing)


@pytest.mark.asyncio
async def test_conditional_requests_get_304() -> None:
    async with DemoSite(FAST) as site, aiohttp.ClientSession() as session:
        page = site.url("/page/2")
        async with session.get(page) as response:
            etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
        async with session.get(page, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert await response.read() == b""
        async with session.get(page, headers={"If-None-Match": '"other"'}) as response:
            assert response.status == 200
        async with session.get(page, headers={"If-Modified-Since": modified}) as response:
            assert response.status == 304
        async with session.get(site.url("/page/3"), headers={"If-None-Match": etag}) as response:
            assert response.status == 200
            assert response.headers["ETag"] != etag


@pytest.mark.asyncio
async def test_gzip_bomb_is_small_on_the_wire() -> None:
    async with (
        DemoSite(FAST) as site,
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(site.url("/gzipbomb")) as response,
    ):
        assert response.headers["Content-Encoding"] == "gzip"
        raw = await response.read()
    assert len(raw) < 300_000
    assert struct.unpack("<I", raw[-4:])[0] == BOMB_BYTES  # gzip trailer: inflated size


@pytest.mark.asyncio
async def test_odd_endpoints() -> None:
    async with DemoSite(FAST) as site, aiohttp.ClientSession() as session:
        async with session.get(site.url("/binary.bin")) as response:
            assert response.content_type == "application/octet-stream"
            assert len(await response.read()) == 4096
        async with session.get(site.url("/latin1")) as response:
            assert response.charset is None
            assert LATIN1_TEXT in (await response.read()).decode("iso-8859-1")
        async with session.get(site.url("/redirect/3")) as response:
            assert response.status == 200
            assert len(response.history) == 3
            assert response.url.path == "/page/0"
        with pytest.raises(aiohttp.TooManyRedirects):
            await session.get(site.url("/loop"), max_redirects=3)
        async with session.get(site.url("/status/418")) as response:
            assert response.status == 418
        with pytest.raises(aiohttp.ClientError):
            await session.get(site.url("/reset"))
        with pytest.raises(asyncio.TimeoutError):
            await session.get(site.url("/slow"), timeout=aiohttp.ClientTimeout(total=0.2))


@pytest.mark.asyncio
async def test_concurrency_limit_answers_429() -> None:
    config = SiteConfig(pages=10, latency_ms=250, latency_sigma=0, concurrency_limit=2)
    async with DemoSite(config) as site, aiohttp.ClientSession() as session:

        async def get(i: int) -> tuple[int, str | None]:
            async with session.get(site.url(f"/page/{i}")) as response:
                return response.status, response.headers.get("Retry-After")

        results = await asyncio.gather(*(get(i) for i in range(5)))
    assert sorted(results, key=str) == [(200, None)] * 2 + [(429, "1")] * 3
    assert site.max_in_flight == 2
    assert site.in_flight == 0
    assert site.rejected == 3


def test_threaded_site_serves_sync_callers() -> None:
    with ThreadedSite(FAST) as threaded:
        with urllib.request.urlopen(threaded.base_url + "/list") as response:
            assert response.status == 200
            assert b'rel="next"' in response.read()
        assert threaded.site.hits["/list"] == 1
    threaded.stop()  # idempotent
