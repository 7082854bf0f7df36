"""Running crawls through real arq workers inside a test."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.api import Pipeline
from pipeline.crawls import CrawlStatus
from pipeline.settings import Settings
from pipeline.worker import build_worker


async def run_burst_worker(settings: Settings, timeout: float = 120) -> None:
    """An in-process arq worker that exits when the queue is empty (deferred retries included)."""
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        async with asyncio.timeout(timeout):
            await worker.async_run()
    finally:
        await worker.close()


async def crawl_to_completion(settings: Settings, start_url: str, **options: Any) -> CrawlStatus:
    async with Pipeline(settings) as pipeline:
        crawl_id = await pipeline.crawl(start_url, **options)
        await run_burst_worker(settings)
        return await pipeline.status(crawl_id)


class StaticSite:
    """A tiny site with hand-written pages, on this test's event loop: `{path: html}`."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        self.hits: dict[str, int] = {}
        self._runner: Any = None
        self.base_url = ""

    async def __aenter__(self) -> StaticSite:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            self.hits[request.path_qs] = self.hits.get(request.path_qs, 0) + 1
            html = self.pages.get(request.path_qs)
            if html is None:
                return web.Response(status=404, text="not here")
            return web.Response(text=html.replace("{base}", self.base_url), content_type="text/html")

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
