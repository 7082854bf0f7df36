"""Which job functions a worker runs: the built-in ones and yours, all found by import path.

The machinery never imports the job functions (`pipeline.jobs`): they are registered here by
path, exactly as `worker.functions` registers a user's. Each is wrapped so that a job asking to
run again later (`RetryLater`, raised by the settle stage) becomes arq's `Retry`: jobs and
stages know nothing of arq. A `Deferred` job is also noted for the worker, which then takes
back the try arq counted for it (`PipelineWorker.finish_job`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from arq import Retry, func
from arq.typing import WorkerCoroutine
from arq.worker import Function

from pipeline.errors import ConfigError, Deferred, RetryLater
from pipeline.worker.context import DEFERRED_JOBS

JobFunction = Callable[..., Awaitable[Any]]

BUILTIN_JOBS = (
    "pipeline.jobs.crawl:crawl",
    "pipeline.jobs.fetch_page:fetch_page",
    "pipeline.jobs.sitemap:sitemap",
    "pipeline.jobs.sitemap:robots_sitemaps",
    "pipeline.jobs.complete:crawl_summary",
    "pipeline.jobs.collect:collect_list",
    "pipeline.jobs.collect:collect_object",
    "pipeline.jobs.collect:collect_summary",
    "pipeline.jobs.reprocess:reprocess_list",
    "pipeline.jobs.reprocess:reprocess_page",
)
CPU_TASK_JOB = "pipeline.jobs.cpu:cpu_task"
SCHEDULED_CRAWL_JOB = "pipeline.jobs.scheduled:scheduled_crawl"


def load_function(path: str, setting: str = "worker.functions") -> JobFunction:
    """An async function from "package.module:function" (or "package.module.function")."""
    module_name, sep, name = path.partition(":")
    if not sep:
        module_name, _, name = path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot import {path!r}: {exc}") from None
    if not inspect.iscoroutinefunction(function):
        raise ConfigError(f"{setting}: {path!r} is not an async function")
    return function  # type: ignore[no-any-return]


def arq_job(function: JobFunction) -> JobFunction:
    """`function` as arq runs it: `RetryLater` becomes arq's `Retry`."""

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await function(ctx, *args, **kwargs)
        except RetryLater as exc:
            deferred = ctx.get(DEFERRED_JOBS)
            if isinstance(exc, Deferred) and deferred is not None and "job_id" in ctx:
                deferred.add(ctx["job_id"])
            # arq treats a zero defer as "now" and skips moving the job's score: keep it positive.
            raise Retry(defer=max(exc.delay, 0.001)) from None

    return run


def job_functions(paths: Sequence[str], *, max_tries: int, timeout: float, keep_result: float) -> list[Function]:
    """arq `Function`s for the jobs at `paths`, each registered under its function's name."""
    registered: list[Function] = []
    for path in paths:
        function = load_function(path)
        job = cast(WorkerCoroutine, arq_job(function))
        registered.append(
            func(job, name=function.__name__, max_tries=max_tries, timeout=timeout, keep_result=keep_result)
        )
    return registered
