"""The synthetic site in its own process, with a `/_stats` endpoint: `python -m bench.site`.

The benchmark needs the site's counters (requests, repeated fetches, requests in flight), but a
site in another process cannot be read like `ThreadedSite.site.hits`. This serves the same
`tests.servers.site.DemoSite` (same options as `python -m tests.servers.site`) under uvloop, so it keeps up
with a thousand requests in flight, and answers `GET /_stats` with its counters as JSON. The
stats requests are answered before the site's own bookkeeping, so reading them changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.servers.loopback import serve_from_command_line
from tests.servers.site import DemoSite, SiteConfig

STATS_PATH = "/_stats"


class StatsSite(DemoSite):
    """`DemoSite` plus a time-weighted count of requests in flight, served at `/_stats`.

    The peak (`max_in_flight`) shows one burst; the time-weighted mean over the busy window is the
    concurrency a crawler actually sustained.
    """

    def __init__(self, config: SiteConfig | None = None) -> None:
        super().__init__(config)
        self._open = 0
        self._area = 0.0  # integral of requests in flight over time
        self._last = 0.0
        self._first_start: float | None = None
        self._last_end = 0.0

    def _app(self) -> web.Application:
        app = super()._app()
        app.middlewares.insert(0, self._measure)
        return app

    def _advance(self) -> float:
        now = time.monotonic()
        self._area += self._open * (now - self._last)
        self._last = now
        return now

    @web.middleware
    async def _measure(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(self.stats())
        now = self._advance()
        if self._first_start is None:
            self._first_start = now
        self._open += 1
        try:
            return await handler(request)
        finally:
            self._last_end = self._advance()
            self._open -= 1

    def stats(self) -> dict[str, Any]:
        busy = self._last_end - self._first_start if self._first_start is not None else 0.0
        return {
            "requests": sum(self.hits.values()),
            "paths": len(self.hits),
            "duplicates": self.duplicates(),
            "duplicate_paths": sorted(self.duplicate_paths())[:20],
            "rejected": self.rejected,
            "max_in_flight": self.max_in_flight,
            "mean_in_flight": round(self._area / busy, 1) if busy > 0 else 0.0,
            "busy_s": round(busy, 3),
            "config": asdict(self.config),
        }


def main(argv: Sequence[str] | None = None) -> None:
    import uvloop

    serve_from_command_line(
        argv,
        prog="python -m bench.site",
        description="Serve the demo site with /_stats.",
        config_type=SiteConfig,
        make_site=StatsSite,
        announce=lambda _site, url: json.dumps({"url": url}),  # the runner reads the URL from it
        default_port=0,
        run=uvloop.run,
    )


if __name__ == "__main__":
    main()
