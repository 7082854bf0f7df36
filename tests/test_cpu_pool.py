"""The CPU pool: results, a dead child replaced, a runaway child killed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from pipeline.crunch import CpuPool, CpuPoolBroken, CpuTimeout
from tests import cpu_tasks


@pytest.fixture
async def pool() -> AsyncIterator[CpuPool]:
    cpu = CpuPool(processes=2, max_in_flight=4, timeout=2.0)
    yield cpu
    cpu.close()


async def test_runs_in_other_processes(pool: CpuPool) -> None:
    assert await asyncio.gather(*(pool.run(cpu_tasks.square, n) for n in range(10))) == [n * n for n in range(10)]
    assert await pool.run(cpu_tasks.pid) != os.getpid()


async def test_dead_child_is_replaced(pool: CpuPool) -> None:
    with pytest.raises(CpuPoolBroken):
        await pool.run(cpu_tasks.die)
    assert pool.rebuilds == 1
    assert await pool.run(cpu_tasks.square, 7) == 49


async def test_runaway_child_is_killed(pool: CpuPool) -> None:
    runaway_pid = await pool.run(cpu_tasks.pid)
    with pytest.raises(CpuTimeout):
        await pool.run(cpu_tasks.spin, 60.0)
    assert pool.rebuilds == 1
    await asyncio.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(runaway_pid, 0)  # the old pool's processes are gone, not left burning a core
    assert await pool.run(cpu_tasks.square, 3) == 9


async def test_event_loop_stays_responsive(pool: CpuPool) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await pool.run(cpu_tasks.spin, 0.5)
    task.cancel()
    assert ticks > 20  # the loop kept running while a child spun for half a second
