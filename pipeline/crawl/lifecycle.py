"""How a crawl starts, completes, and reports its status.

Shared by the Python API (which starts crawls and reads their status) and the settle stage
(whose last settled URL completes the crawl).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.crawl.options import CrawlOptions
from pipeline.crawl.status import ACTIVE_STATES, COUNTERS, COUNTERS_SKIPPED, FINISHED_STATES, CrawlStatus
from pipeline.download.http_options import redact_options
from pipeline.schedule.frontier import CONTROL_FIELDS, ROBOTS_SITEMAPS, SITEMAP, Discovery, Frontier
from pipeline.store.mongo import MongoStore, utcnow
from pipeline.urls import normalise_url, url_host


def completion_job_id(crawl_id: str, name: str) -> str:
    return f"done:{crawl_id}:{name}"


def new_crawl_id() -> str:
    return uuid.uuid4().hex[:16]


def start_items(options: CrawlOptions) -> list[Discovery]:
    """What a crawl starts from: its start page as the first list page (and as a page, when the
    crawl keeps it), the sitemaps it was given, and the start host's robots.txt when its
    sitemaps are wanted."""
    items = [Discovery(options.start_url, "list", 0, options.list_job)]
    if options.keeps_start_page:
        items.append(Discovery(options.start_url, "page", 0, kept_by_list=True))
    items += [Discovery(url, "sitemap", 0, SITEMAP) for url in options.sitemaps]
    if options.robots_sitemaps:
        items.append(Discovery(normalise_url("/robots.txt", options.start_url), "sitemap", 0, ROBOTS_SITEMAPS))
    return items


async def start_crawl(
    store: MongoStore, frontier: Frontier, options: CrawlOptions, record: Mapping[str, Any] | None = None
) -> str:
    """Record a new crawl and queue what it starts from (see `start_items`).

    `record` adds to (or overrides) the crawl's record: a replay's kind and source crawl.
    """
    crawl_id = new_crawl_id()
    await store.create_crawl(
        {
            "_id": crawl_id,
            "start_url": options.start_url,
            "options": options.to_dict(),
            "state": "running",
            "created_at": utcnow(),
            "finished_at": None,
            "counters": {},
            **(record or {}),
        }
    )
    await frontier.create(crawl_id, options.to_dict())
    items = start_items(options)
    # Nothing the crawl starts from waits in the backlog (there is no job yet to write it there):
    # the bound is stretched to fit them, however many sitemaps were given.
    max_queued = max(options.max_queued, len(items))
    await frontier.register(crawl_id, items, max_pages=options.max_pages, max_queued=max_queued)
    return crawl_id


async def complete_crawl(store: MongoStore, frontier: Frontier, crawl_id: str, options: CrawlOptions) -> bool:
    """The crawl's last URL has settled: mark it done (or failed, or cancelled) with its final counters.

    A crawl ends `failed` when its start page failed (nothing else could be found), with that
    failure's reason as its `error`; `cancelled` when it was being cancelled; else `done`, after
    its completion jobs are queued. True for the one caller that marked it. The completion jobs
    are queued first, under ids derived from the crawl, so a caller that dies in between is simply
    repeated (by its job's retry) without queueing anything twice; each completion job records
    that it ran.
    """
    record = await store.get_crawl(crawl_id)
    if record is None or record.get("state") in FINISHED_STATES:
        return False
    counters = await frontier.counters(crawl_id)
    error: str | None = None
    if record.get("state") == "cancelling":
        state = "cancelled"
    elif counters.get("lists_done", 0) == 0 and counters.get("lists_failed", 0) > 0:
        state, error = "failed", await start_page_error(store, crawl_id, options.start_url)
    else:
        state = "done"
        for name in options.on_complete:
            await frontier.enqueue_once(name, [crawl_id], completion_job_id(crawl_id, name))
    # Queue occupancy is live state, not a result: the last jobs are leaving the queue right now.
    final = {k: v for k, v in counters.items() if k not in ("queued", "waiting", "max_queued", *CONTROL_FIELDS)}
    marked = await store.finish_crawl(crawl_id, str(record["state"]), state, final, error)
    await frontier.release(crawl_id)
    return marked


async def start_page_error(store: MongoStore, crawl_id: str, start_url: str) -> str:
    """Why the crawl's start page failed, as its failure record says."""
    failure = await store.failures.find_one({"crawl_id": crawl_id, "url": start_url})
    reason = failure.get("error") if failure else None
    return f"start page {start_url} failed: {reason or 'no reason recorded'}"


async def crawl_status(store: MongoStore, frontier: Frontier, crawl_id: str) -> CrawlStatus | None:
    """Live counters from Redis while the crawl runs; the record's copy once it is done."""
    record = await store.get_crawl(crawl_id)
    if record is None:
        return None
    counters = dict(record.get("counters") or {})
    if record.get("state") not in FINISHED_STATES:
        counters = await frontier.counters(crawl_id) or counters
    start_url = record.get("start_url", "")
    host = url_host(start_url)
    limit = await frontier.host_limit(host) if host else None
    return CrawlStatus(
        crawl_id=crawl_id,
        start_url=record.get("start_url", ""),
        state=record.get("state", "unknown"),
        created_at=record.get("created_at"),
        finished_at=record.get("finished_at"),
        counters={k: int(v) for k, v in counters.items() if k in COUNTERS + COUNTERS_SKIPPED + ("pending",)},
        host_limits={host: limit} if limit is not None else {},
        error=record.get("error"),
        schedule=(record.get("options") or {}).get("schedule"),
        source_crawl=record.get("source_crawl"),
        options=redact_options(record.get("options") or {}),
    )


async def queue_by_state(store: MongoStore, frontier: Frontier, limit: int = 1000) -> dict[str, tuple[int, int]]:
    """Jobs in Redis and URLs in the backlog of the unfinished crawls, summed by the crawls' state."""
    totals = dict.fromkeys(ACTIVE_STATES, (0, 0))
    records = await store.crawls.find({"state": {"$in": list(ACTIVE_STATES)}}, {"state": 1}).limit(limit).to_list()
    for record in records:
        counters = await frontier.counters(str(record["_id"]))
        queued, waiting = totals.get(record["state"], (0, 0))
        totals[record["state"]] = (queued + counters.get("queued", 0), waiting + counters.get("waiting", 0))
    return totals
