"""How the commands show a crawl: a progress bar on a terminal, a report, or one JSON object."""

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
        total = max(status.discovered, 1)
        filled = int(self._width * min(settled / total, 1.0))
        rate = settled / max(time.monotonic() - self._started, 1e-6)
        bar = "#" * filled + "." * (self._width - filled)
        line = f"\r[{bar}] {settled}/{status.discovered} settled, {status.failed} failed, {rate:.0f} pages/s"
        self._stream.write(line + ("\n" if status.finished else ""))
        self._stream.flush()
