"""The URL a crawl deduplicates and stores is, byte for byte, the URL the site receives."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from pipeline.download.fetcher import Fetcher
from pipeline.download.host_limits import AdaptiveLimiter
from pipeline.errors import InvalidURL
from pipeline.settings import Settings
from pipeline.urls import normalise_url
from pipeline.worker.resources import adaptive_settings
from tests.helpers import StaticSite, crawl_to_completion, resolve_to_loopback


class LoopbackResolver(AbstractResolver):
    """Every name is 127.0.0.1: the generated hosts all reach the recording server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


@dataclass
class Recorder:
    """A loopback server that notes the Host header and request target of each request, and a
    `Fetcher` built as a worker builds it, except that every name resolves to the server."""

    port: int
    fetcher: Fetcher
    received: list[tuple[str, str]]


@pytest.fixture(scope="module")
async def recorder() -> AsyncIterator[Recorder]:
    received: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((request.host, request.raw_path))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    settings = Settings().replace(fetch={"allow_private_networks": True})
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=LoopbackResolver()))
    limiter = AdaptiveLimiter(settings.fetch.concurrency, adaptive_settings(settings))
    try:
        yield Recorder(runner.addresses[0][1], Fetcher(session, limiter, settings.fetch), received)
    finally:
        await session.close()
        await runner.cleanup()


_hosts = st.one_of(
    st.sampled_from(["bücher.de", "BÜCHER.de", "xn--bcher-kva.de", "Example.COM", "a.example.co.uk.", "ŁÓDŹ.pl"]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,8}\.[a-z]{2,4}", fullmatch=True),
)
# Everything a page may write in a path or a query: dot segments, escapes (valid or not, either
# case), spaces, non-ASCII, reserved and unsafe characters.
_segment = st.one_of(
    st.sampled_from(
        ["..", ".", "%7e", "%7E", "%2f", "%41", "%", "%zz", "a b", "~", "é", "%C3%A9", ";p=1", "'\"<>{}|^`"]
    ),
    st.text(alphabet="aZ09-._~!$&'()*+,;=:@ %é€/", max_size=8),
)
_paths = st.lists(_segment, max_size=6).map("/".join)
_queries = st.one_of(st.just(""), st.lists(_segment, max_size=3).map(lambda parts: "?" + "&".join(parts)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=_hosts, path=_paths, query=_queries)
async def test_the_key_is_what_the_site_receives(recorder: Recorder, host: str, path: str, query: str) -> None:
    raw = f"http://{host}:{recorder.port}/{path}{query}"
    try:
        key = normalise_url(raw)
    except InvalidURL:
        assume(False)
        return
    assert normalise_url(key) == key  # canonical: normalising again changes nothing
    recorder.received.clear()
    response = await recorder.fetcher.get(key)
    assert response.status == 200
    [(host_header, target)] = recorder.received
    assert f"http://{host_header}{target}" == key


async def test_the_issue_forms_are_fetched_once_each(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spellings of one page that yarl (and so aiohttp) sends alike are one page of the crawl."""
    resolve_to_loopback(monkeypatch, "xn--bcher-kva.de")
    async with StaticSite({}) as site:
        idn = f"http://xn--bcher-kva.de:{site.port}"
        links = [
            f"{site.base_url}/a/../b",
            f"{site.base_url}/b",
            f"{site.base_url}/%7efoo",
            f"{site.base_url}/~foo",
            f"{site.base_url}/a b",
            f"{site.base_url}/a%20b",
            f"http://bücher.de:{site.port}/x",
            f"http://BÜCHER.DE:{site.port}/x",
            f"{idn}/x",
        ]
        site.pages.update({"/list": "".join(f'<a href="{href}">l</a>' for href in links)})
        site.pages.update({path: "<p>page</p>" for path in ("/b", "/~foo", "/a%20b", "/x")})
        status = await crawl_to_completion(settings, site.base_url + "/list", scope="any")
        raw_hits = dict(site.raw_hits)

    here = f"127.0.0.1:{site.port}"
    assert raw_hits == {
        (here, "/list"): 1,
        (here, "/b"): 1,
        (here, "/~foo"): 1,
        (here, "/a%20b"): 1,
        (f"xn--bcher-kva.de:{site.port}", "/x"): 1,
        # robots.txt, read once for each host (the punycode one is asked by its punycode name)
        (here, "/robots.txt"): 1,
        (f"xn--bcher-kva.de:{site.port}", "/robots.txt"): 1,
    }
    assert status.done and status.discovered == status.stored == 4 and status.failed == 0
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        urls = {p["url"] for p in await client[settings.mongo.db].pages.find({"crawl_id": status.crawl_id}).to_list()}
    finally:
        await client.close()
    assert urls == {f"{site.base_url}/b", f"{site.base_url}/~foo", f"{site.base_url}/a%20b", f"{idn}/x"}
