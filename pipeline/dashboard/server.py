"""`pipeline dashboard`: the web server behind the page (aiohttp), safe by default.

- It binds 127.0.0.1 unless told otherwise, and then answers only requests whose `Host` is a
  loopback name, so a web page that rebinds its own domain to 127.0.0.1 cannot read it.
- Every `/api/` request carries a token in the `X-Pipeline-Token` header. On loopback the server
  makes one at start and puts it in the page it serves; bound to any other address it refuses to
  start without `--token` (or `PIPELINE_DASHBOARD_TOKEN`), which the operator opens the page with
  (`http://host:8080/#token=...`, a fragment: it never reaches a server log) and which the page
  never contains. A header cannot be sent by another site's page without a CORS preflight, which
  this server never grants, and state-changing requests must also come with a same-origin
  `Origin` (or none, as from curl). No cookies.
- Responses forbid framing and any script, style or connection not from this server; the page
  needs nothing from outside (its chart is drawn by its own script).
- What it shows passes through `pipeline.dashboard.data`, which removes credentials from URLs.

It reads what workers keep anyway, plus a rate history it samples itself every few seconds, and
it sweeps crawls being cancelled, as workers do, so a cancel from the page ends even when no
worker is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.api import Pipeline
from pipeline.cli.runtime import services
from pipeline.crawl.status import ACTIVE_STATES
from pipeline.dashboard.data import DETAIL_CACHE_S, RateHistory, crawl_breakdown, crawl_detail, overview
from pipeline.errors import ConfigError, CrawlNotFound, InvalidTransition
from pipeline.settings import Settings

log = logging.getLogger("pipeline.dashboard")

TOKEN_ENV = "PIPELINE_DASHBOARD_TOKEN"
TOKEN_HEADER = "X-Pipeline-Token"
SAMPLE_INTERVAL_S = 2.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
ACTIONS = ("pause", "resume", "cancel", "retry")
STATIC = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return (files("pipeline.dashboard") / "static" / name).read_bytes()


class Dashboard:
    """The application: routes, the security checks, the rate sampler."""

    def __init__(self, pipeline: Pipeline, *, token: str, embed_token: bool, loopback_only: bool) -> None:
        self.pipeline = pipeline
        self.token = token
        self.embed_token = embed_token
        self.loopback_only = loopback_only
        self.history = RateHistory()
        self._details: dict[str, tuple[float, dict[str, Any]]] = {}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/api/overview", self._overview)
        app.router.add_get("/api/crawls/{crawl_id}", self._detail)
        app.router.add_post("/api/crawls/{crawl_id}/{action}", self._act)
        app.router.add_post("/api/schedules/{name}/{action}", self._schedule)
        app.cleanup_ctx.append(self._sampler)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            response: web.StreamResponse = web.json_response({"error": refusal[1]}, status=refusal[0])
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = web.json_response({"error": exc.reason}, status=exc.status)
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def _refusal(self, request: web.Request) -> tuple[int, str] | None:
        """Why a request is refused (status, message), or None."""
        if self.loopback_only and not is_loopback(request.url.host or ""):
            return 421, "this dashboard answers only to a loopback host name"
        if not request.path.startswith("/api/"):
            return None
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), self.token.encode()):
            return 401, f"missing or wrong {TOKEN_HEADER} header"
        if request.method != "GET":
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return 403, "cross-origin request refused"
            if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request refused"
        return None

    async def _index(self, request: web.Request) -> web.Response:
        page = _static("index.html").decode()
        page = page.replace("{{token}}", self.token if self.embed_token else "")
        page = page.replace("{{queue}}", self.pipeline.settings.redis.queue)
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(reason="no such file")
        return web.Response(body=_static(name), content_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    async def _overview(self, request: web.Request) -> web.Response:
        return web.json_response(await overview(self.pipeline, self.history))

    async def _detail(self, request: web.Request) -> web.Response:
        crawl_id = request.match_info["crawl_id"]
        try:
            live = await crawl_detail(self.pipeline, crawl_id, self.history)
            cached = self._details.get(crawl_id)
            if cached is not None and time.monotonic() - cached[0] < DETAIL_CACHE_S:
                breakdown = cached[1]
            else:
                breakdown = await crawl_breakdown(self.pipeline, crawl_id)
                now = time.monotonic()
                self._details = {k: v for k, v in self._details.items() if now - v[0] < DETAIL_CACHE_S}
                self._details[crawl_id] = (now, breakdown)
        except CrawlNotFound as exc:
            raise web.HTTPNotFound(reason=str(exc)) from None
        return web.json_response({**breakdown, **live})

    async def _act(self, request: web.Request) -> web.Response:
        crawl_id, action = request.match_info["crawl_id"], request.match_info["action"]
        if action not in ACTIONS:
            raise web.HTTPNotFound(reason=f"no action {action!r}")
        control = self.pipeline.control
        try:
            if action == "pause":
                await control.pause(crawl_id)
            elif action == "resume":
                await control.resume(crawl_id)
            elif action == "cancel":
                await control.cancel(crawl_id)
            else:
                await control.retry(crawl_id)
            status = await self.pipeline.status(crawl_id)
        except CrawlNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except InvalidTransition as exc:
            return web.json_response({"error": str(exc)}, status=409)
        self._details.pop(crawl_id, None)
        log.info("dashboard: %s crawl %s", action, crawl_id)
        return web.json_response({"crawl_id": crawl_id, "state": status.state})

    async def _schedule(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        try:
            if action == "pause":
                await self.pipeline.pause_schedule(name)
            elif action == "resume":
                await self.pipeline.resume_schedule(name)
            else:
                raise web.HTTPNotFound(reason=f"no action {action!r}")
        except CrawlNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except InvalidTransition as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"schedule": name, "paused": action == "pause"})

    async def _sampler(self, app: web.Application) -> Any:
        task = asyncio.create_task(self._sample_forever(), name="pipeline-dashboard-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except (PyMongoError, RedisError) as exc:
                log.warning("dashboard: could not sample the crawls: %s", exc)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def sample(self) -> None:
        """Record every unfinished crawl's settled pages; finish cancels no worker is left to finish."""
        store = self.pipeline.control.store
        now = time.time()
        for record in await store.crawls.find({"state": {"$in": list(ACTIVE_STATES)}}, {"_id": 1}).to_list():
            status = await self.pipeline.status(str(record["_id"]))
            self.history.record(status.crawl_id, status.settled, now)
        await self.pipeline.control.sweep()


def resolve_token(host: str, token: str | None) -> tuple[str, bool]:
    """The token the API requires, and whether the page may carry it (only one made here, on loopback)."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        if len(token) < 16:
            raise ConfigError("--token: use at least 16 characters")
        return token, False
    if not is_loopback(host):
        raise ConfigError(
            f"--host {host} is not a loopback address: give a --token (or {TOKEN_ENV}) of at least 16 "
            "characters, which the page will ask for"
        )
    return secrets.token_urlsafe(24), True


async def start_dashboard(pipeline: Pipeline, host: str, port: int, token: str | None) -> tuple[web.AppRunner, str]:
    """Serve the dashboard until the runner is cleaned up; returns it and the page's address."""
    secret, embed = resolve_token(host, token)
    dashboard = Dashboard(pipeline, token=secret, embed_token=embed, loopback_only=is_loopback(host))
    runner = web.AppRunner(dashboard.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}/"


async def run_dashboard(settings: Settings, *, host: str, port: int, token: str | None) -> int:
    """`pipeline dashboard`: serve until interrupted."""
    resolve_token(host, token)  # refuse a bad setup before starting any service
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        runner, address = await start_dashboard(pipeline, host, port, token)
        hint = "" if is_loopback(host) else "#token=<your token>"
        print(f"pipeline: dashboard on {address}{hint} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    return 0
