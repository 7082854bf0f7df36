"""What a crawl is: its options, its status, and how it is started and completed.

Shared by the Python API (which starts crawls and reads their status) and the jobs (which
read the options and complete the crawl when its last URL settles).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from pipeline.frontier import Discovery, Frontier
from pipeline.parse import check_selector
from pipeline.settings import CrawlSettings
from pipeline.storage import MongoStore, utcnow
from pipeline.urls import Scope, normalise_url, url_host

COUNTERS = (
    "discovered",
    "fetched",
    "stored",
    "unchanged",
    "failed",
    "retries",
    "capped",
    "lists",
    "lists_done",
    "lists_failed",
    "queued",
    "waiting",
)
COUNTERS_SKIPPED = ("skipped_invalid", "skipped_scope")


@dataclass(frozen=True)
class CrawlOptions:
    """How one crawl walks its site; defaults come from `[crawl]` in the config."""

    start_url: str
    next_selector: str
    link_selector: str
    max_depth: int
    max_pages: int
    scope: Scope
    max_queued: int
    list_job: str = "crawl"
    item_job: str = "fetch_page"
    on_complete: tuple[str, ...] = ()
    schedule: str | None = None
    conditional: bool = False

    @classmethod
    def build(
        cls,
        start_url: str,
        defaults: CrawlSettings,
        *,
        max_depth: int | None = None,
        max_pages: int | None = None,
        next_selector: str | None = None,
        link_selector: str | None = None,
        scope: str | None = None,
        on_complete: tuple[str, ...] | list[str] | None = None,
        list_job: str = "crawl",
        item_job: str = "fetch_page",
        schedule: str | None = None,
        conditional: bool = False,
    ) -> CrawlOptions:
        """Validated options; raises `ValueError` (`InvalidURL` for the URL) with a clear message."""
        options = cls(
            start_url=normalise_url(start_url),
            next_selector=defaults.next_selector if next_selector is None else next_selector,
            link_selector=defaults.link_selector if link_selector is None else link_selector,
            max_depth=defaults.max_depth if max_depth is None else max_depth,
            max_pages=defaults.max_pages if max_pages is None else max_pages,
            scope=cast(Scope, defaults.scope if scope is None else scope),
            max_queued=defaults.max_queued,
            list_job=list_job,
            item_job=item_job,
            on_complete=tuple(defaults.on_complete if on_complete is None else on_complete),
            schedule=schedule,
            conditional=conditional,
        )
        if options.max_depth < 0:
            raise ValueError(f"max_depth must be 0 or more, got {options.max_depth}")
        if options.max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {options.max_pages}")
        if options.scope not in ("host", "domain", "any"):
            raise ValueError(f"scope must be host, domain or any, got {options.scope!r}")
        check_selector(options.next_selector)
        check_selector(options.link_selector)
        return options

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrawlOptions:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["on_complete"] = tuple(fields.get("on_complete", ()))
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CrawlStatus:
    """A crawl's state and counters, as the API, the CLI and `--json` report them."""

    crawl_id: str
    start_url: str
    state: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    counters: dict[str, int] = field(default_factory=dict)
    host_limits: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def discovered(self) -> int:
        return self.counters.get("discovered", 0)

    @property
    def stored(self) -> int:
        return self.counters.get("stored", 0)

    @property
    def failed(self) -> int:
        return self.counters.get("failed", 0)

    @property
    def unchanged_count(self) -> int:
        return self.counters.get("unchanged", 0)

    @property
    def pending(self) -> int:
        return self.counters.get("pending", 0)

    @property
    def duration_s(self) -> float:
        if self.created_at is None:
            return 0.0
        end = self.finished_at or utcnow()
        return max(0.0, (_aware(end) - _aware(self.created_at)).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"crawl_id": self.crawl_id, "start_url": self.start_url, "state": self.state}
        for name in COUNTERS + COUNTERS_SKIPPED + ("pending",):
            data[name] = self.counters.get(name, 0)
        data["duration_s"] = round(self.duration_s, 3)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["host_limits"] = dict(self.host_limits)
        return data


def _aware(moment: dt.datetime) -> dt.datetime:
    # MongoDB returns naive UTC datetimes unless the client is tz-aware.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def completion_job_id(crawl_id: str, name: str) -> str:
    return f"done:{crawl_id}:{name}"


def new_crawl_id() -> str:
    return uuid.uuid4().hex[:16]


async def start_crawl(store: MongoStore, frontier: Frontier, options: CrawlOptions) -> str:
    """Record a new crawl and queue its start page as the first list page."""
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
        }
    )
    await frontier.create(crawl_id, options.to_dict())
    start = Discovery(options.start_url, "list", 0, options.list_job)
    await frontier.register(crawl_id, [start], max_pages=options.max_pages, max_queued=options.max_queued)
    return crawl_id


async def complete_crawl(store: MongoStore, frontier: Frontier, crawl_id: str, options: CrawlOptions) -> bool:
    """Queue the completion jobs, copy the final counters and mark the crawl done.

    True for the one caller that marked it. The completion jobs are queued first, under ids
    derived from the crawl, so a caller that dies in between is simply repeated (by its job's
    retry) without queueing anything twice; each completion job records that it ran.
    """
    for name in options.on_complete:
        await frontier.enqueue_once(name, [crawl_id], completion_job_id(crawl_id, name))
    counters = await frontier.counters(crawl_id)
    # Queue occupancy is live state, not a result: the last jobs are leaving the queue right now.
    final = {k: v for k, v in counters.items() if k not in ("queued", "waiting", "max_queued")}
    return await store.finish_crawl(crawl_id, final)


async def crawl_status(store: MongoStore, frontier: Frontier, crawl_id: str) -> CrawlStatus | None:
    """Live counters from Redis while the crawl runs; the record's copy once it is done."""
    record = await store.get_crawl(crawl_id)
    if record is None:
        return None
    counters = dict(record.get("counters") or {})
    if record.get("state") != "done":
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
    )
