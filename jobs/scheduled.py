"""`scheduled_crawl`: one tick of a `[[schedule]]` (registered as arq cron jobs)."""

from __future__ import annotations

from typing import Any

from pipeline.resources import Resources
from pipeline.schedules import find_schedule, run_schedule


async def scheduled_crawl(ctx: dict[str, Any], name: str) -> str | None:
    """Start the schedule's crawl unless its previous one still runs; returns the new crawl id."""
    res: Resources = ctx["pipeline"]
    return await run_schedule(res, find_schedule(res.settings, name))
