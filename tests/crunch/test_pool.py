"""The CPU pool: results, a dead child replaced, a runaway child killed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from pipeline.crunch.pool import CpuPool
from pipeline.errors import CpuPoolBroken, CpuTimeout
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


@pytest.fixture
async def batched() -> AsyncIterator[CpuPool]:
    cpu = CpuPool(processes=2, max_in_flight=64, timeout=2.0, batch_delay=0.05, batch_size=8)
    yield cpu
    cpu.close()


async def test_calls_made_together_go_as_batches(batched: CpuPool) -> None:
    results = await asyncio.gather(*(batched.run(cpu_tasks.square, n) for n in range(40)))
    assert results == [n * n for n in range(40)]
    assert batched.batches == 5  # 40 calls at once, 8 to a batch


async def test_a_lone_call_is_sent_when_the_window_closes(batched: CpuPool) -> None:
    assert await batched.run(cpu_tasks.square, 6) == 36
    assert batched.batches == 0  # one call: sent as it is, not wrapped in a batch


async def test_an_error_fails_only_its_own_call(batched: CpuPool) -> None:
    calls = [batched.run(cpu_tasks.troubled_square, -n if n == 3 else n) for n in range(6)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert batched.batches == 1
    assert [o for n, o in enumerate(outcomes) if n != 3] == [0, 1, 4, 16, 25]
    error = outcomes[3]
    assert isinstance(error, ValueError) and str(error) == "no good: -3"
    assert any("in troubled_square" in note for note in getattr(error, "__notes__", []))  # the child's traceback
    assert batched.rebuilds == 0


async def test_a_dying_call_takes_only_itself_down(batched: CpuPool) -> None:
    calls = [batched.run(cpu_tasks.troubled_square, -1 if n == 2 else n) for n in range(5)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert batched.batches == 1
    assert isinstance(outcomes[2], CpuPoolBroken)
    assert [o for n, o in enumerate(outcomes) if n != 2] == [0, 1, 9, 16]
    assert await batched.run(cpu_tasks.square, 7) == 49


async def test_a_runaway_call_times_out_alone(batched: CpuPool) -> None:
    calls = [batched.run(cpu_tasks.troubled_square, -2 if n == 1 else n) for n in range(4)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert batched.batches == 1
    assert isinstance(outcomes[1], CpuTimeout)
    assert [o for n, o in enumerate(outcomes) if n != 1] == [0, 4, 9]


async def test_a_cancelled_caller_leaves_the_rest_of_its_batch(batched: CpuPool) -> None:
    doomed = asyncio.create_task(batched.run(cpu_tasks.square, 100))
    others = [asyncio.create_task(batched.run(cpu_tasks.square, n)) for n in range(3)]
    await asyncio.sleep(0)
    doomed.cancel()
    assert await asyncio.gather(*others) == [0, 1, 4]
    assert doomed.cancelled()


async def test_closing_wakes_callers_of_an_open_batch() -> None:
    cpu = CpuPool(processes=1, max_in_flight=8, timeout=2.0, batch_delay=30.0, batch_size=8)
    waiting = asyncio.create_task(cpu.run(cpu_tasks.square, 2))
    await asyncio.sleep(0.05)
    cpu.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)


async def test_start_processes_starts_them_all(batched: CpuPool) -> None:
    await batched.start_processes()
    assert len(batched.pids()) == 2
