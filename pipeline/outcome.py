"""How a job attempt ends: settled (stored or failed for good) or retried later.

arq retries only on `Retry`; any other exception, and its own job timeout, fail a job at once
and silently. A crawl must never drop a URL that way, so every page job runs through `settle`:
transient faults (network, 429/5xx, a database or S3 briefly away, a dead pool process) become
`Retry` with exponential backoff and jitter, and the last attempt, or a permanent fault,
records a failure document with the reason. Either way the URL is finished in the frontier
exactly once, and the crawl completes when its last URL settles.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq import Retry
from botocore.exceptions import BotoCoreError, ClientError
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.blobs import BlobStoreError
from pipeline.cpupool import CpuPoolBroken, CpuTimeout
from pipeline.crawls import complete_crawl
from pipeline.fetch import FetchError
from pipeline.frontier import Kind
from pipeline.resources import Resources
from pipeline.storage import utcnow

log = logging.getLogger("pipeline.jobs")

# A database, S3 or Redis outage is not the page's fault: it gets this many attempts on top of
# `worker.max_tries` (about ten minutes of backoff) before the page is recorded as failed.
INFRA_EXTRA_TRIES = 20
INFRA_MAX_DELAY_S = 30.0
# arq refuses to start a job past its own max_tries without telling us; give it headroom so
# our last attempt always runs and records the failure itself.
ARQ_TRIES_HEADROOM = INFRA_EXTRA_TRIES + 3
MAX_RETRY_AFTER_S = 3600.0
SETTLED_CRAWL = "settled_crawl"
# In ctx on workers that skip arq's `finish_job` for jobs the frontier already took out of the
# queue: the ids of those jobs, shared by all of the worker's jobs.
RETIRED_JOBS = "retired_jobs"


class PermanentFailure(Exception):
    """A URL that no retry will fix (404, not HTML where HTML is needed, blocked address...)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class InvalidPayload(TypeError):
    """A job's arguments do not fit its function: the job fails, the worker carries on."""


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


@dataclass
class Attempt:
    number: int
    max_tries: int
    # Set when the worker lets the frontier take the job out of the queue as the URL settles
    # (see `Frontier.finish`); `retired` then tells whether it did.
    job_id: str | None = None
    retired: bool = False

    @property
    def last(self) -> bool:
        """No retry left for faults of the page or its site."""
        return self.number >= self.max_tries

    @property
    def last_for_infrastructure(self) -> bool:
        """No retry left even for faults of our own services."""
        return self.number >= self.max_tries + INFRA_EXTRA_TRIES


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a server's `Retry-After` is a floor, not a suggestion."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    delay = delay * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay


def check_validators(validators: Any) -> dict[str, str]:
    """The validators of a conditional GET, as a job received them (None: an unconditional GET)."""
    if validators is None:
        return {}
    if not isinstance(validators, dict) or not all(
        k in ("etag", "last_modified") and isinstance(v, str) for k, v in validators.items()
    ):
        raise InvalidPayload(f"validators must map etag/last_modified to strings, got {validators!r:.200}")
    return validators


def check_payload(crawl_id: Any, url: Any, depth: Any) -> tuple[str, str, int]:
    if not isinstance(crawl_id, str) or not crawl_id:
        raise InvalidPayload(f"crawl_id must be a non-empty string, got {crawl_id!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidPayload(f"url must be an http(s) URL string, got {url!r:.200}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise InvalidPayload(f"depth must be a whole number >= 0, got {depth!r}")
    return crawl_id, url, depth


async def finish(
    res: Resources,
    crawl_id: str,
    kind: Kind,
    url: str,
    *,
    stored: bool,
    fetched: bool,
    attempt: Attempt,
    unchanged: bool = False,
) -> None:
    """Settle the URL in the frontier; the call that settles the crawl's last URL completes it.

    Settling also drains the backlog: when the crawl's queue is down to half its bound and URLs
    are parked, this job moves the oldest of them back into the queue.
    """
    settled = await res.frontier.finish(
        crawl_id,
        kind,
        url,
        stored=stored,
        fetched=fetched,
        retries=attempt.number - 1,
        unchanged=unchanged,
        retire=attempt.job_id,
    )
    attempt.retired = settled.retired
    if settled.waiting > 0:
        options = await res.crawl_options(crawl_id)
        if settled.queued <= options.max_queued // 2:
            await res.backlog.refill(crawl_id, options.max_queued - settled.queued, options.max_queued)
    if settled.pending == 0 and await complete_crawl(
        res.store, res.frontier, crawl_id, await res.crawl_options(crawl_id)
    ):
        log.info("crawl %s done", crawl_id)


async def _record_failure(
    res: Resources, crawl_id: str, kind: Kind, url: str, reason: str, status: int | None, attempt: Attempt
) -> None:
    await res.store.record_failure(
        {
            "crawl_id": crawl_id,
            "url": url,
            "kind": kind,
            "attempts": attempt.number,
            "error": reason,
            "status": status,
            "failed_at": utcnow(),
        }
    )
    await finish(res, crawl_id, kind, url, stored=False, fetched=status is not None, attempt=attempt)
    log.info("failed %s after %d attempt(s): %s", url, attempt.number, reason)


async def settle(
    ctx: dict[str, Any],
    crawl_id: str,
    kind: Kind,
    url: str,
    work: Callable[[Resources, Attempt], Awaitable[None]],
) -> None:
    """Run `work`, turning every outcome into stored, failed-and-recorded, or `Retry`."""
    res: Resources = ctx["pipeline"]
    retired_jobs: set[str] | None = ctx.get(RETIRED_JOBS)
    job_id = ctx.get("job_id") if retired_jobs is not None else None
    attempt = Attempt(int(ctx.get("job_try", 1)), res.settings.worker.max_tries, job_id=job_id)
    try:
        await _attempt(res, crawl_id, kind, url, attempt, work)
        if attempt.retired and retired_jobs is not None and job_id is not None:
            retired_jobs.add(job_id)  # out of the queue already: the worker skips arq's finish
        else:
            ctx[SETTLED_CRAWL] = crawl_id  # the job will leave the queue: see `after_job_end`
    except TRANSIENT as exc:
        # Even recording the outcome failed (database or Redis away): try the whole job again.
        delay = backoff_delay(attempt.number, res.settings.fetch.retry_base_delay, res.settings.fetch.retry_max_delay)
        log.warning(
            "could not settle %s (attempt %d), retrying in %.1fs: %s: %s",
            url,
            attempt.number,
            delay,
            type(exc).__name__,
            exc,
        )
        raise Retry(defer=delay) from None


async def _attempt(
    res: Resources,
    crawl_id: str,
    kind: Kind,
    url: str,
    attempt: Attempt,
    work: Callable[[Resources, Attempt], Awaitable[None]],
) -> None:
    settings = res.settings
    reason: str
    status: int | None = None
    retry_after: float | None = None
    try:
        # Our own deadline, shorter than arq's: arq's timeout fails the job without a trace.
        async with asyncio.timeout(settings.worker.job_timeout):
            await work(res, attempt)
        return
    except PermanentFailure as exc:
        await _record_failure(res, crawl_id, kind, url, exc.reason, exc.status, attempt)
        return
    except FetchError as exc:
        if not exc.retryable:
            await _record_failure(res, crawl_id, kind, url, exc.reason, exc.status, attempt)
            return
        reason, status, retry_after = exc.reason, exc.status, exc.retry_after
    except TimeoutError:
        reason = f"job ran past {settings.worker.job_timeout:g}s"
    except (InvalidPayload, Retry):
        raise
    except TRANSIENT as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if not attempt.last_for_infrastructure:
            delay = backoff_delay(attempt.number, settings.fetch.retry_base_delay, INFRA_MAX_DELAY_S)
            log.warning("retrying %s in %.1fs (attempt %d): %s", url, delay, attempt.number, reason)
            raise Retry(defer=delay) from None
    except Exception as exc:
        # Not a fault we know: a bug, or a library failing in a new way. The traceback goes to
        # the log, and the URL is retried and finally recorded like any other failure, never
        # dropped by arq.
        log.exception("unexpected error on %s (attempt %d)", url, attempt.number)
        reason = f"internal error: {type(exc).__name__}: {exc}"
    if attempt.last:
        await _record_failure(res, crawl_id, kind, url, reason, status, attempt)
        return
    delay = backoff_delay(attempt.number, settings.fetch.retry_base_delay, settings.fetch.retry_max_delay, retry_after)
    log.info("retrying %s in %.1fs (attempt %d): %s", url, delay, attempt.number, reason)
    raise Retry(defer=delay)
