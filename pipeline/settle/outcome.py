"""How a URL ends: settled once in the frontier, a failure recorded with its reason, and the
crawl completed by whichever job settles its last URL."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pipeline.connections import redact
from pipeline.crawl.lifecycle import complete_crawl
from pipeline.errors import InvalidPayload, InvalidURL
from pipeline.schedule.frontier import Kind
from pipeline.store.mongo import utcnow
from pipeline.urls import normalise_url
from pipeline.worker.resources import Resources

log = logging.getLogger("pipeline.settle")


@dataclass
class Attempt:
    """One run of a job: which try it is, how many the page gets, and how it left the queue."""

    number: int
    max_tries: int
    extra_tries: int = 0  # what our own services' outages get on top (see `retries`)
    # Set when the worker lets the frontier take the job out of the queue as the URL settles
    # (see `Frontier.finish`); `retired` then tells whether it did.
    job_id: str | None = None
    retired: bool = False
    depth: int | None = None  # the URL's depth, kept with a failure so a retry of the crawl can queue it again

    @property
    def last(self) -> bool:
        """No retry left for faults of the page or its site."""
        return self.number >= self.max_tries

    @property
    def last_for_infrastructure(self) -> bool:
        """No retry left even for faults of our own services."""
        return self.number >= self.max_tries + self.extra_tries


def check_payload(crawl_id: Any, url: Any, depth: Any, *, canonical: bool = True) -> tuple[str, str, int]:
    """A job's (crawl id, URL, depth) as received, or `InvalidPayload` saying what is wrong.

    `canonical` false accepts a URL as a stored document spells it, for a job that requests
    nothing (a replay of a stored page).
    """
    if not isinstance(crawl_id, str) or not crawl_id:
        raise InvalidPayload(f"crawl_id must be a non-empty string, got {crawl_id!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidPayload(f"url must be an http(s) URL string, got {url!r:.200}")
    try:
        normalised = normalise_url(url) if canonical else url
    except InvalidURL:
        normalised = None
    if normalised != url:
        # The fetcher sends a job's URL byte for byte, and the crawl counts it under this
        # spelling: a URL the frontier did not write (a job queued by hand) must be canonical.
        raise InvalidPayload(f"url must be canonical ({normalised!r:.200}), got {url!r:.200}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise InvalidPayload(f"depth must be a whole number >= 0, got {depth!r}")
    return crawl_id, url, depth


def check_validators(validators: Any) -> dict[str, str]:
    """The validators of a conditional GET, as a job received them (None: an unconditional GET)."""
    if validators is None:
        return {}
    if not isinstance(validators, dict) or not all(
        k in ("etag", "last_modified") and isinstance(v, str) for k, v in validators.items()
    ):
        raise InvalidPayload(f"validators must map etag/last_modified to strings, got {validators!r:.200}")
    return validators


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
    cancelled: bool = False,
    retire: bool = True,
    skipped_robots: bool = False,
) -> None:
    """Settle the URL in the frontier; the call that settles the crawl's last URL completes it.

    Settling also drains the backlog: when the crawl's queue is down to half its bound and URLs
    are parked, this job moves the oldest of them back into the queue. `retire=False` keeps the
    job in arq's queue whatever happens: for a job that has another URL to settle after this one.
    """
    settled = await res.frontier.finish(
        crawl_id,
        kind,
        url,
        stored=stored,
        fetched=fetched,
        retries=attempt.number - 1,
        unchanged=unchanged,
        cancelled=cancelled,
        skipped_robots=skipped_robots,
        retire=attempt.job_id if retire else None,
    )
    attempt.retired = attempt.retired or settled.retired
    if settled.changed and stored and kind == "page":
        res.metrics.page_stored(unchanged)
    if settled.waiting > 0:
        options = await res.crawl_options(crawl_id)
        if settled.queued <= options.max_queued // 2:
            await res.backlog.refill(crawl_id, options.max_queued - settled.queued, options.max_queued)
    if settled.pending == 0 and await complete_crawl(
        res.store, res.frontier, crawl_id, await res.crawl_options(crawl_id)
    ):
        log.info("crawl %s done", crawl_id)


async def record_skipped(res: Resources, crawl_id: str, kind: Kind, url: str, attempt: Attempt) -> None:
    """robots.txt disallows the URL: settled as skipped (`skipped_robots`), never requested.

    A list page the crawl keeps as a page is skipped as both, as `record_failure` fails both.
    """
    if kind == "list" and await res.frontier.page_state(crawl_id, url) == "o":
        await finish(
            res, crawl_id, "page", url, stored=False, fetched=False, attempt=attempt, skipped_robots=True, retire=False
        )
    await finish(res, crawl_id, kind, url, stored=False, fetched=False, attempt=attempt, skipped_robots=True)
    log.info("skipped %s: disallowed by robots.txt", redact(url))


async def record_failure(
    res: Resources, crawl_id: str, kind: Kind, url: str, reason: str, status: int | None, attempt: Attempt
) -> None:
    """A document in `failures` saying why, then the URL settled as failed.

    A list page the crawl keeps as a page (see `pipeline.jobs.crawl`) fails as a page: its
    document says kind page (and `kept_list`), and both its page and its list page are settled
    as failed (a re-run after a crash in between finds the page failed already and keeps them).
    """
    page_state = await res.frontier.page_state(crawl_id, url) if kind == "list" else None
    kept = page_state == "o"
    # Whatever raised, the reason is shown (status, dashboard, metrics): never a credential.
    with contextlib.suppress(LookupError):  # a crawl whose record is gone has no credentials left
        reason = (await res.crawl_fetcher(crawl_id)).shown(reason)
    reason = redact(reason)
    failure = {
        "crawl_id": crawl_id,
        "url": url,
        "kind": kind,
        "depth": attempt.depth,
        "attempts": attempt.number,
        "error": reason,
        "status": status,
        "failed_at": utcnow(),
    }
    if page_state in ("o", "f"):
        failure.update(kind="page", kept_list=True)  # a retry brings back the list page and its page
    await res.store.record_failure(failure)
    res.metrics.failure(reason, status)
    fetched = status is not None
    if kept:
        await finish(res, crawl_id, "page", url, stored=False, fetched=fetched, attempt=attempt, retire=False)
    await finish(res, crawl_id, kind, url, stored=False, fetched=fetched, attempt=attempt)
    log.info("failed %s after %d attempt(s): %s", redact(url), attempt.number, reason)
