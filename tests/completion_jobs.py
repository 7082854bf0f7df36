"""A user's completion job, registered through `worker.functions` in the fan-in tests."""

from __future__ import annotations

from typing import Any


async def record_completion(ctx: dict[str, Any], crawl_id: str) -> None:
    store = ctx["pipeline"].store
    await store.db["completion_runs"].insert_one({"crawl_id": crawl_id, "job_try": ctx.get("job_try")})
