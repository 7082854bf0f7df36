"""Where it is decided whether a failure is retried, and when.

Every page job runs its work through `settle`. arq itself retries only on its own `Retry`: any
other exception, and its own job timeout, fail a job at once and silently, and a crawl must
never drop a URL that way. So here:

- faults of the page or its site that may pass (connection errors, timeouts, 429, 5xx: a
  retryable `FetchError`) are retried with exponential backoff and jitter, never sooner than the
  server's `Retry-After`, up to `worker.max_tries` attempts;
- faults of our own services (MongoDB, Redis, S3, a dead pool process: `TRANSIENT`) get
  `INFRA_EXTRA_TRIES` more, since they are not the page's fault;
- anything unexpected is logged with its traceback and retried like a page fault;
- a `PermanentFailure`, a non-retryable `FetchError` or the last attempt records a failure;
- a URL robots.txt disallows (`DisallowedByRobots`) settles as skipped, never requested;
- a job whose host is busy before it sent anything (`HostBusy`) goes back to the queue without
  counting a try (`Deferred`, see `pipeline.download.deferral`).

A downloaded page's writes are retried in place first (`ride_out`), so a storage blip does not
cost another request to the site.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.connections import redact
from pipeline.download.deferral import deferrable
from pipeline.errors import (
    BlobStoreError,
    CpuPoolBroken,
    CpuTimeout,
    Deferred,
    DisallowedByRobots,
    FetchError,
    HostBusy,
    InvalidPayload,
    PermanentFailure,
    RetryLater,
)
from pipeline.schedule.frontier import Kind
from pipeline.settings import Settings
from pipeline.settle.outcome import Attempt, finish, record_failure, record_skipped
from pipeline.worker.context import RETIRED_JOBS, SETTLED_CRAWL, WorkerContext
from pipeline.worker.resources import Resources

log = logging.getLogger("pipeline.settle")
T = TypeVar("T")

# A database, S3 or Redis outage is not the page's fault: it gets this many attempts on top of
# `worker.max_tries` (about ten minutes of backoff) before the page is recorded as failed.
INFRA_EXTRA_TRIES = 20
INFRA_MAX_DELAY_S = 30.0
MAX_RETRY_AFTER_S = 3600.0

# Failures of our own infrastructure (queue, database, blob store, CPU pool): retried, never
# recorded against the URL.
TRANSIENT: tuple[type[BaseException], ...] = (
    PyMongoError,
    RedisError,
    OSError,
    asyncio.TimeoutError,
    CpuPoolBroken,
    CpuTimeout,
    BlobStoreError,
    BotoCoreError,
    ClientError,
)

Work = Callable[[Resources, Attempt], Awaitable[None]]


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a server's `Retry-After` is a floor, not a suggestion."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    delay = delay * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay


async def settle(
    ctx: WorkerContext, crawl_id: str, kind: Kind, url: str, work: Work, *, depth: int | None = None
) -> None:
    """Run `work`, turning every outcome into stored, failed-and-recorded, or `RetryLater`.

    A closed crawl (done, or cancelled) is never revived by one of its jobs running again: a
    re-run (a retry, or a job whose worker died) first checks, and does no work for a closed
    crawl; a job that would be retried while its crawl is being cancelled settles as cancelled
    instead. First attempts, nearly every job, pay nothing for this.
    """
    res = ctx["pipeline"]
    retired_jobs = ctx.get(RETIRED_JOBS)
    job_id = ctx.get("job_id") if retired_jobs is not None else None
    attempt = Attempt(
        int(ctx.get("job_try", 1)), res.settings.worker.max_tries, INFRA_EXTRA_TRIES, job_id=job_id, depth=depth
    )
    try:
        if attempt.number > 1 and await res.frontier.closed(crawl_id):
            await finish(res, crawl_id, kind, url, stored=False, fetched=False, attempt=attempt, cancelled=True)
        else:
            try:
                await _attempt(res, crawl_id, kind, url, attempt, work)
            except RetryLater:
                if not await res.frontier.closed(crawl_id):
                    raise
                await finish(res, crawl_id, kind, url, stored=False, fetched=False, attempt=attempt, cancelled=True)
        if attempt.retired and retired_jobs is not None and job_id is not None:
            retired_jobs.add(job_id)  # out of the queue already: the worker skips arq's finish
        else:
            ctx[SETTLED_CRAWL] = crawl_id  # the job will leave the queue: see `after_job_end`
    except TRANSIENT as exc:
        # Even recording the outcome failed (database or Redis away): try the whole job again.
        delay = backoff_delay(attempt.number, res.settings.fetch.retry_base_delay, res.settings.fetch.retry_max_delay)
        log.warning(
            "could not settle %s (attempt %d), retrying in %.1fs: %s: %s",
            redact(url),
            attempt.number,
            delay,
            type(exc).__name__,
            exc,
        )
        raise RetryLater(delay) from None


async def _attempt(res: Resources, crawl_id: str, kind: Kind, url: str, attempt: Attempt, work: Work) -> None:
    settings = res.settings
    reason: str
    status: int | None = None
    retry_after: float | None = None
    try:
        # Our own deadline, shorter than arq's: arq's timeout fails the job without a trace.
        async with asyncio.timeout(settings.worker.job_timeout):
            with deferrable():
                await work(res, attempt)
        return
    except HostBusy as exc:
        log.debug("deferring %s for %.2fs: %s", redact(url), exc.delay, exc.reason)
        raise Deferred(exc.delay) from None
    except DisallowedByRobots:
        await record_skipped(res, crawl_id, kind, url, attempt)
        return
    except PermanentFailure as exc:
        await record_failure(res, crawl_id, kind, url, exc.reason, exc.status, attempt)
        return
    except FetchError as exc:
        if not exc.retryable:
            await record_failure(res, crawl_id, kind, url, exc.reason, exc.status, attempt)
            return
        reason, status, retry_after = exc.reason, exc.status, exc.retry_after
    except TimeoutError:
        reason = f"job ran past {settings.worker.job_timeout:g}s"
    except (InvalidPayload, RetryLater):
        raise
    except TRANSIENT as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if not attempt.last_for_infrastructure:
            delay = backoff_delay(attempt.number, settings.fetch.retry_base_delay, INFRA_MAX_DELAY_S)
            log.warning("retrying %s in %.1fs (attempt %d): %s", redact(url), delay, attempt.number, reason)
            res.metrics.retry()
            raise RetryLater(delay) from None
    except Exception as exc:
        # Not a fault we know: a bug, or a library failing in a new way. The traceback goes to
        # the log, and the URL is retried and finally recorded like any other failure, never
        # dropped by arq.
        log.exception("unexpected error on %s (attempt %d)", redact(url), attempt.number)
        reason = f"internal error: {type(exc).__name__}: {exc}"
    if attempt.last:
        await record_failure(res, crawl_id, kind, url, reason, status, attempt)
        return
    delay = backoff_delay(attempt.number, settings.fetch.retry_base_delay, settings.fetch.retry_max_delay, retry_after)
    log.info("retrying %s in %.1fs (attempt %d): %s", redact(url), delay, attempt.number, redact(reason))
    res.metrics.retry()
    raise RetryLater(delay)


async def ride_out(write: Callable[[], Awaitable[T]], settings: Settings) -> T:
    """Retry a write to our own storage in place for `storage.retry_window` seconds.

    A page already downloaded is not fetched again just because MongoDB or S3 blinked: the
    write is retried here, with backoff, before the job gives up and is retried as a whole.
    """
    deadline = time.monotonic() + settings.storage.retry_window
    delay = 0.1
    while True:
        try:
            return await write()
        except TRANSIENT:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)
