"""A crawl's state and counters, as the API, the CLI, `--json` and the dashboard report them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.connections import redact

# Every child URL a crawl discovers ends in exactly one of these, and every list page in one of
# LIST_OUTCOMES: once a crawl has finished, `discovered` is the sum of PAGE_OUTCOMES and `lists`
# the sum of LIST_OUTCOMES. A new way for a URL to end gets its counter here (and in the frontier's
# `finish`), and every sum follows.
# `skipped_robots`: robots.txt disallowed the URL, so it was never requested.
PAGE_OUTCOMES = ("stored", "unchanged", "failed", "skipped_robots", "cancelled")
LIST_OUTCOMES = ("lists_done", "lists_failed", "lists_skipped_robots", "lists_cancelled")
COUNTERS = (
    "discovered",
    "fetched",
    *PAGE_OUTCOMES,
    "retries",
    "capped",
    "lists",
    *LIST_OUTCOMES,
    "queued",
    "waiting",
)
COUNTERS_SKIPPED = ("skipped_invalid", "skipped_scope")

# running -> paused -> running; running or paused -> cancelling -> cancelled;
# running -> done, or failed when its start page failed; done or failed -> running (a retry).
STATES = ("running", "paused", "cancelling", "cancelled", "done", "failed")
ACTIVE_STATES = ("running", "paused", "cancelling")
FINISHED_STATES = ("done", "failed", "cancelled")


def settled(counters: Mapping[str, int]) -> int:
    """Child URLs that have ended one way or another."""
    return sum(int(counters.get(name, 0)) for name in PAGE_OUTCOMES)


def lists_settled(counters: Mapping[str, int]) -> int:
    return sum(int(counters.get(name, 0)) for name in LIST_OUTCOMES)


def counters_add_up(counters: Mapping[str, int]) -> bool:
    """The sums a finished crawl keeps: every discovered URL and every list page ended once."""
    return settled(counters) == int(counters.get("discovered", 0)) and lists_settled(counters) == int(
        counters.get("lists", 0)
    )


@dataclass(frozen=True)
class CrawlStatus:
    """A crawl's state and counters, as the API, the CLI and `--json` report them.

    `error` says why a crawl failed (its start page could not be fetched, and why). `options`
    are the options it runs with as they may be shown: credentials hidden (`redact_options`),
    like the credentials of a URL in `to_dict`; the record keeps the real ones for the workers.
    `source_crawl` is set on a replay (`pipeline reprocess`): the crawl whose pages it reprocesses.
    """

    crawl_id: str
    start_url: str
    state: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    counters: dict[str, int] = field(default_factory=dict)
    host_limits: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    schedule: str | None = None
    source_crawl: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing more will happen unless someone retries it."""
        return self.state in FINISHED_STATES

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
    def cancelled(self) -> int:
        return self.counters.get("cancelled", 0)

    @property
    def skipped_robots(self) -> int:
        """Child pages robots.txt disallowed: never requested, neither stored nor failed."""
        return self.counters.get("skipped_robots", 0)

    @property
    def unchanged_count(self) -> int:
        return self.counters.get("unchanged", 0)

    @property
    def pending(self) -> int:
        return self.counters.get("pending", 0)

    @property
    def settled(self) -> int:
        return settled(self.counters)

    @property
    def duration_s(self) -> float:
        if self.created_at is None:
            return 0.0
        end = self.finished_at or dt.datetime.now(dt.UTC)
        return max(0.0, (_aware(end) - _aware(self.created_at)).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"crawl_id": self.crawl_id, "start_url": redact(self.start_url), "state": self.state}
        for name in COUNTERS + COUNTERS_SKIPPED + ("pending",):
            data[name] = self.counters.get(name, 0)
        data["error"] = None if self.error is None else redact(self.error)
        if self.source_crawl is not None:
            data["source_crawl"] = self.source_crawl
        data["duration_s"] = round(self.duration_s, 3)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["host_limits"] = dict(self.host_limits)
        data["options"] = dict(self.options)
        return data


def _aware(moment: dt.datetime) -> dt.datetime:
    # MongoDB returns naive UTC datetimes unless the client is tz-aware.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
