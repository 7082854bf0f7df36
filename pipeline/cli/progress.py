"""How the commands show a crawl: a progress bar on a terminal, a report, or one JSON object; and
the same bar for a count of rows (an export)."""

from __future__ import annotations

import json
import time
from typing import TextIO

from pipeline.connections import redact
from pipeline.crawl.status import PAGE_OUTCOMES, CrawlStatus


def report(status: CrawlStatus, as_json: bool, out: TextIO) -> None:
    data = status.to_dict()
    if as_json:
        out.write(json.dumps(data) + "\n")
        return
    out.write(f"crawl {status.crawl_id}: {status.state}  ({redact(status.start_url)})\n")
    if status.source_crawl:
        out.write(f"  reprocess of crawl {status.source_crawl}: stored pages parsed again, nothing fetched\n")
    if status.error:
        out.write(f"  error: {redact(status.error)}\n")
    for key in ("discovered", "fetched", *PAGE_OUTCOMES, "retries", "pending", "lists", "lists_failed"):
        if key not in ("cancelled", "skipped_robots") or data[key]:
            out.write(f"  {key:<15}{data[key]:>8}\n")
    skipped = data["skipped_invalid"] + data["skipped_scope"] + data["capped"]
    if skipped:
        out.write(
            f"  {'skipped':<15}{skipped:>8}  (invalid {data['skipped_invalid']}, "
            f"out of scope {data['skipped_scope']}, over max-pages {data['capped']})\n"
        )
    if data["lists_skipped_robots"]:
        out.write(f"  {'lists skipped':<15}{data['lists_skipped_robots']:>8}  (disallowed by robots.txt)\n")
    out.write(f"  {'duration':<15}{data['duration_s']:>8.1f}s\n")
    for host, limit in status.host_limits.items():
        out.write(f"  concurrency limit for {host}: {limit} requests in flight\n")


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._enabled = stream.isatty()
        self._started = time.monotonic()

    def __call__(self, status: CrawlStatus) -> None:
        if not self._enabled:
            return
        settled = status.settled
        rate = settled / max(time.monotonic() - self._started, 1e-6)
        bar = _bar(settled, status.discovered, self._width)
        line = f"\r[{bar}] {settled}/{status.discovered} settled, {status.failed} failed, {rate:.0f} pages/s"
        self._stream.write(line + ("\n" if status.finished else ""))
        self._stream.flush()


class CountProgress:
    """The same bar for `done` of `total` things (`noun`), redrawn a few times a second at most;
    silent when the stream is not a terminal. The bar ends (a newline) when `done` reaches `total`."""

    def __init__(self, stream: TextIO, noun: str, width: int = 30, interval: float = 0.1) -> None:
        self._stream = stream
        self._noun = noun
        self._width = width
        self._interval = interval
        self._enabled = stream.isatty()
        self._started = self._drawn = time.monotonic()
        self._ended = False

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled or self._ended:
            return
        now = time.monotonic()
        final = done >= total
        if not final and now - self._drawn < self._interval:
            return
        self._drawn = now
        self._ended = final
        rate = done / max(now - self._started, 1e-6)
        line = f"\r[{_bar(done, total, self._width)}] {done}/{total} {self._noun}, {rate:.0f} {self._noun}/s"
        self._stream.write(line + ("\n" if final else ""))
        self._stream.flush()


def _bar(done: int, total: int, width: int) -> str:
    filled = int(width * min(done / max(total, 1), 1.0))
    return "#" * filled + "." * (width - filled)
