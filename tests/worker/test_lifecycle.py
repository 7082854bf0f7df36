"""A worker tunes the garbage collector while it runs and puts it back when it stops."""

from __future__ import annotations

import gc
from contextlib import AsyncExitStack

from pipeline.worker.lifecycle import GC_GEN0_THRESHOLD, tune_collector


async def test_worker_tunes_the_collector_and_restores_it() -> None:
    before = gc.get_threshold()
    first, second = AsyncExitStack(), AsyncExitStack()

    tune_collector(first)
    tune_collector(second)  # a second worker in the same process leaves it to the first
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() > 0

    await second.aclose()
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    await first.aclose()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
