"""A worker's start and end: one exit stack owns everything the worker opens.

`on_startup` opens the shared resources (`pipeline.worker.resources`) and starts the worker's
background tasks (lease renewal, the backlog sweeper, the sweeper of cancelled crawls, the
per-host limit publisher, the heartbeat, the metrics server), each
registered on one `AsyncExitStack` together with the embedded services the worker started and
its garbage-collector tuning. `on_shutdown` closes them all with one call, in reverse order:
the tasks stop, buffered writes are flushed, clients close, services stop last.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable
from contextlib import AsyncExitStack

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.crawl import control
from pipeline.crawl.lifecycle import queue_by_state
from pipeline.crunch.registry import cpu_functions
from pipeline.observe.exporter import serve_metrics
from pipeline.observe.heartbeat import Liveness, WorkerCard, heartbeat_forever, watch_loop_lag
from pipeline.observe.metrics import LiveCollector, Metrics
from pipeline.schedule.backlog import sweep_forever
from pipeline.schedule.frontier import Departures
from pipeline.worker.context import SETTLED_CRAWL, WorkerContext
from pipeline.worker.leases import Leases
from pipeline.worker.resources import Resources, cpu_pool, open_resources

log = logging.getLogger("pipeline.worker")

GC_GEN0_THRESHOLD = 10_000
HOST_LIMITS_INTERVAL_S = 2.0


async def on_startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    stack = ctx["closing"] = AsyncExitStack()
    try:
        embedded = ctx.get("embedded")
        if embedded is not None:
            stack.callback(embedded.stop)
        res = ctx["pipeline"] = await open_resources(settings, ctx["redis"], stack, local_cpu=ctx["role"] == "all")
        departures = Departures(res.frontier)
        stack.push_async_callback(departures.drain)
        leases = Leases(
            ctx["redis"],
            settings.worker.lease,
            queue=settings.redis.queue,
            claim_ttl_seconds=ctx.get("claim_ttl_s"),
            claims_leased=True,
        )
        leases.start()
        stack.push_async_callback(leases.stop)
        ctx["leases"] = leases
        ctx["departures"] = departures
        background(stack, sweep_forever(res.backlog), "pipeline-backlog-sweeper")
        steering = control.CrawlControl(res.store, res.frontier, res.backlog)
        background(stack, control.sweep_forever(steering), "pipeline-cancel-sweeper")
        background(stack, publish_host_limits(res), "pipeline-host-limits")
        stack.callback(log_host_limit_cost, res)
        await observe(ctx, res, stack)
        tune_collector(stack)
    except BaseException:
        await stack.aclose()
        raise
    log.info(
        "pipeline worker ready: %d jobs, fetch concurrency %d (%d per host), %d CPU processes%s",
        settings.worker.max_jobs,
        settings.fetch.concurrency,
        settings.fetch.per_host,
        settings.cpu_processes,
        " (started on first use)" if res.cpu is not None and not res.cpu.pids() else "",
    )


async def observe(ctx: WorkerContext, res: Resources, stack: AsyncExitStack) -> None:
    """Loop-lag watch, metrics and health server (unless `worker.metrics_port` is 0), heartbeat."""
    settings = res.settings
    liveness = ctx.setdefault("liveness", Liveness())
    poll_within = max(5.0, settings.worker.poll_delay * 20)
    card = WorkerCard(role=ctx["role"], queue=settings.redis.queue, max_jobs=settings.worker.max_jobs)
    background(stack, watch_loop_lag(liveness, res.metrics), "pipeline-loop-lag")
    if isinstance(res.metrics, Metrics):
        load: dict[str, tuple[int, int]] = {}

        async def refresh_load() -> None:
            try:
                load.update(await queue_by_state(res.store, res.frontier))
            except (PyMongoError, RedisError) as exc:
                log.warning("metrics: could not read queue depth: %s", exc)

        cpu = res.cpu
        res.metrics.registry.register(
            LiveCollector(
                res.limiter.host_rows,
                (lambda: (cpu.busy, cpu.processes)) if cpu is not None else None,
                lambda: load,
            )
        )
        host = settings.worker.metrics_host
        port = await serve_metrics(
            stack,
            res.metrics,
            liveness,
            host=host,
            port=settings.worker.metrics_port,
            poll_within_s=poll_within,
            before_scrape=refresh_load,
        )
        card.metrics = f"{host}:{port}"
        ctx["metrics_port"] = port
    background(stack, heartbeat_forever(ctx["redis"], card, liveness, poll_within), "pipeline-heartbeat")


async def on_shutdown(ctx: WorkerContext) -> None:
    stack = ctx.pop("closing", None)
    if stack is not None:
        await stack.aclose()
    ctx.pop("pipeline", None)


async def on_job_start(ctx: WorkerContext) -> None:
    ctx["leases"].job_started(ctx["job_id"])


async def after_job_end(ctx: WorkerContext) -> None:
    ctx["leases"].job_ended(ctx["job_id"])
    crawl_id = ctx.get(SETTLED_CRAWL)
    if crawl_id is not None:
        ctx["departures"].job_left(crawl_id)


async def on_cpu_startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    stack = ctx["closing"] = AsyncExitStack()
    embedded = ctx.get("embedded")
    if embedded is not None:
        stack.callback(embedded.stop)
    pool = ctx["cpu_pool"] = cpu_pool(settings)
    stack.callback(pool.close)
    await pool.start_processes()
    ctx["cpu_registry"] = cpu_functions(settings.cpu.functions)
    log.info("pipeline CPU worker ready: %d processes on queue %s", settings.cpu_processes, settings.cpu.queue)


async def on_cpu_shutdown(ctx: WorkerContext) -> None:
    stack = ctx.pop("closing", None)
    if stack is not None:
        await stack.aclose()


def background(stack: AsyncExitStack, work: Awaitable[None], name: str) -> None:
    """Run `work` as a task until the stack closes, then cancel it and wait for it to end."""
    task = asyncio.ensure_future(work)
    task.set_name(name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


def tune_collector(stack: AsyncExitStack) -> None:
    """Garbage collection for a worker: what exists at start is frozen, young objects wait longer.

    With CPython's defaults every full collection walks everything loaded at start (modules,
    botocore's service models), and every few hundred allocations, a page's worth, set off a
    young-generation pass; the collector then takes a large share of a worker's CPU
    (bench/RESULTS.md). Frozen start-up objects and a first threshold of 10,000 leave
    young-generation pauses a crawl does not feel. The previous settings come back when the
    stack closes (an in-process worker shares its interpreter with the caller); of several
    workers in one process, the first to start does the restoring.
    """
    if gc.get_threshold()[0] == GC_GEN0_THRESHOLD:
        return  # another worker in this process has tuned it already
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *threshold[1:])

    def restore() -> None:
        gc.set_threshold(*threshold)
        gc.unfreeze()

    stack.callback(restore)


def log_host_limit_cost(res: Resources) -> None:
    """What the fleet's per-host limits cost this worker in Redis round trips (the benchmark reads it)."""
    fleet = res.limiter.fleet
    if fleet is not None:
        requests = res.limiter.requests
        log.info(
            "per-host limits: %d requests, %d Redis round trips (%.3f per request)",
            requests,
            fleet.round_trips,
            fleet.round_trips / max(1, requests),
        )


async def publish_host_limits(res: Resources, interval: float = HOST_LIMITS_INTERVAL_S) -> None:
    """Share this worker's current per-host limits, so crawl status can show them."""
    while True:
        await asyncio.sleep(interval)
        limits = res.limiter.limits()
        if not limits:
            continue
        try:
            await res.frontier.publish_host_limits(limits)
        except RedisError as exc:
            log.warning("could not publish host limits: %s", exc)
