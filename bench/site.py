"""The benchmark's site in its own process, with a `/_stats` endpoint: `python -m bench.site`.

The benchmark needs the site's counters (requests, repeated fetches, requests in flight), but a
site in another process cannot be read like `ThreadedSite.site.hits`. This serves either the
synthetic `tests.servers.site.DemoSite` (same options as `python -m tests.servers.site`, every
child page rendered before the site reports its URL, so rendering is never charged to a crawl)
or, with `--static-dir`, a folder of static files (`StaticSite`: a real site's HTML), under
uvloop, so it keeps up with a thousand requests in flight, and answers `GET /_stats` with its
counters as JSON. The stats requests are answered before the site's own bookkeeping, so
reading them changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import mimetypes
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bench.static_site import file_for
from tests.servers.loopback import LoopbackSite, serve_from_command_line
from tests.servers.site import DemoSite, SiteConfig

STATS_PATH = "/_stats"


class RequestStats:
    """Requests in flight over time: the peak shows one burst; the time-weighted mean over the busy
    window is the concurrency a crawler actually sustained."""

    def __init__(self) -> None:
        self.open = 0
        self.max_open = 0
        self._area = 0.0  # integral of requests in flight over time
        self._last = 0.0
        self._first_start: float | None = None
        self._last_end = 0.0

    def _advance(self) -> float:
        now = time.monotonic()
        self._area += self.open * (now - self._last)
        self._last = now
        return now

    def started(self) -> None:
        now = self._advance()
        if self._first_start is None:
            self._first_start = now
        self.open += 1
        self.max_open = max(self.max_open, self.open)

    def ended(self) -> None:
        self._last_end = self._advance()
        self.open -= 1

    def summary(self) -> dict[str, Any]:
        busy = self._last_end - self._first_start if self._first_start is not None else 0.0
        return {"mean_in_flight": round(self._area / busy, 1) if busy > 0 else 0.0, "busy_s": round(busy, 3)}


class StatsSite(DemoSite):
    """`DemoSite` plus a time-weighted count of requests in flight, served at `/_stats`."""

    def __init__(self, config: SiteConfig | None = None) -> None:
        super().__init__(config)
        self._stats = RequestStats()

    def _app(self) -> web.Application:
        app = super()._app()
        app.middlewares.insert(0, self._measure)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        where = url.split("//", 1)[1]
        for index in range(self.config.pages):
            self._child_page(where, index)  # rendered now, not while a crawl is measured
        return url

    @web.middleware
    async def _measure(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(self.stats())
        self._stats.started()
        try:
            return await handler(request)
        finally:
            self._stats.ended()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.hits.values()),
            "paths": len(self.hits),
            "duplicates": self.duplicates(),
            "duplicate_paths": sorted(self.duplicate_paths())[:20],
            "rejected": self.rejected,
            "max_in_flight": self.max_in_flight,
            **self._stats.summary(),
            "config": asdict(self.config),
        }


class StaticSite(LoopbackSite):
    """A folder of files served as a website, each request after a lognormal delay.

    A folder's URL serves its `index.html`; a missing file answers 404; the content type comes
    from the file's name, as a static web server's does. Files are read once and kept.
    """

    def __init__(self, root: Path, latency_ms: float = 0.0, latency_sigma: float = 0.3, seed: int = 0) -> None:
        super().__init__()
        self.root = root.resolve()
        self.latency_ms = latency_ms
        self.latency_sigma = latency_sigma
        self.hits: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._stats = RequestStats()
        self._files: dict[Path, bytes] = {}

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._measure])
        app.router.add_get("/{tail:.*}", self._file)
        return app

    @web.middleware
    async def _measure(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(self.stats())
        self.hits[request.path_qs] += 1
        self._stats.started()
        try:
            return await handler(request)
        finally:
            self._stats.ended()

    async def _file(self, request: web.Request) -> web.Response:
        if self.latency_ms > 0:
            median = self.latency_ms / 1000
            await asyncio.sleep(self._rng.lognormvariate(math.log(median), self.latency_sigma))
        path = file_for(self.root, request.path)
        if path is None:
            return web.Response(status=404, text="not found")
        body = self._files.get(path)
        if body is None:
            body = self._files[path] = path.read_bytes()
        kind, encoding = mimetypes.guess_type(path.name)
        headers = {
            "Content-Type": (kind or "application/octet-stream") + ("; charset=utf-8" if kind == "text/html" else "")
        }
        if encoding:
            headers["Content-Type"] = "application/octet-stream"  # .gz and the like: bytes, not text
        return web.Response(body=body, headers=headers)

    def stats(self) -> dict[str, Any]:
        duplicates = sorted(path for path, count in self.hits.items() if count > 1)
        return {
            "requests": sum(self.hits.values()),
            "paths": len(self.hits),
            "duplicates": len(duplicates),
            "duplicate_paths": duplicates[:20],
            "rejected": 0,
            "max_in_flight": self._stats.max_open,
            **self._stats.summary(),
            "config": {"static_dir": str(self.root), "latency_ms": self.latency_ms},
        }


def _serve_static(argv: Sequence[str]) -> None:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench.site --static-dir DIR")
    parser.add_argument("--static-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-sigma", type=float, default=0.3)
    args = parser.parse_args(argv)
    site = StaticSite(args.static_dir, args.latency_ms, args.latency_sigma)

    async def serve() -> None:
        url = await site.start(args.host, args.port)
        print(json.dumps({"url": url}), flush=True)  # the runner reads the URL from it
        try:
            await asyncio.Event().wait()
        finally:
            await site.stop()

    uvloop.run(serve())


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    import uvloop

    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--static-dir" or arg.startswith("--static-dir=") for arg in arguments):
        _serve_static(arguments)
        return
    serve_from_command_line(
        arguments,
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
