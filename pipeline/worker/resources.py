"""Everything a worker shares between its jobs, opened once at startup and closed at shutdown.

One HTTP session, one MongoDB client, one S3 client, one process pool, one set of limits per
worker: never one per job. The whole bundle travels in arq's `ctx` under `ctx["pipeline"]`;
what it opens is registered on the worker's one exit stack (`pipeline.worker.lifecycle`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis

from pipeline.connections import mongo_client, redis_client
from pipeline.crawl.options import CrawlOptions
from pipeline.crunch.pool import CpuPool
from pipeline.crunch.registry import NO_CRUNCH, CpuFunction, cpu_functions, crunch_function, reprocess_function
from pipeline.download.crawl_requests import CrawlRequests
from pipeline.download.deferral import DEFER_AFTER_S
from pipeline.download.fetcher import Fetcher, create_session
from pipeline.download.fleet_limits import FleetLimits
from pipeline.download.host_limits import AdaptiveLimiter, AdaptiveSettings
from pipeline.download.robots import RobotsCache
from pipeline.download.ssrf_guard import GuardedResolver
from pipeline.observe.metrics import Metrics, Recorder
from pipeline.parse.fields import FieldSpec, parse_fields
from pipeline.schedule.backlog import Backlog
from pipeline.schedule.discover import crawl_scope
from pipeline.schedule.frontier import Frontier
from pipeline.schedule.scope import PublicSuffixes, Scope
from pipeline.settings import Settings
from pipeline.store.blobs import BlobStore, FileBlobStore, S3BlobStore, s3_client
from pipeline.store.mongo import MongoStore
from pipeline.urls import LinkResolver
from pipeline.worker.remote_cpu import RemoteCpu

_OPTIONS_CACHE_SIZE = 256
T = TypeVar("T")
V = TypeVar("V")


class _PerCrawl(Generic[V]):
    """What a worker works out once per crawl (options, scope, fields, request settings), kept
    for the crawls it saw last: a crawl's options never change while it runs."""

    def __init__(self, size: int = _OPTIONS_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, crawl_id: str) -> V | None:
        value = self._items.get(crawl_id)
        if value is not None:
            self._items.move_to_end(crawl_id)
        return value

    def put(self, crawl_id: str, value: V) -> V:
        self._items[crawl_id] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


@dataclass
class Resources:
    settings: Settings
    frontier: Frontier
    store: MongoStore
    blobs: BlobStore
    fetcher: Fetcher
    limiter: AdaptiveLimiter
    backlog: Backlog
    cpu: CpuPool | None  # this worker's pool; None when CPU work goes to CPU workers
    remote_cpu: RemoteCpu | None
    metrics: Recorder = field(default_factory=Recorder)  # `Metrics` when the worker serves them
    cpu_registry: dict[str, CpuFunction] = field(default_factory=cpu_functions)  # what crawls may `crunch`
    links: LinkResolver = field(default_factory=LinkResolver)
    suffixes: PublicSuffixes = field(default_factory=PublicSuffixes)  # read when a crawl first needs it
    _options: _PerCrawl[CrawlOptions] = field(default_factory=_PerCrawl)
    _scopes: _PerCrawl[Scope] = field(default_factory=_PerCrawl)
    _fields: _PerCrawl[tuple[FieldSpec, ...]] = field(default_factory=_PerCrawl)
    _fetchers: _PerCrawl[Fetcher] = field(default_factory=_PerCrawl)

    async def crawl_options(self, crawl_id: str) -> CrawlOptions:
        """A crawl's options, cached: they never change while the crawl runs."""
        cached = self._options.get(crawl_id)
        if cached is not None:
            return cached
        raw = await self.frontier.options(crawl_id)
        if raw is None:
            record = await self.store.get_crawl(crawl_id)
            if record is None:
                raise LookupError(f"unknown crawl {crawl_id!r}")
            raw = record["options"]
        return self._options.put(crawl_id, CrawlOptions.from_dict(raw))

    async def crawl_scope(self, crawl_id: str) -> Scope:
        """A crawl's scope, its patterns compiled once (and the public-suffix list read, in a
        thread, the first time a crawl of this worker asks for a domain scope)."""
        cached = self._scopes.get(crawl_id)
        if cached is not None:
            return cached
        options = await self.crawl_options(crawl_id)
        if options.scope == "domain" and not self.suffixes.loaded:
            await asyncio.to_thread(self.suffixes.load)
        return self._scopes.put(crawl_id, crawl_scope(options, self.suffixes))

    async def crawl_fields(self, crawl_id: str) -> tuple[FieldSpec, ...]:
        """A crawl's declared fields, their specs parsed once per crawl rather than on every page."""
        cached = self._fields.get(crawl_id)
        if cached is not None:
            return cached
        return self._fields.put(crawl_id, parse_fields((await self.crawl_options(crawl_id)).fields))

    def reprocess_function(self, crunch: str) -> CpuFunction:
        """A replay's CPU task (parse, fields, crunch) for a crawl's `crunch`; LookupError if unregistered."""
        return reprocess_function(crunch, self.cpu_registry)

    async def crawl_fetcher(self, crawl_id: str) -> Fetcher:
        """The fetcher as this crawl requests pages: with its headers, cookies, auth, User-Agent
        and proxies, worked out once (the worker's own fetcher when the crawl sets none)."""
        cached = self._fetchers.get(crawl_id)
        if cached is not None:
            return cached
        options = await self.crawl_options(crawl_id)
        return self._fetchers.put(crawl_id, self.fetcher.for_crawl(CrawlRequests.build(options)))

    def crunch_function(self, crunch: str) -> CpuFunction | None:
        """The function a crawl's `crunch` option names (None for `none`); LookupError if unregistered."""
        return crunch_function(crunch, self.cpu_registry)

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a CPU-stage function: in this worker's pool, or on a CPU worker when roles are split."""
        if self.cpu is not None:
            return await self.cpu.run(fn, *args)
        if self.remote_cpu is None:
            raise RuntimeError("this worker has no CPU stage")
        result: T = await self.remote_cpu.run(fn, *args)
        return result


def adaptive_settings(settings: Settings) -> AdaptiveSettings:
    """Per-host limits between `fetch.per_host_min` and `fetch.per_host`; fixed when not adaptive."""
    fetch = settings.fetch
    if not fetch.adaptive:
        return AdaptiveSettings(min_limit=fetch.per_host, max_limit=fetch.per_host, initial_limit=fetch.per_host)
    return AdaptiveSettings(
        min_limit=fetch.per_host_min,
        max_limit=fetch.per_host,
        initial_limit=max(fetch.per_host_min, min(fetch.per_host_initial, fetch.per_host)),
    )


def host_limiter(settings: Settings, redis: Redis) -> AdaptiveLimiter:
    """The worker's request limits: per host shared by the fleet through Redis (`fetch.shared_limits`)."""
    adaptive = adaptive_settings(settings)
    fleet = None
    if settings.fetch.shared_limits:
        fleet = FleetLimits(
            redis,
            initial_limit=adaptive.initial_limit,
            min_limit=adaptive.min_limit,
            max_limit=adaptive.max_limit,
            lease_s=settings.worker.lease,
            max_start_wait_s=DEFER_AFTER_S,
        )
    return AdaptiveLimiter(settings.fetch.concurrency, adaptive, fleet=fleet)


def cpu_pool(settings: Settings) -> CpuPool:
    """The worker's process pool, sized and batched as `[cpu]` says."""
    return CpuPool(
        settings.cpu_processes,
        settings.cpu_max_in_flight,
        settings.cpu.timeout,
        batch_delay=settings.cpu.batch_delay_ms / 1000,
        batch_size=settings.cpu.batch_size,
    )


async def open_blob_store(settings: Settings, stack: AsyncExitStack) -> BlobStore:
    """S3 when a bucket is configured, else a folder under the data directory."""
    if not settings.s3.bucket:
        return FileBlobStore(settings.data_dir / "blobs", settings.s3.prefix)
    client, credentials = await stack.enter_async_context(s3_client(settings.s3))
    store = S3BlobStore(client, settings.s3.bucket, settings.s3.prefix)
    await store.open(credentials, max_connections=settings.s3.max_pool_connections)
    stack.push_async_callback(store.close)
    return store


async def open_resources(
    settings: Settings, redis: Redis, stack: AsyncExitStack, *, local_cpu: bool = True
) -> Resources:
    """Open every shared resource, each registered on `stack` to be closed with it.

    With `local_cpu` false (an I/O worker) there is no process pool: CPU work goes to CPU workers.
    """
    client = mongo_client(settings)
    stack.push_async_callback(client.close)
    store = MongoStore(client, settings.mongo.db, settings.storage.batch_size, settings.storage.batch_delay_ms / 1000)
    stack.push_async_callback(store.drain)
    await store.ensure_indexes()
    blobs = await open_blob_store(settings, stack)
    guard = GuardedResolver(settings.fetch.allow_private_networks)
    session = create_session(settings.fetch, guard)
    stack.push_async_callback(session.close)
    limiter = host_limiter(settings, redis)
    limiter.start()
    stack.push_async_callback(limiter.close)
    cpu: CpuPool | None = None
    remote_cpu: RemoteCpu | None = None
    registry = cpu_functions(settings.cpu.functions)
    if local_cpu:
        cpu = cpu_pool(settings)
        stack.callback(cpu.close)
        # Crawls that crunch are the default: their first pages should not wait for the pool.
        # A deployment whose crawls store pages only (`crawl.crunch = "none"`) never pays for
        # pool processes unless a crawl asks for them; then they start on that first call.
        if settings.crawl.crunch != NO_CRUNCH:
            await cpu.start_processes()
    else:
        # A CPU worker's queue may be busy: allow for waiting, not just for the work.
        remote_cpu = RemoteCpu(
            redis, redis_client(settings), settings.cpu.queue, settings.cpu.timeout * 4, registry=registry
        )
        remote_cpu.start()
        stack.push_async_callback(remote_cpu.close)
    frontier = Frontier(redis, settings.redis.queue)
    backlog = Backlog(store, frontier)
    await backlog.ensure_indexes()
    metrics = Metrics() if settings.worker.metrics_port else Recorder()
    return Resources(
        settings=settings,
        frontier=frontier,
        backlog=backlog,
        store=store,
        blobs=blobs,
        fetcher=Fetcher(session, limiter, settings.fetch, metrics, RobotsCache(redis, settings.fetch), guard),
        limiter=limiter,
        cpu=cpu,
        remote_cpu=remote_cpu,
        metrics=metrics,
        cpu_registry=registry,
    )
