"""`cpu_task`: a CPU worker runs one registered CPU function for an I/O worker."""

from __future__ import annotations

from typing import Any

from pipeline.worker.context import WorkerContext
from pipeline.worker.remote_cpu import answer


async def cpu_task(ctx: WorkerContext, name: str, args: list[Any], reply_to: str, request_id: str) -> None:
    """Run `name(*args)` in this worker's process pool and push the result to `reply_to`."""
    if not (isinstance(name, str) and isinstance(args, list) and isinstance(reply_to, str)):
        raise TypeError("cpu_task takes (name: str, args: list, reply_to: str, request_id: str)")
    if not reply_to.startswith("pipeline:cpu:replies:"):
        raise ValueError(f"cpu_task replies only to pipeline reply lists, not {reply_to!r:.80}")
    await answer(ctx["redis"], ctx["cpu_pool"], ctx["cpu_registry"], name, args, reply_to, str(request_id))
