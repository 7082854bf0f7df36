"""Users' jobs, registered through `worker.functions` in the tests."""

from __future__ import annotations

import asyncio
from typing import Any


async def record_completion(ctx: dict[str, Any], crawl_id: str) -> None:
    store = ctx["pipeline"].store
    await store.db["completion_runs"].insert_one({"crawl_id": crawl_id, "job_try": ctx.get("job_try")})


async def wait_forever(ctx: dict[str, Any]) -> None:
    """A job still running when its worker is closed; it says when it has started."""
    await ctx["redis"].set(f"test:started:{ctx['job_id']}", 1, ex=60)
    await asyncio.Event().wait()
