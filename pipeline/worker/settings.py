"""What arq is told to build: `WorkerSettings` and its split-role variants.

`pipeline.WorkerSettings` (what `arq pipeline.WorkerSettings` runs), `IOWorkerSettings` and
`CPUWorkerSettings` are built on first access (see `pipeline/__init__.py`) by
`load_worker_settings`: it reads the configuration, starts the embedded services if none are
configured, installs uvloop's event loop policy (arq takes its loop from
`asyncio.get_event_loop()` when it builds the worker) and makes arq's CLI build a
`PipelineWorker` (`pipeline.worker.arq_worker`). `pipeline worker`, the tests and the benchmark
build the same worker from the same keyword arguments, through `build_worker`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import uvloop

from pipeline.embedded.services import resolve_services
from pipeline.errors import ConfigError, ServiceError
from pipeline.settings import Settings, load_settings
from pipeline.settle.retries import INFRA_EXTRA_TRIES
from pipeline.worker import lifecycle
from pipeline.worker.arq_worker import PipelineWorker, teach_arq_cli
from pipeline.worker.context import Role, WorkerContext
from pipeline.worker.cron import CRON_TIMEOUT_S, cron_jobs
from pipeline.worker.queue import arq_redis_settings
from pipeline.worker.registry import BUILTIN_JOBS, CPU_TASK_JOB, job_functions
from pipeline.worker.serialization import deserialize, serialize

# arq refuses to start a job past its own max_tries without telling us; give it headroom so
# our last attempt always runs and records the failure itself.
ARQ_TRIES_HEADROOM = INFRA_EXTRA_TRIES + 3
_CLASS_NAMES: dict[Role, str] = {"all": "WorkerSettings", "io": "IOWorkerSettings", "cpu": "CPUWorkerSettings"}


def arq_job_timeout(settings: Settings) -> float:
    # arq's own timeout must never fire first: ours (in `settle`) retries, arq's drops the job.
    return settings.worker.job_timeout + 30


def arq_claim_ttl(settings: Settings) -> float:
    """The TTL arq would give a claimed job's in-progress key: the longest job timeout plus 10 s."""
    return max(arq_job_timeout(settings), CRON_TIMEOUT_S) + 10


def worker_kwargs(settings: Settings, role: Role = "all", **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for the worker: a fresh dict (and ctx) every call.

    `role` "all" does everything in one process; "io" fetches and stores, sending CPU work to
    the CPU queue; "cpu" runs only that CPU work.
    """
    if role == "cpu":
        return _cpu_worker_kwargs(settings, **overrides)
    worker = settings.worker
    tries = worker.max_tries + ARQ_TRIES_HEADROOM
    arq_timeout = arq_job_timeout(settings)
    ctx: WorkerContext = {"settings": settings, "role": role, "claim_ttl_s": arq_claim_ttl(settings)}
    kwargs: dict[str, Any] = {
        "functions": job_functions(
            [*BUILTIN_JOBS, *worker.functions], max_tries=tries, timeout=arq_timeout, keep_result=worker.keep_result
        ),
        "queue_name": settings.redis.queue,
        "redis_settings": arq_redis_settings(settings),
        "on_startup": lifecycle.on_startup,
        "on_shutdown": lifecycle.on_shutdown,
        "on_job_start": lifecycle.on_job_start,
        "after_job_end": lifecycle.after_job_end,
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
        "ctx": ctx,
    }
    kwargs.update(overrides)
    return kwargs


def _cpu_worker_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A CPU worker: only `cpu_task`, only the CPU queue, and a process pool."""
    ctx: WorkerContext = {"settings": settings, "role": "cpu"}
    kwargs: dict[str, Any] = {
        "functions": job_functions([CPU_TASK_JOB], max_tries=3, timeout=settings.cpu.timeout * 2, keep_result=0),
        "queue_name": settings.cpu.queue,
        "redis_settings": arq_redis_settings(settings),
        "on_startup": lifecycle.on_cpu_startup,
        "on_shutdown": lifecycle.on_cpu_shutdown,
        # Queued CPU tasks wait in the pool's own bound; a few more keep it fed.
        "max_jobs": settings.cpu_max_in_flight * 2,
        "poll_delay": settings.worker.poll_delay,
        "keep_result": 0,
        "job_completion_wait": int(settings.worker.shutdown_grace),
        "health_check_interval": 10,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "ctx": ctx,
    }
    kwargs.update(overrides)
    return kwargs


def build_worker(settings: Settings, role: Role = "all", **overrides: Any) -> PipelineWorker:
    """The worker for `settings`, as `pipeline worker` runs it (and arq's CLI builds it)."""
    return PipelineWorker(**worker_kwargs(settings, role, **overrides))


def _log_beside_arq() -> None:
    """The worker's own lines go where arq's go: arq's CLI configures only arq's logger."""
    logger = logging.getLogger("pipeline")
    if logger.handlers or logging.getLogger().handlers:
        return  # the program configured logging itself
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _JobLinesOnlyWhenVerbose(logging.Filter):
    """Drop arq's two INFO lines per job (started, finished) unless arq logs at DEBUG (`arq -v`).

    A crawl runs thousands of jobs a second's worth of them: the lines cost the worker a few
    percent of its CPU and bury the lines that matter. `pipeline worker` shows them with `-v`
    only; this keeps `arq pipeline.WorkerSettings` the same. Failures (warnings) always show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.funcName != "run_job":
            return True
        return logging.getLogger("arq").getEffectiveLevel() <= logging.DEBUG


def _quiet_job_lines() -> None:
    logger = logging.getLogger("arq.worker")
    if not any(isinstance(f, _JobLinesOnlyWhenVerbose) for f in logger.filters):
        logger.addFilter(_JobLinesOnlyWhenVerbose())


def load_worker_settings(role: Role = "all") -> type:
    """The settings class arq reads (`WorkerSettings` and its I/O and CPU variants)."""
    try:
        settings, embedded = resolve_services(load_settings())
        kwargs = worker_kwargs(settings, role)
    except ConfigError as exc:
        # Stop at start with the key named, not with a traceback from deep inside arq.
        sys.exit(f"pipeline: invalid configuration: {exc}")
    except ServiceError as exc:
        sys.exit(f"pipeline: {exc}")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    teach_arq_cli()
    _log_beside_arq()
    _quiet_job_lines()
    if embedded is not None:
        kwargs["ctx"]["embedded"] = embedded
    return type(_CLASS_NAMES[role], (), {**kwargs, "worker_class": PipelineWorker})
