"""A crawl's state and counters, as the API, the CLI and `--json` report them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

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
        end = self.finished_at or dt.datetime.now(dt.UTC)
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
