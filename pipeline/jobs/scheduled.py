"""`scheduled_crawl`: one tick of a `[[schedule]]` (registered as an arq cron job per schedule)."""

from __future__ import annotations

from pipeline.crawl.periodic import find_schedule, run_schedule
from pipeline.worker.context import WorkerContext


async def scheduled_crawl(ctx: WorkerContext, name: str) -> str | None:
    """Start the schedule's crawl unless its previous one still runs; returns the new crawl id."""
    res = ctx["pipeline"]
    return await run_schedule(res.store, res.frontier, res.settings, find_schedule(res.settings, name))
