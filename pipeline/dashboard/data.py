"""What the dashboard shows, read from what the workers already keep: crawl records and failures
in MongoDB, counters, heartbeats and per-host limits in Redis. Nothing here writes anything.

Every URL and every error text leaves through `safe_url` / `safe_text`: credentials in a URL's
user part and the values of query parameters that look like secrets never reach the page.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from yarl import URL

from pipeline.api import Pipeline
from pipeline.connections import redact
from pipeline.crawl.status import ACTIVE_STATES, CrawlStatus, settled
from pipeline.download.http_options import HTTP_OPTIONS, redact_options
from pipeline.observe.heartbeat import read_workers
from pipeline.schedule.frontier import HOST_LIMITS_KEY
from pipeline.store.mongo import Document
from pipeline.urls import url_host

RECENT_CRAWLS = 40
RATE_WINDOW_S = 20.0
HISTORY_SAMPLES = 300  # per crawl: ten minutes at one sample every two seconds
HISTORY_CRAWLS = 100
DETAIL_CACHE_S = 5.0
_SECRET_PARAM = re.compile(r"(key|token|secret|password|passwd|pwd|auth|sig|signature|session|credential)", re.I)


def safe_url(url: str) -> str:
    """`url` without credentials: no user part, secret-looking query values masked."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return redact(url)
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    if parsed.query_string and any(_SECRET_PARAM.search(name) for name in parsed.query):
        parsed = parsed.with_query([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in parsed.query.items()])
    return str(parsed)


def safe_text(text: str | None) -> str | None:
    """An error message with the credentials of any URL in it removed."""
    return None if text is None else redact(text)


class RateHistory:
    """Settled pages of each crawl over time, sampled by the dashboard itself (never by workers).

    Bounded twice: so many samples per crawl, so many crawls (the least recently sampled go).
    """

    def __init__(self, samples: int = HISTORY_SAMPLES, crawls: int = HISTORY_CRAWLS) -> None:
        self._samples = samples
        self._crawls = crawls
        self._series: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()

    def record(self, crawl_id: str, settled_pages: int, now: float | None = None) -> None:
        series = self._series.get(crawl_id)
        if series is None:
            series = self._series[crawl_id] = deque(maxlen=self._samples)
            while len(self._series) > self._crawls:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(crawl_id)
        series.append((time.time() if now is None else now, settled_pages))

    def rate(self, crawl_id: str, window: float = RATE_WINDOW_S) -> float:
        """Pages settled per second over the last `window` seconds."""
        series = self._series.get(crawl_id)
        if not series or len(series) < 2:
            return 0.0
        end_t, end_n = series[-1]
        start_t, start_n = next(((t, n) for t, n in series if t >= end_t - window), series[0])
        return (end_n - start_n) / (end_t - start_t) if end_t > start_t else 0.0

    def points(self, crawl_id: str) -> list[list[float]]:
        """[time, pages/s] between consecutive samples, oldest first."""
        series = list(self._series.get(crawl_id) or ())
        return [
            [round(t1, 1), round(max(0.0, (n1 - n0) / (t1 - t0)), 2)]
            for (t0, n0), (t1, n1) in itertools.pairwise(series)
            if t1 > t0
        ]


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


def crawl_row(status: CrawlStatus, history: RateHistory) -> dict[str, Any]:
    """One crawl as the list shows it: state, progress, rate, ETA."""
    counters = status.counters
    done_pages = settled(counters)
    discovered = status.discovered
    rate = history.rate(status.crawl_id) if status.state == "running" else 0.0
    remaining = max(0, discovered - done_pages)
    return {
        "crawl_id": status.crawl_id,
        "start_url": safe_url(status.start_url),
        "host": url_host(status.start_url),
        "state": status.state,
        "error": safe_text(status.error),
        "schedule": status.schedule,
        "created_at": _iso(status.created_at),
        "finished_at": _iso(status.finished_at),
        "duration_s": round(status.duration_s, 1),
        "counters": {k: int(v) for k, v in counters.items()},
        "settled": done_pages,
        "discovered": discovered,
        "progress": (done_pages / discovered) if discovered else (1.0 if status.finished else 0.0),
        "rate": round(rate, 2),
        "eta_s": round(remaining / rate) if rate > 0 and remaining else None,
        "history": history.points(status.crawl_id)[-60:],
    }


async def crawl_statuses(pipeline: Pipeline, limit: int = RECENT_CRAWLS) -> list[CrawlStatus]:
    """The latest crawls, and every unfinished one however old."""
    store = pipeline.control.store
    active = await store.crawls.find({"state": {"$in": list(ACTIVE_STATES)}}, {"_id": 1}).to_list()
    recent = await store.crawls.find({}, {"_id": 1}).sort("created_at", -1).limit(limit).to_list()
    ids = list(dict.fromkeys(str(d["_id"]) for d in [*active, *recent]))
    statuses = [await pipeline.status(crawl_id) for crawl_id in ids]
    order = {state: rank for rank, state in enumerate(("running", "cancelling", "paused"))}
    statuses.sort(key=lambda s: (order.get(s.state, 9), -(s.created_at.timestamp() if s.created_at else 0)))
    return statuses


async def overview(pipeline: Pipeline, history: RateHistory) -> dict[str, Any]:
    """Everything the page shows at the top level, in one response."""
    frontier = pipeline.control.frontier
    queue = pipeline.settings.redis.queue
    statuses = await crawl_statuses(pipeline)
    workers = await read_workers(frontier.redis, queue)
    depth = int(await frontier.redis.zcard(queue))
    due = int(await frontier.redis.zcount(queue, "-inf", int(time.time() * 1000)))
    schedules = [_schedule_row(row) for row in await pipeline.schedules()]
    rows = [crawl_row(status, history) for status in statuses]
    return {
        "now": time.time(),
        "queue": {"name": queue, "depth": depth, "due": due, "held": max(0, depth - due)},
        "rate": round(sum(row["rate"] for row in rows), 2),
        "crawls": rows,
        "workers": [_worker_row(worker) for worker in workers],
        "schedules": schedules,
    }


async def crawl_detail(pipeline: Pipeline, crawl_id: str, history: RateHistory) -> dict[str, Any]:
    """One crawl's live part: its row, rate history, running jobs, skips (cheap: read every time)."""
    frontier = pipeline.control.frontier
    status = await pipeline.status(crawl_id)
    return {
        "crawl": crawl_row(status, history),
        "rate_history": history.points(crawl_id),
        "skipped": {k: int(v) for k, v in status.counters.items() if k.startswith("skipped_") or k == "capped"},
        "running_jobs": await frontier.running_jobs(crawl_id) if status.state in ACTIVE_STATES else 0,
    }


async def crawl_breakdown(pipeline: Pipeline, crawl_id: str) -> dict[str, Any]:
    """One crawl in depth: statuses, failures and their reasons, slowest hosts and their limits.

    These are aggregations over the crawl's documents: the server keeps them a few seconds.
    """
    store, frontier = pipeline.control.store, pipeline.control.frontier
    status = await pipeline.status(crawl_id)
    record = await store.get_crawl(crawl_id) or {}
    summary: Mapping[str, Any] = record.get("summary") or {}
    match = {"$match": {"crawl_id": crawl_id}}
    if status.finished and summary.get("status_histogram") is not None:
        histogram = {str(k): int(v) for k, v in summary["status_histogram"].items()}
        hosts = list(summary.get("slowest_hosts") or [])
    else:
        by_status = await (
            await store.pages.aggregate([match, {"$group": {"_id": "$status", "pages": {"$sum": 1}}}])
        ).to_list()
        histogram = {str(row["_id"]): int(row["pages"]) for row in by_status if row["_id"] is not None}
        rows = await (
            await store.pages.aggregate(
                [
                    match,
                    {"$group": {"_id": "$host", "mean": {"$avg": "$timings.fetch_ms"}, "pages": {"$sum": 1}}},
                    {"$sort": {"mean": -1}},
                    {"$limit": 8},
                ]
            )
        ).to_list()
        hosts = [
            {"host": row["_id"], "mean_fetch_ms": round(float(row["mean"] or 0)), "pages": int(row["pages"])}
            for row in rows
            if row["_id"]
        ]
    failed_by_status = await (
        await store.failures.aggregate([match, {"$group": {"_id": "$status", "urls": {"$sum": 1}}}])
    ).to_list()
    for row in failed_by_status:
        key = str(row["_id"]) if row["_id"] is not None else "no response"
        histogram[key] = histogram.get(key, 0) + int(row["urls"])
    reasons = await (
        await store.failures.aggregate(
            [match, {"$group": {"_id": "$error", "urls": {"$sum": 1}}}, {"$sort": {"urls": -1}}, {"$limit": 8}]
        )
    ).to_list()
    latest: list[Document] = (
        await store.failures.find({"crawl_id": crawl_id}, {"_id": 0}).sort("failed_at", -1).limit(8).to_list()
    )
    limits_raw: dict[bytes, bytes] = await frontier.redis.hgetall(HOST_LIMITS_KEY)  # type: ignore[misc]
    limits = {k.decode(): int(v) for k, v in limits_raw.items()}
    crawl_hosts = {url_host(status.start_url), *(h["host"] for h in hosts)}
    for host in hosts:
        host["limit"] = limits.get(host["host"])
    return {
        "status_histogram": dict(sorted(histogram.items())),
        "failure_reasons": [{"reason": safe_text(str(r["_id"])), "urls": int(r["urls"])} for r in reasons],
        "failures": [
            {
                "url": safe_url(str(f.get("url", ""))),
                "kind": f.get("kind"),
                "error": safe_text(f.get("error")),
                "status": f.get("status"),
                "attempts": f.get("attempts"),
                "failed_at": _iso(f.get("failed_at")),
            }
            for f in latest
        ],
        "slowest_hosts": hosts,
        "host_limits": {host: limit for host, limit in sorted(limits.items()) if host in crawl_hosts},
        "options": _options(record.get("options") or {}),
    }


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the crawl's page lists, as text; its HTTP options only when set, credentials hidden."""
    shown = {k: options[k] for k in ("max_depth", "max_pages", "scope", "max_queued") if k in options}
    http = redact_options({k: options[k] for k in HTTP_OPTIONS if options.get(k)})
    for name, value in http.items():
        if isinstance(value, Mapping):
            shown[name] = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            shown[name] = ", ".join(str(v) for v in value)
        else:
            shown[name] = str(value)
    return shown


def _worker_row(worker: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": worker.get("id"),
        "alive": bool(worker.get("alive")),
        "polling": bool(worker.get("polling")),
        "role": worker.get("role"),
        "host": worker.get("host"),
        "jobs_running": worker.get("jobs_running"),
        "max_jobs": worker.get("max_jobs"),
        "loop_lag_ms": worker.get("loop_lag_ms"),
        "last_seen": worker.get("last_seen"),
        "started_at": worker.get("started_at"),
        "metrics": worker.get("metrics"),
    }


def _schedule_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "cron": row["cron"],
        "start_url": safe_url(row["start_url"]),
        "pipeline": row["pipeline"],
        "paused": row.get("paused", False),
        "runs": row["runs"],
        "skipped": row["skipped"],
        "last_run_at": _iso(row["last_run_at"]),
        "last_crawl_id": row["last_crawl_id"],
        "last_crawl_state": row["last_crawl_state"],
        "last_skip_reason": safe_text(row["last_skip_reason"]),
        "next_run": _iso(row["next_run"]),
    }
