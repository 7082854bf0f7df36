"""The worker's process pool: CPU-bound calls run in child processes, never on the event loop.

`CpuPool.run(fn, *args)` is the whole interface. Around a `ProcessPoolExecutor` it adds what a
long-running worker needs:

- a bound on calls queued or running, so memory stays flat however fast pages arrive;
- a timeout that kills a runaway child (cancelling the awaiting coroutine, all arq could do,
  would leave the child burning a core) and a pool that rebuilds itself when a child dies;
- micro-batching. Handing one call to the executor costs the worker about as much CPU as
  fingerprinting a page (its manager and feeder threads, pickling, a wakeup of the loop).
  Calls to the same function made within `batch_delay` seconds of the first go to a child as
  one task of up to `batch_size` calls. A batch that fails as a whole (past the timeout, a
  child died, an argument would not pickle) is re-run call by call, so only the call at fault
  fails;
- small children. multiprocessing starts each child by importing the parent's main script;
  under arq's console script that is arq's CLI with click and redis-py, for nothing. Children
  are started with the main script hidden, so they import only what they run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.crunch.pool_child import Outcome, exit_with_worker, run_batch
from pipeline.errors import CpuPoolBroken, CpuTimeout

T = TypeVar("T")
_BARE_MAIN = types.ModuleType("__main__")


@contextmanager
def _parent_main_hidden() -> Iterator[None]:
    """While a child starts: no main script for it to import (see the module docstring).

    Only a main script run by path is hidden; `python -m package` children skip a package's
    `__main__` themselves. Functions sent to the pool live in importable modules, never there.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    sys.modules["__main__"] = _BARE_MAIN
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@dataclass
class _Batch:
    fn: Callable[..., Any]
    timer: asyncio.TimerHandle
    calls: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = field(default_factory=list)


class CpuPool:
    """A process pool for CPU-bound stages, owned by one worker."""

    def __init__(
        self,
        processes: int,
        max_in_flight: int,
        timeout: float,
        *,
        batch_delay: float = 0.0,
        batch_size: int = 1,
    ) -> None:
        self.processes = processes
        self.timeout = timeout
        self.batch_delay = batch_delay
        self.batch_size = batch_size
        self._slots = asyncio.Semaphore(max_in_flight)
        # forkserver: forking a process that runs an event loop copies the loop's state and
        # threads into the child; the fork server is a clean, single-threaded parent.
        self._context = multiprocessing.get_context("forkserver")
        # Made on first use: even an idle executor starts multiprocessing's resource tracker (a
        # process of its own), which a worker whose crawls never crunch should not pay for.
        self._executor: ProcessPoolExecutor | None = None
        self._open: dict[Callable[..., Any], _Batch] = {}
        self._sent: set[asyncio.Task[None]] = set()
        self.rebuilds = 0
        self.batches = 0
        self.busy = 0  # tasks handed to the pool's processes and not yet back

    @property
    def batching(self) -> bool:
        return self.batch_size > 1 and self.batch_delay > 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=self._context,
            initializer=exit_with_worker,
            initargs=(os.getpid(),),
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a child process; kill and rebuild on timeout or a dead child."""
        async with self._slots:
            if not self.batching:
                return await self._submit(fn, *args)
            result: T = await self._join(fn, args)
            return result

    async def start_processes(self) -> None:
        """Start every pool process now (the executor spawns them on demand), each with a no-op task."""
        await asyncio.gather(*(self._submit(os.getpid) for _ in range(self.processes)))

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        executor = self._executor
        if executor is None:
            executor = self._executor = self._new_executor()
        loop = asyncio.get_running_loop()
        name = getattr(fn, "__name__", fn)
        try:
            # Inside the try: submitting to a pool whose child just died raises at once. A submit
            # may start a child (the executor starts them on demand).
            with _parent_main_hidden():
                future = loop.run_in_executor(executor, fn, *args)
            self.busy += 1
            try:
                return await asyncio.wait_for(future, self.timeout)
            finally:
                self.busy -= 1
        except TimeoutError:
            self._rebuild(executor)
            raise CpuTimeout(f"{name} ran past {self.timeout:g}s; its process was killed") from None
        except BrokenProcessPool:
            self._rebuild(executor)
            raise CpuPoolBroken(f"a pool process died while running {name}") from None

    def _join(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Add a call to the open batch for `fn`, opening one (and its send timer) if need be."""
        loop = asyncio.get_running_loop()
        batch = self._open.get(fn)
        if batch is None:
            batch = self._open[fn] = _Batch(fn, loop.call_later(self.batch_delay, self._send, fn))
        future: asyncio.Future[Any] = loop.create_future()
        batch.calls.append((args, future))
        if len(batch.calls) >= self.batch_size:
            self._send(fn)
        return future

    def _send(self, fn: Callable[..., Any]) -> None:
        batch = self._open.pop(fn, None)
        if batch is None:
            return
        batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._sent.add(task)
        task.add_done_callback(self._sent.discard)

    async def _run_batch(self, batch: _Batch) -> None:
        # Callers cancelled while the batch was open have no one waiting for their result.
        calls = [(args, future) for args, future in batch.calls if not future.done()]
        try:
            if len(calls) == 1:
                await self._run_alone(batch.fn, *calls[0])
            elif calls:
                self.batches += 1
                try:
                    outcomes = await self._submit(run_batch, batch.fn, [args for args, _ in calls])
                except Exception:  # noqa: BLE001 - whatever sank the batch, each call gets its own verdict
                    # One after the other: a call that kills its process must not take others with it.
                    for args, future in calls:
                        await self._run_alone(batch.fn, args, future)
                    return
                for (_, future), outcome in zip(calls, outcomes, strict=True):
                    _resolve(future, outcome)
        finally:
            # Only when the pool is closing: nobody may be left waiting forever.
            for _, future in calls:
                future.cancel()

    async def _run_alone(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        if future.done():
            return
        try:
            result = await self._submit(fn, *args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, as an unbatched call would raise it
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        if broken is not self._executor:
            return  # another task already replaced it
        self.rebuilds += 1
        self._executor = self._new_executor()
        _kill(broken)

    def pids(self) -> list[int]:
        if self._executor is None:
            return []
        return [p.pid for p in (getattr(self._executor, "_processes", None) or {}).values() if p.pid]

    def close(self) -> None:
        for batch in self._open.values():
            batch.timer.cancel()
            for _, future in batch.calls:
                future.cancel()
        self._open.clear()
        for task in self._sent:
            task.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _resolve(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if future.done():
        return
    succeeded, value, remote_traceback = outcome
    if succeeded:
        future.set_result(value)
        return
    if isinstance(value, BaseException):
        value.add_note(f"in the pool process:\n{remote_traceback}")
    future.set_exception(value)


def _kill(executor: ProcessPoolExecutor) -> None:
    # The executor has no public way to stop a running task; terminating its processes is the
    # only way to get the core back. Other tasks in that pool fail with BrokenProcessPool and
    # are retried by their jobs.
    processes = dict(getattr(executor, "_processes", None) or {})
    for process in processes.values():
        if process.is_alive():
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
