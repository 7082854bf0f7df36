"""The arq worker: `arq pipeline.WorkerSettings` or `pipeline worker`.

`pipeline.WorkerSettings` is built on first access (see `pipeline/__init__.py`) by
`load_worker_settings`: it reads the configuration, starts the embedded services if none are
configured, and installs uvloop's event loop policy, because arq takes its loop from
`asyncio.get_event_loop()` when it builds the Worker. `import pipeline` alone does none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import uvloop
from arq import func
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs import crawl, fetch_page
from pipeline.backlog import sweep_forever
from pipeline.embedded import resolve_services
from pipeline.frontier import Departures
from pipeline.lease import Leases
from pipeline.outcome import ARQ_TRIES_HEADROOM, SETTLED_CRAWL
from pipeline.resources import open_resources
from pipeline.serialization import deserialize, serialize
from pipeline.settings import ConfigError, Settings, load_settings

log = logging.getLogger("pipeline.worker")
# With a 2 s cap on the backoff, about 40 s of Redis being away is ridden out.
REDIS_COMMAND_RETRIES = 20


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings; commands ride out a Redis restart instead of killing the worker."""
    redis = RedisSettings.from_dsn(settings.redis.url)
    redis.conn_timeout = max(1, int(settings.redis.connect_timeout))
    redis.conn_retries = 30
    redis.conn_retry_delay = 1
    redis.retry_on_error = [RedisConnectionError, RedisTimeoutError]
    redis.retry = RedisRetry(ExponentialBackoff(cap=2.0, base=0.1), REDIS_COMMAND_RETRIES)
    return redis


async def on_startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["pipeline"] = await open_resources(settings, ctx["redis"])
    ctx["departures"] = Departures(ctx["pipeline"].frontier)
    ctx["leases"] = leases = Leases(ctx["redis"], settings.worker.lease)
    leases.start()
    ctx["sweeper"] = asyncio.create_task(sweep_forever(ctx["pipeline"].backlog), name="pipeline-backlog-sweeper")
    log.info(
        "pipeline worker ready: %d jobs, fetch concurrency %d (%d per host), %d CPU processes",
        settings.worker.max_jobs,
        settings.fetch.concurrency,
        settings.fetch.per_host,
        settings.cpu_processes,
    )


async def on_job_start(ctx: dict[str, Any]) -> None:
    ctx["leases"].job_started(ctx["job_id"])


async def after_job_end(ctx: dict[str, Any]) -> None:
    ctx["leases"].job_ended(ctx["job_id"])
    crawl_id = ctx.get(SETTLED_CRAWL)
    if crawl_id is not None:
        ctx["departures"].job_left(crawl_id)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    sweeper = ctx.pop("sweeper", None)
    if sweeper is not None:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
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


def worker_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker`: a fresh dict (and ctx) every call."""
    worker = settings.worker
    tries = worker.max_tries + ARQ_TRIES_HEADROOM
    # arq's own timeout must never fire first: ours (in `settle`) retries, arq's drops the job.
    arq_timeout = worker.job_timeout + 30
    kwargs: dict[str, Any] = {
        "functions": [
            func(crawl, name="crawl", max_tries=tries, timeout=arq_timeout, keep_result=worker.keep_result),
            func(fetch_page, name="fetch_page", max_tries=tries, timeout=arq_timeout, keep_result=worker.keep_result),
        ],
        "queue_name": settings.redis.queue,
        "redis_settings": redis_settings(settings),
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
        "ctx": {"settings": settings},
    }
    kwargs.update(overrides)
    return kwargs


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**worker_kwargs(settings, **overrides))


def load_worker_settings() -> type:
    """The `WorkerSettings` class arq reads, from the configuration in force."""
    try:
        settings, embedded = resolve_services(load_settings())
    except ConfigError as exc:
        # Stop at start with the key named, not with a traceback from deep inside arq.
        sys.exit(f"pipeline: invalid configuration: {exc}")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    kwargs = worker_kwargs(settings)
    if embedded is not None:
        kwargs["ctx"]["embedded"] = embedded
    return type("WorkerSettings", (), kwargs)
