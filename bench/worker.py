"""A pipeline worker for the benchmark: `python -m bench.worker`.

It runs exactly what `pipeline worker` runs (settings from the environment, `build_worker` under
uvloop, arq logging at WARNING) with two additions the measurement needs: the CPU pool's
processes are started before any job, and the line `ready` is printed on stdout once the
worker's resources are open. The benchmark starts its clock and its CPU window on that line,
so process start-up and imports are not charged to the crawl, just as in a long-running worker.

Only light standard modules are imported at module level (not even asyncio, which maps ~7 MB of
OpenSSL): the CPU pool's processes import this module again as `__mp_main__`, and they should
stay as small as under `pipeline worker`.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Any

READY = "ready"


class GcMeter:
    """Time the worker process spends in the garbage collector, per generation, from `start`."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._began

    def report(self) -> str:
        runs = ", ".join(
            f"gen{g} {n} in {s:.3f}s" for g, (n, s) in enumerate(zip(self.collections, self.seconds, strict=True))
        )
        return f"garbage collection since ready: {runs}"


async def _warm_pool(ctx: dict[str, Any]) -> None:
    """Start every CPU-pool process before the clock starts (they are spawned on demand)."""
    cpu = getattr(ctx.get("pipeline"), "cpu", None)
    if cpu is not None:
        await cpu.start_processes()


async def _run() -> None:
    import asyncio

    from pipeline.settings import load_settings
    from pipeline.worker import build_worker

    worker = build_worker(load_settings())
    # Wrap whatever start-up hook the worker has, so this keeps up with changes to it.
    original = worker.on_startup
    gc_meter = GcMeter()

    async def startup(ctx: dict[str, Any]) -> None:
        if original is not None:
            await original(ctx)
        await _warm_pool(ctx)
        gc_meter.start()
        print(READY, flush=True)

    worker.on_startup = startup
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        pass  # SIGTERM: arq cancels its main task, then close() runs the shutdown hooks
    finally:
        await worker.close()
        logging.getLogger("bench.worker").warning(gc_meter.report())


def main() -> None:
    import uvloop

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("arq").setLevel(logging.WARNING)
    uvloop.run(_run())


if __name__ == "__main__":
    main()
