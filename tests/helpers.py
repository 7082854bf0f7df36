"""Running crawls through real arq workers inside a test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.crawl.status import CrawlStatus
from pipeline.embedded.processes import ServiceProcess
from pipeline.settings import Settings
from pipeline.worker.arq_worker import PipelineWorker
from pipeline.worker.settings import build_worker

ROOT = Path(__file__).resolve().parent.parent


def service_settings(
    redis_server: ServiceProcess, mongo_server: ServiceProcess, s3_server: ServiceProcess, data_dir: Path
) -> Settings:
    """Settings on the shared servers with a private queue, database and bucket."""
    tag = uuid.uuid4().hex[:10]
    return Settings().replace(
        redis={"url": redis_server.url, "queue": f"test:{tag}:queue"},
        mongo={"url": mongo_server.url, "db": f"test_{tag}"},
        s3={"bucket": f"test-{tag}", "endpoint_url": s3_server.url},
        storage={"data_dir": str(data_dir), "batch_delay_ms": 2.0},
        # Metrics off unless a test asks: in-process workers would otherwise all serve them.
        worker={"max_jobs": 50, "poll_delay": 0.01, "job_timeout": 20.0, "max_tries": 3, "metrics_port": 0},
        fetch={
            "allow_private_networks": True,
            "retry_base_delay": 0.05,
            "retry_max_delay": 0.5,
            "read_timeout": 3.0,
            "connect_timeout": 2.0,
            "concurrency": 50,
            "per_host": 20,
        },
        cpu={"processes": 1, "timeout": 10.0},
    )


async def run_burst_worker(settings: Settings, timeout: float = 120) -> None:
    """An in-process arq worker that exits when the queue is empty (deferred retries included)."""
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        async with asyncio.timeout(timeout):
            await worker.async_run()
    finally:
        await worker.close()


@contextlib.asynccontextmanager
async def running_workers(settings: Settings, count: int = 2, **overrides: Any) -> AsyncIterator[list[PipelineWorker]]:
    """`count` arq workers polling the queue on this event loop until the block ends."""
    workers = [build_worker(settings, handle_signals=False, **overrides) for _ in range(count)]
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        yield workers
    finally:
        for worker, task in zip(workers, tasks, strict=True):
            await worker.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30, interval: float = 0.05) -> None:
    """Wait until `check()` is true; fails the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


async def crawl_to_completion(settings: Settings, start_url: str, **options: Any) -> CrawlStatus:
    async with Pipeline(settings) as pipeline:
        crawl_id = await pipeline.crawl(start_url, **options)
        await run_burst_worker(settings)
        return await pipeline.status(crawl_id)


class StaticSite:
    """A tiny site with hand-written pages, on this test's event loop: `{path: html}`.

    A page may also be `(body, content type)` (bytes served as they are). Pages are found by
    decoded path and query, else by the request target as sent. `hits` counts requests
    by decoded path and query; `raw_hits` by the Host header and the request target exactly as
    they arrived; `seen` keeps each request's path and headers. `redirects` maps paths to the
    `Location` of a 302 (`{base}` is this site's URL); `set_cookie` is sent with every answer.
    """

    def __init__(
        self,
        pages: dict[str, str | tuple[bytes, str]],
        *,
        redirects: dict[str, str] | None = None,
        set_cookie: str | None = None,
    ) -> None:
        self.pages = pages
        self.redirects = redirects or {}
        self.set_cookie = set_cookie
        self.hits: dict[str, int] = {}
        self.raw_hits: dict[tuple[str, str], int] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._runner: Any = None
        self.base_url = ""

    async def __aenter__(self) -> StaticSite:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            self.hits[request.path_qs] = self.hits.get(request.path_qs, 0) + 1
            raw = (request.host, request.raw_path)
            self.raw_hits[raw] = self.raw_hits.get(raw, 0) + 1
            self.seen.append((request.path_qs, {k.lower(): v for k, v in request.headers.items()}))
            extra = {"Set-Cookie": self.set_cookie} if self.set_cookie else {}
            if request.path_qs in self.redirects:
                location = self.redirects[request.path_qs].replace("{base}", self.base_url)
                return web.Response(status=302, headers={"Location": location, **extra})
            page = self.pages.get(request.path_qs, self.pages.get(request.raw_path))
            if page is None:
                return web.Response(status=404, text="not here", headers=extra)
            if isinstance(page, tuple):
                return web.Response(body=page[0], content_type=page[1], headers=extra)
            return web.Response(text=page.replace("{base}", self.base_url), content_type="text/html", headers=extra)

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def resolve_to_loopback(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make `names` resolve to 127.0.0.1 in this process, as a hosts file would (no DNS here).

    The worker's resolver asks `socket.getaddrinfo` (in a thread); every other name resolves as
    before.
    """
    real = socket.getaddrinfo
    known = {name.lower() for name in names}

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real("127.0.0.1" if isinstance(name, str) and name.lower() in known else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def service_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        PIPELINE_CONFIG=str(ROOT / "config.toml"),
        PIPELINE_REDIS_URL=settings.redis.url,
        PIPELINE_REDIS_QUEUE=settings.redis.queue,
        PIPELINE_MONGO_URL=settings.mongo.url,
        PIPELINE_MONGO_DB=settings.mongo.db,
        PIPELINE_S3_BUCKET=settings.s3.bucket,
        PIPELINE_S3_ENDPOINT_URL=settings.s3.endpoint_url,
        PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS="true",
        PIPELINE_FETCH_CONCURRENCY="64",
        PIPELINE_FETCH_PER_HOST="16",
        PIPELINE_FETCH_RETRY_BASE_DELAY="0.05",
        PIPELINE_CPU_PROCESSES="1",
        PIPELINE_WORKER_METRICS_PORT="0",
        PIPELINE_STORAGE_DATA_DIR=str(Path(settings.storage.data_dir)),
    )
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class WorkerProcess:
    """`arq pipeline.WorkerSettings` in a child process, run by arq's console script as users run
    it, its log in a file."""

    def __init__(self, settings: Settings, log: Path, **extra_env: str) -> None:
        env = service_env(settings)
        env.update(extra_env)
        self.log_path = log
        with log.open("w") as handle:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "arq"), "pipeline.WorkerSettings"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=handle,
            )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    async def stop(self, timeout: float = 40) -> tuple[int, str]:
        """SIGTERM, then wait for the exit code; returns it with the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, timeout)
        return code, self.log_path.read_text()


async def stored_count(settings: Settings, crawl_id: str) -> int:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        return await client[settings.mongo.db].pages.count_documents({"crawl_id": crawl_id})
    finally:
        await client.close()


async def stored_pages(settings: Settings, crawl_id: str) -> dict[str, dict[str, Any]]:
    """The crawl's page documents, by URL."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        return {p["url"]: p for p in await client[settings.mongo.db].pages.find({"crawl_id": crawl_id}).to_list()}
    finally:
        await client.close()
