"""The Python API: start crawls, read their status, wait for them, from any asyncio program.

    async with Pipeline() as pipeline:
        crawl_id = await pipeline.crawl("https://example.com/list", max_pages=500)
        status = await pipeline.wait(crawl_id)
        print(status.stored, status.failed)

`Pipeline` talks to Redis and MongoDB only; workers (`arq pipeline.WorkerSettings`) do the work.
It also steers crawls (`pause`, `resume`, `cancel`, `retry`, `pause_schedule`, `resume_schedule`):
each returns the crawl's status right after the action, and raises `CrawlNotFound` for an
unknown id and `InvalidTransition` for an action the crawl's state does not allow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

from pipeline.connections import mongo_client, redis_client
from pipeline.crawl.control import CrawlControl
from pipeline.crawl.lifecycle import crawl_status, start_crawl
from pipeline.crawl.options import CrawlOptions
from pipeline.crawl.periodic import schedule_overview
from pipeline.crawl.reprocess import start_reprocess
from pipeline.crawl.status import CrawlStatus
from pipeline.errors import ConfigError, CrawlNotFound
from pipeline.export.destinations import Output
from pipeline.export.exporter import Progress, export_crawl
from pipeline.schedule.backlog import Backlog
from pipeline.schedule.frontier import Frontier
from pipeline.settings import Settings, load_settings
from pipeline.store.mongo import Document, MongoStore
from pipeline.worker.queue import HEALTH_CHECK_SUFFIX


class Pipeline:
    """A connection to a pipeline deployment (its Redis and MongoDB), as an async context manager."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        if not self.settings.redis.url or not self.settings.mongo.url:
            raise ConfigError(
                "redis.url and mongo.url must be set to use the Python API "
                "(PIPELINE_REDIS_URL, PIPELINE_MONGO_URL); the CLI starts embedded services when they are not"
            )
        self._redis: Redis | None = None
        self._mongo: Any = None
        self._store: MongoStore | None = None
        self._frontier: Frontier | None = None
        self._control: CrawlControl | None = None

    async def __aenter__(self) -> Pipeline:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._redis is not None:
            return
        self._redis = redis_client(self.settings)
        self._mongo = mongo_client(self.settings)
        self._store = MongoStore(self._mongo, self.settings.mongo.db, 1, 0)
        self._frontier = Frontier(self._redis, self.settings.redis.queue)
        self._control = CrawlControl(self._store, self._frontier, Backlog(self._store, self._frontier))
        await self._store.ensure_indexes()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._mongo is not None:
            await self._mongo.close()
            self._mongo = None

    def _parts(self) -> tuple[MongoStore, Frontier]:
        if self._store is None or self._frontier is None:
            raise RuntimeError("Pipeline is not connected: use `async with Pipeline() as pipeline:`")
        return self._store, self._frontier

    @property
    def control(self) -> CrawlControl:
        if self._control is None:
            raise RuntimeError("Pipeline is not connected: use `async with Pipeline() as pipeline:`")
        return self._control

    async def crawl(self, start_url: str, **options: Any) -> str:
        """Queue a crawl of `start_url` (a list page) and return its id.

        `options` are crawl options by name, as in `[crawl]` (`max_pages=500`, `scope="domain"`,
        `pipeline="api"`, `on_complete=["my_job"]`, `conditional=True`, ...); what is not given
        comes from the configuration. Jobs named in `on_complete` must be registered in the
        workers (`worker.functions`).

        Raises `InvalidURL` for a URL that is not http(s) and `ConfigError` (a `ValueError`) for
        an unknown or invalid option, before anything is queued.
        """
        store, frontier = self._parts()
        return await start_crawl(store, frontier, CrawlOptions.build(start_url, self.settings, **options))

    async def reprocess(
        self, crawl_id: str, *, fields: Mapping[str, str] | None = None, crunch: str | None = None
    ) -> str:
        """Queue a replay of the pages crawl `crawl_id` stored and return the replay's id.

        Workers parse and crunch each stored body again, in their process pools, and update its
        document, without a request to the site; `fields` (replacing the crawl's, whole) and
        `crunch` change what is extracted. The replay is a crawl of its own: `status`, `wait`
        and the steering calls take its id. Raises `ConfigError` for a bad field or crunch,
        `CrawlNotFound`, and `InvalidTransition` for a crawl still running or with no stored page.
        """
        store, frontier = self._parts()
        return await start_reprocess(store, frontier, self.settings, crawl_id, fields=fields, crunch=crunch)

    async def status(self, crawl_id: str | None = None) -> CrawlStatus:
        """A crawl's state and counters; the most recent crawl when no id is given."""
        store, frontier = self._parts()
        if crawl_id is None:
            latest = await store.latest_crawl()
            if latest is None:
                raise CrawlNotFound("no crawl has been started yet")
            crawl_id = str(latest["_id"])
        status = await crawl_status(store, frontier, crawl_id)
        if status is None:
            raise CrawlNotFound(f"no crawl with id {crawl_id!r}")
        return status

    async def wait(
        self,
        crawl_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        on_progress: Callable[[CrawlStatus], None] | None = None,
    ) -> CrawlStatus:
        """Wait until the crawl has finished (done, failed or cancelled: see `CrawlStatus.state`);
        raises `TimeoutError` after `timeout` seconds if given."""
        async with asyncio.timeout(timeout):
            while True:
                status = await self.status(crawl_id)
                if on_progress is not None:
                    on_progress(status)
                if status.finished:
                    return status
                await asyncio.sleep(poll_interval)

    async def pause(self, crawl_id: str) -> CrawlStatus:
        """Stop workers starting the crawl's jobs (they stay queued); running jobs finish."""
        await self.control.pause(crawl_id)
        return await self.status(crawl_id)

    async def resume(self, crawl_id: str) -> CrawlStatus:
        await self.control.resume(crawl_id)
        return await self.status(crawl_id)

    async def cancel(self, crawl_id: str, *, timeout: float = 60.0, poll_interval: float = 0.5) -> CrawlStatus:
        """Cancel the crawl and wait (up to `timeout` seconds) until its running jobs have ended.

        The status returned is `cancelled`, with counters that add up (`cancelled` counts the
        URLs that never ran), or still `cancelling` if jobs were running at the deadline; the
        workers end it when the last of them settles.
        """
        if await self.control.cancel(crawl_id):
            return await self.status(crawl_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not await self.control.sweep_cancelling(crawl_id):
                    await asyncio.sleep(poll_interval)
        return await self.status(crawl_id)

    async def retry(self, crawl_id: str) -> CrawlStatus:
        """Queue the crawl's recorded failures again as fresh attempts; it runs until done again."""
        await self.control.retry(crawl_id)
        return await self.status(crawl_id)

    async def pause_schedule(self, name: str) -> None:
        """Skip the schedule's ticks (each recorded as skipped) until `resume_schedule`."""
        await self.control.pause_schedule(self.settings, name)

    async def resume_schedule(self, name: str) -> None:
        await self.control.resume_schedule(self.settings, name)

    async def running_jobs(self, crawl_id: str) -> int:
        """How many of the crawl's jobs are running right now (after a pause, they are finishing)."""
        _, frontier = self._parts()
        return await frontier.running_jobs(crawl_id)

    async def workers_running(self) -> bool:
        """Whether any worker has reported on this queue recently (arq's health-check key)."""
        _, frontier = self._parts()
        return bool(await frontier.redis.exists(self.settings.redis.queue + HEALTH_CHECK_SUFFIX))

    async def schedules(self) -> list[Document]:
        """The configured `[[schedule]]`s with their runs, skips, last crawl and next run."""
        store, _ = self._parts()
        return await schedule_overview(store, self.settings)

    async def pages(self, crawl_id: str, limit: int = 0) -> list[Document]:
        """The page documents a crawl stored (without `_id`)."""
        store, _ = self._parts()
        return await store.pages.find({"crawl_id": crawl_id}, {"_id": 0}).limit(limit).to_list()

    async def failures(self, crawl_id: str, limit: int = 0) -> list[Document]:
        store, _ = self._parts()
        return await store.failures.find({"crawl_id": crawl_id}, {"_id": 0}).limit(limit).to_list()

    async def export(
        self,
        crawl_id: str,
        out: Output,
        *,
        format: str = "jsonl",
        fields: Sequence[str] | str | None = None,
        with_body: bool = False,
        on_progress: Progress | None = None,
    ) -> int:
        """Write the pages the crawl stored to `out` and return how many rows were written.

        `out` is a path, `"s3://bucket/key"` (with `[s3]`'s endpoint and credentials) or a binary
        stream; `format` is `jsonl`, `csv` or `parquet` (with the `parquet` extra); `fields` picks
        columns (`["url", "fields.title"]` or `"url,fields.title"`); `with_body` adds each page's
        body. A path or S3 object appears only once the export is complete. Raises
        `CrawlNotFound`, `InvalidExport` (format, fields) before writing anything, and
        `ExportFailed` if writing (or reading a body) fails.
        """
        store, _ = self._parts()
        if isinstance(fields, str):
            fields = fields.split(",")
        return await export_crawl(
            store,
            self.settings,
            crawl_id,
            out,
            format=format,
            fields=fields,
            with_body=with_body,
            on_progress=on_progress,
        )

    async def history(self, url: str) -> list[Document]:
        """The versions of the page at `url`, newest first: the stored one (`current` true), then
        those that later crawls with other content replaced (url, sha256, blob_key, fetched_at,
        crawl_id). Raises `PageNotFound` if no crawl stored it."""
        store, _ = self._parts()
        return await store.history.timeline(url)


async def enqueue_crawl(start_url: str, settings: Settings | None = None, **options: Any) -> str:
    """One-shot: queue a crawl and return its id (opens and closes its own connections)."""
    async with Pipeline(settings) as pipeline:
        return await pipeline.crawl(start_url, **options)
