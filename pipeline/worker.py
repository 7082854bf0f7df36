"""The arq worker: `arq pipeline.WorkerSettings` or `pipeline worker`.

`pipeline.WorkerSettings` is built on first access (see `pipeline/__init__.py`) by
`load_worker_settings`: it reads the configuration, starts the embedded services if none are
configured, and installs uvloop's event loop policy, because arq takes its loop from
`asyncio.get_event_loop()` when it builds the Worker. `import pipeline` alone does none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import uvloop
from arq import func
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from jobs import crawl, crawl_summary, fetch_page
from jobs.collect import collect_list, collect_object, collect_summary
from jobs.cpu import cpu_task
from pipeline.backlog import sweep_forever
from pipeline.claim import Claimer
from pipeline.connections import arq_redis_settings
from pipeline.cpupool import cpu_pool
from pipeline.cpustage import cpu_functions
from pipeline.embedded import resolve_services
from pipeline.frontier import Departures
from pipeline.lease import Leases
from pipeline.outcome import ARQ_TRIES_HEADROOM, RETIRED_JOBS, SETTLED_CRAWL
from pipeline.resources import Resources, open_resources
from pipeline.schedules import CRON_TIMEOUT_S, cron_jobs
from pipeline.serialization import deserialize, serialize
from pipeline.settings import ConfigError, Settings, load_settings

log = logging.getLogger("pipeline.worker")
Role = Literal["all", "io", "cpu"]
CLAIMS_LEASED = "claims_leased"  # set in ctx by workers whose claims already carry the lease TTL
GC_GEN0_THRESHOLD = 10_000
_CLASS_NAMES: dict[str, str] = {"all": "WorkerSettings", "io": "IOWorkerSettings", "cpu": "CPUWorkerSettings"}


async def on_startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["pipeline"] = await open_resources(settings, ctx["redis"], local_cpu=ctx["role"] == "all")
    ctx["departures"] = Departures(ctx["pipeline"].frontier)
    ctx["leases"] = leases = Leases(
        ctx["redis"],
        settings.worker.lease,
        queue=settings.redis.queue,
        claim_ttl_seconds=arq_claim_ttl(settings),
        claims_leased=bool(ctx.get(CLAIMS_LEASED)),
    )
    leases.start()
    ctx["sweeper"] = asyncio.create_task(sweep_forever(ctx["pipeline"].backlog), name="pipeline-backlog-sweeper")
    ctx["limits_publisher"] = asyncio.create_task(publish_host_limits(ctx["pipeline"]), name="pipeline-host-limits")
    tune_collector(ctx)
    log.info(
        "pipeline worker ready: %d jobs, fetch concurrency %d (%d per host), %d CPU processes",
        settings.worker.max_jobs,
        settings.fetch.concurrency,
        settings.fetch.per_host,
        settings.cpu_processes,
    )


def tune_collector(ctx: dict[str, Any]) -> None:
    """Garbage collection for a worker: what exists at start is frozen, young objects wait longer.

    With CPython's defaults the collector took 14% of a worker's CPU in the fan-out benchmark
    (0.71 s for 2,000 pages): every full collection walked everything loaded at start (modules,
    botocore's service models) and every few hundred allocations, a page's worth, set off a
    young-generation pass. Frozen start-up objects and a first threshold of 10,000 cut that to
    0.23 s, for young-generation pauses of ~15 ms, which a crawl does not feel. `on_shutdown`
    puts the previous settings back (an in-process worker shares its interpreter with the
    caller); of several workers in one process, the first to start does the restoring.
    """
    if gc.get_threshold()[0] == GC_GEN0_THRESHOLD:
        return  # another worker in this process has tuned it already
    ctx["gc_threshold"] = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *ctx["gc_threshold"][1:])


def restore_collector(ctx: dict[str, Any]) -> None:
    threshold = ctx.pop("gc_threshold", None)
    if threshold is not None:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def publish_host_limits(res: Resources, interval: float = 2.0) -> None:
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


async def on_job_start(ctx: dict[str, Any]) -> None:
    ctx["leases"].job_started(ctx["job_id"])


async def after_job_end(ctx: dict[str, Any]) -> None:
    ctx["leases"].job_ended(ctx["job_id"])
    crawl_id = ctx.get(SETTLED_CRAWL)
    if crawl_id is not None:
        ctx["departures"].job_left(crawl_id)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    for name in ("sweeper", "limits_publisher"):
        task = ctx.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    leases = ctx.pop("leases", None)
    if leases is not None:
        await leases.stop()
    departures = ctx.pop("departures", None)
    if departures is not None:
        await departures.drain()
    resources = ctx.pop("pipeline", None)
    if resources is not None:
        await resources.close()
    embedded = ctx.pop("embedded", None)
    if embedded is not None:
        embedded.stop()
    restore_collector(ctx)


def load_function(path: str) -> Callable[..., Awaitable[Any]]:
    """A job function from "package.module:function" (or "package.module.function")."""
    module_name, sep, name = path.partition(":")
    if not sep:
        module_name, _, name = path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"worker.functions: cannot import {path!r}: {exc}") from None
    if not inspect.iscoroutinefunction(function):
        raise ConfigError(f"worker.functions: {path!r} is not an async function")
    return function  # type: ignore[no-any-return]


async def on_cpu_startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["cpu_pool"] = cpu_pool(settings)
    ctx["cpu_registry"] = cpu_functions()
    log.info("pipeline CPU worker ready: %d processes on queue %s", settings.cpu_processes, settings.cpu.queue)


async def on_cpu_shutdown(ctx: dict[str, Any]) -> None:
    pool = ctx.pop("cpu_pool", None)
    if pool is not None:
        pool.close()


def cpu_worker_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A CPU worker: only `cpu_task`, only the CPU queue, and a process pool."""
    kwargs: dict[str, Any] = {
        "functions": [func(cpu_task, name="cpu_task", max_tries=3, timeout=settings.cpu.timeout * 2, keep_result=0)],
        "queue_name": settings.cpu.queue,
        "redis_settings": arq_redis_settings(settings),
        "on_startup": on_cpu_startup,
        "on_shutdown": on_cpu_shutdown,
        # Queued CPU tasks wait in the pool's own bound; a few more keep it fed.
        "max_jobs": settings.cpu_max_in_flight * 2,
        "poll_delay": settings.worker.poll_delay,
        "keep_result": 0,
        "job_completion_wait": int(settings.worker.shutdown_grace),
        "health_check_interval": 10,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "ctx": {"settings": settings, "role": "cpu"},
    }
    kwargs.update(overrides)
    return kwargs


def arq_job_timeout(settings: Settings) -> float:
    # arq's own timeout must never fire first: ours (in `settle`) retries, arq's drops the job.
    return settings.worker.job_timeout + 30


def arq_claim_ttl(settings: Settings) -> float:
    """The TTL arq gives a claimed job's in-progress key: the longest job timeout plus 10 s."""
    return max(arq_job_timeout(settings), CRON_TIMEOUT_S) + 10


def worker_kwargs(settings: Settings, role: Role = "all", **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker`: a fresh dict (and ctx) every call.

    `role` "all" does everything in one process; "io" fetches and stores, sending CPU work to
    the CPU queue; "cpu" runs only that CPU work (see `cpu_worker_kwargs`).
    """
    if role == "cpu":
        return cpu_worker_kwargs(settings, **overrides)
    worker = settings.worker
    tries = worker.max_tries + ARQ_TRIES_HEADROOM
    arq_timeout = arq_job_timeout(settings)
    jobs: list[Any] = [crawl, fetch_page, crawl_summary, collect_list, collect_object, collect_summary]
    jobs += [load_function(path) for path in worker.functions]
    kwargs: dict[str, Any] = {
        "functions": [
            func(job, name=job.__name__, max_tries=tries, timeout=arq_timeout, keep_result=worker.keep_result)
            for job in jobs
        ],
        "queue_name": settings.redis.queue,
        "redis_settings": arq_redis_settings(settings),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": on_job_start,
        "after_job_end": after_job_end,
        "job_completion_wait": int(worker.shutdown_grace),
        "max_jobs": worker.max_jobs,
        "poll_delay": worker.poll_delay,
        "job_timeout": arq_timeout,
        "keep_result": worker.keep_result,
        "max_tries": tries,
        "queue_read_limit": worker.queue_read_limit or max(worker.max_jobs * 5, 1000),
        "health_check_interval": 10,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "cron_jobs": cron_jobs(settings),
        "ctx": {"settings": settings, "role": role},
    }
    kwargs.update(overrides)
    return kwargs


class ResilientWorker(Worker):
    """arq's worker with a cheaper claim, made to ride out a Redis restart.

    It claims jobs with one script per poll (`pipeline.claim`) instead of arq's transaction
    per job, and with the lease TTL straight away; a job whose URL the frontier settled and took
    out of the queue in one step (`Frontier.finish`) skips arq's finishing transaction. When
    Redis goes away it backs off and polls again instead of ending: arq's own loop ends on the
    first connection error in its poll. `pipeline worker` runs this class;
    `arq pipeline.WorkerSettings` runs arq's own, which needs a supervisor that restarts it
    (running jobs are not lost either way: their leases lapse and another worker runs them).
    """

    _redis_failures = 0
    _claimer: Claimer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._retired: set[str] = set()
        self.ctx[RETIRED_JOBS] = self._retired
        settings: Settings | None = self.ctx.get("settings")
        if settings is not None and self.ctx.get("role") != "cpu":
            # Claim with the lease straight away: arq's claim TTL (the longest job timeout plus
            # 10 s) is what a dead worker's jobs would otherwise wait out.
            self.in_progress_timeout_s = settings.worker.lease
            self.ctx[CLAIMS_LEASED] = True

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim what this worker has room for in one round trip (see `pipeline.claim`).

        arq would open a claim transaction per job, including for jobs that are running
        (here or on another worker) and so still sit in the queue. Jobs this worker runs
        itself are not even sent.
        """
        wanted = self.max_jobs - self.job_counter
        if wanted <= 0:
            return
        candidates = [job_id for job_id in (raw.decode() for raw in job_ids) if not self._running_here(job_id)]
        if not candidates:
            return
        if self._claimer is None:
            self._claimer = Claimer(self.pool, self.queue_name, self.in_progress_timeout_s)
        # A Redis error here propagates before any slot is taken; a claim whose reply was lost
        # runs again elsewhere once its short TTL lapses.
        for claim in await self._claimer.claim(candidates, wanted, timestamp_ms()):
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(claim.job_id, claim.score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[claim.job_id] = task

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        if job_id in self._retired:
            self._retired.discard(job_id)
            if result_data is None:
                return  # the frontier took the job out of the queue as its URL settled
        await super().finish_job(
            job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
        )

    async def close(self) -> None:
        # arq's close cancels the running jobs, then gathers them without `return_exceptions`:
        # one job still running makes close raise CancelledError before `on_shutdown` has
        # closed anything. Cancelled here first, the jobs run again once their leases lapse.
        running = list(self.tasks.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.tasks.clear()
        await super().close()

    def _running_here(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is not None and not task.done()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            self._redis_failures += 1
            delay = min(5.0, 0.1 * 2**self._redis_failures)
            log.warning("Redis unavailable (%s: %s); polling again in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
        else:
            self._redis_failures = 0


def build_worker(settings: Settings, role: Role = "all", **overrides: Any) -> Worker:
    return ResilientWorker(**worker_kwargs(settings, role, **overrides))


def load_worker_settings(role: Role = "all") -> type:
    """The settings class arq reads (`WorkerSettings` and its I/O and CPU variants)."""
    try:
        settings, embedded = resolve_services(load_settings())
    except ConfigError as exc:
        # Stop at start with the key named, not with a traceback from deep inside arq.
        sys.exit(f"pipeline: invalid configuration: {exc}")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    kwargs = worker_kwargs(settings, role)
    if embedded is not None:
        kwargs["ctx"]["embedded"] = embedded
    return type(_CLASS_NAMES[role], (), kwargs)
