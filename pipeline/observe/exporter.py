"""A worker's own small HTTP server: `/metrics` for Prometheus and `/health` for orchestrators.

It runs on the worker's event loop (aiohttp, already the worker's HTTP client) and is closed
with the worker's exit stack. It binds `worker.metrics_host`, on `worker.metrics_port` or the
next free port above it, so several workers on one machine need no port each in the config; the
port taken is logged and written into the worker's heartbeat, so the dashboard shows it.

`/health` answers 200 while the worker's poll loop has reached Redis lately and 503 when it has
not (Redis away, loop stuck), with a small JSON body either way.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.observe.heartbeat import Liveness
from pipeline.observe.metrics import Metrics

log = logging.getLogger("pipeline.metrics")

PORTS_TRIED = 100


async def serve_metrics(
    stack: AsyncExitStack,
    metrics: Metrics,
    liveness: Liveness,
    *,
    host: str,
    port: int,
    poll_within_s: float,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Serve `/metrics` and `/health` until `stack` closes; returns the port taken."""

    async def scrape(request: web.Request) -> web.Response:
        if before_scrape is not None:
            await before_scrape()
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        polling = liveness.polling(poll_within_s)
        body = {
            "status": "ok" if polling else "not polling",
            "polling": polling,
            "jobs_running": liveness.jobs_running,
            "loop_lag_ms": round(liveness.loop_lag_s * 1000, 1),
        }
        return web.json_response(body, status=200 if polling else 503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    for candidate in range(port, min(port + PORTS_TRIED, 65536)):
        try:
            await web.TCPSite(runner, host, candidate).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        log.info("metrics on http://%s:%d/metrics, health on /health", host, candidate)
        return candidate
    raise OSError(errno.EADDRINUSE, f"worker.metrics_port: ports {port} to {port + PORTS_TRIED - 1} are all in use")
