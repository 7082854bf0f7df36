"""What the commands run on: services (embedded ones started if none are configured) and a worker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from pipeline.embedded.services import needs_embedded, resolve_services
from pipeline.settings import Settings
from pipeline.worker.settings import build_worker


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Settings]:
    """Settings pointing at real services, embedded ones started (and later stopped) if needed."""
    if needs_embedded(settings):
        print(f"pipeline: no Redis/MongoDB configured, using embedded services in {settings.data_dir}", file=sys.stderr)
    resolved, embedded = await asyncio.to_thread(resolve_services, settings)
    try:
        yield resolved
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker running on this event loop for as long as the block runs (it serves no metrics:
    the command is not a worker a Prometheus would scrape)."""
    worker = build_worker(settings.replace(worker={"metrics_port": 0}), handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        # Jobs claimed as the block ended (a completion job, say) get the usual grace to finish.
        worker.allow_pick_jobs = False
        running = [job for job in worker.tasks.values() if not job.done()]
        if running:
            await asyncio.wait(running, timeout=settings.worker.shutdown_grace)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task
