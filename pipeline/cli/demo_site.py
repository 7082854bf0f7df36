"""The website `pipeline demo` crawls: list pages of links to child pages, on loopback.

Small on purpose (the test suite has its own, hostile sites): a few list pages chained by
`rel=next`, child pages with a title, a description and some text, a response time drawn around
`latency_ms`, and a few pages that fail (503 on the first request) or are missing (404), so the
demo shows retries and recorded failures too.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

PER_LIST_PAGE = 50
WORDS = (
    "asyncio worker queue crawl page link fetch store parse retry lease redis mongo bucket body "
    "digest schedule backlog limit host latency batch commit pool process crunch fingerprint"
).split()


class DemoSite:
    """`pages` child pages behind list pages of `PER_LIST_PAGE`, served until `stop()`."""

    def __init__(self, pages: int, latency_ms: float, *, flaky_rate: float = 0.02, missing_rate: float = 0.01) -> None:
        self.pages = pages
        self.latency_ms = latency_ms
        order = random.Random(7).sample(range(pages), pages)
        missing = round(pages * missing_rate)
        self.missing = frozenset(order[:missing])
        self.flaky = set(order[missing : missing + round(pages * flaky_rate)])
        self.requests = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def list_pages(self) -> int:
        return max(1, -(-self.pages // PER_LIST_PAGE))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/list", self._list)
        app.router.add_get("/page/{index:\\d+}", self._child)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _wait(self) -> None:
        self.requests += 1
        if self.latency_ms > 0:
            await asyncio.sleep(random.lognormvariate(0, 0.4) * self.latency_ms / 1000)

    async def _list(self, request: web.Request) -> web.Response:
        await self._wait()
        page = int(request.query.get("page", "1"))
        first = (page - 1) * PER_LIST_PAGE
        links = "".join(
            f'<li><a href="/page/{i}">Page {i}</a>' for i in range(first, min(first + PER_LIST_PAGE, self.pages))
        )
        following = f'<a rel="next" href="/list?page={page + 1}">Next</a>' if page < self.list_pages else ""
        html = (
            f"<html><head><title>All pages, part {page}</title></head><body><ul>{links}</ul>{following}</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def _child(self, request: web.Request) -> web.Response:
        await self._wait()
        index = int(request.match_info["index"])
        if index >= self.pages or index in self.missing:
            return web.Response(status=404, text="not here")
        if index in self.flaky:
            self.flaky.discard(index)
            return web.Response(status=503, text="try again", headers={"Retry-After": "0"})
        rng = random.Random(index)
        text = " ".join(rng.choices(WORDS, k=300))
        html = (
            f'<html lang="en"><head><title>Page {index}</title><meta name="description" content="Demo page {index}">'
            f'</head><body><a href="/list">All pages</a><h1>Page {index}</h1><p>{text}</p></body></html>'
        )
        return web.Response(text=html, content_type="text/html")
