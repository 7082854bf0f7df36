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
