"""The floor: the pipeline's per-page work as one plain asyncio loop, with no queue in between.

`python -m bench.floor ...` (normally started by `bench.run`) crawls the same site into the same
services doing what a pipeline worker does for each page, with the same libraries and nothing
else: an aiohttp GET on one session, `pipeline.parse` (selectolax), links resolved by
`pipeline.urls.LinkResolver`, `pipeline.crunch.fingerprint` in the pipeline's process pool, one
put per page through `pipeline.blobs.S3BlobStore` (a SigV4-signed PUT with the aioboto3 client's
credentials), and a MongoDB upsert. `--writes single` does each page's upsert and pool call on
its own; `--writes bulk` batches both as the pipeline does (`bulk_write`s, and pool calls sent
together as `[cpu]`'s defaults say). `--crunch none` skips the CPU stage as `crawl.crunch =
"none"` does (no pool, no text extracted); `--journal` (the default) writes with `j: true` as
the pipeline's `mongo.journal` does. No Redis, no arq, no retries, no leases. What the pipeline spends above this
is the price of its queue and its guarantees; the floor is what an ideal pipeline on these parts
would still spend.

Protocol with the runner: the floor opens its clients and starts its pool processes, prints
`ready`, waits for a line on stdin, crawls, and prints one JSON line with its own counts.

Only light modules are imported at module level: the pool's processes import this module again
as `__mp_main__`, and must stay as small as the pipeline's pool processes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.crunch.fingerprint import fingerprint
from pipeline.errors import InvalidURL
from pipeline.parse.html import ParsedPage, decode_html, parse_html
from pipeline.urls import LinkResolver, url_host

if TYPE_CHECKING:
    import aiohttp

    from pipeline.crunch.pool import CpuPool
    from pipeline.store.blobs import S3BlobStore

READY = "ready"


@dataclass(frozen=True)
class FloorOptions:
    start_url: str
    mongo_url: str
    db: str
    s3_endpoint: str
    bucket: str
    prefix: str
    crawl_id: str
    concurrency: int
    max_depth: int
    link_selector: str
    next_selector: str
    writes: str  # "single" or "bulk"
    batch_size: int
    processes: int
    s3_pool: int
    crunch: str  # "fingerprint", or "none": no CPU stage, no pool, no text extracted
    journal: bool  # MongoDB write concern j: true, as the pipeline's default


@dataclass
class Counts:
    pages: int = 0
    lists: int = 0
    links: int = 0
    failed: list[str] = field(default_factory=list)


class BulkWriter:
    """Upserts gathered into `bulk_write`s of `size`: the cheapest way to write many documents.

    Unlike the pipeline's group commit, nobody waits for their document's write: the floor needs
    only every document written by the end.
    """

    def __init__(self, collection: Any, size: int) -> None:
        self._collection = collection
        self._size = size
        self._ops: list[Any] = []
        self._writes: list[asyncio.Task[Any]] = []

    def add(self, url: str, document: dict[str, Any]) -> None:
        from pymongo import UpdateOne

        self._ops.append(UpdateOne({"url": url}, {"$set": document}, upsert=True))
        if len(self._ops) >= self._size:
            self.flush()

    def flush(self) -> None:
        if self._ops:
            ops, self._ops = self._ops, []
            self._writes.append(asyncio.create_task(self._collection.bulk_write(ops, ordered=False)))

    async def drain(self) -> None:
        self.flush()
        await asyncio.gather(*self._writes)


class Floor:
    """Crawls list pages (sequentially, as pagination forces) and their children concurrently."""

    def __init__(self, options: FloorOptions, session: aiohttp.ClientSession, pages: Any, s3: S3BlobStore) -> None:
        self.options = options
        self.session = session
        self.pages = pages
        self.s3 = s3
        self.pool: CpuPool | None = None
        self.counts = Counts()
        self._host = url_host(options.start_url)
        self._links = LinkResolver()  # as a pipeline worker resolves links
        self._seen: set[str] = set()  # child pages, and list pages prefixed "L|"
        self._slots = asyncio.Semaphore(options.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._bulk = BulkWriter(pages, options.batch_size) if options.writes == "bulk" else None

    @property
    def _keeps_start_page(self) -> bool:
        """As the pipeline: a site crawl (links followed below the children) stores its start page."""
        return self.options.max_depth > 1

    async def crawl(self) -> Counts:
        if self._keeps_start_page:
            self._seen.add(self.options.start_url)  # stored from its list fetch, never fetched again
        self._visit(self.options.start_url, depth=0, is_list=True)
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        if self._bulk is not None:
            await self._bulk.drain()
        return self.counts

    def _visit(self, url: str, *, depth: int, is_list: bool) -> None:
        key = "L|" + url if is_list else url
        if key in self._seen:
            return
        self._seen.add(key)
        work = self._list(url) if is_list else self._page(url, depth)
        task = asyncio.create_task(self._guard(url, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, url: str, work: Awaitable[None]) -> None:
        try:
            async with self._slots:
                await work
        except Exception as exc:  # noqa: BLE001 - the floor reports failures, it does not retry them
            self.counts.failed.append(f"{url}: {type(exc).__name__}: {exc}")

    async def _get(self, url: str) -> tuple[bytes, str | None]:
        async with self.session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return await response.read(), response.charset

    def _follow(self, page_url: str, hrefs: list[str], seen: set[str], *, depth: int, is_list: bool) -> None:
        """Visit the in-scope links of a page; `seen` holds what this page already linked (and itself).

        As in the pipeline's `discover`: a page's link to itself, or a list page's link to the next
        list page under the child selector too, is not a child page.
        """
        for href in hrefs:
            try:
                url = self._links.resolve(href, page_url)
            except InvalidURL:
                continue
            if url not in seen and url_host(url) == self._host:
                seen.add(url)
                self._visit(url, depth=depth, is_list=is_list)

    async def _list(self, url: str) -> None:
        started = time.perf_counter()
        body, charset = await self._get(url)
        fetch_ms = (time.perf_counter() - started) * 1000
        parsed = parse_html(
            decode_html(body, charset),
            link_selector=self.options.link_selector,
            next_selector=self.options.next_selector,
        )
        self.counts.lists += 1
        if url == self.options.start_url and self._keeps_start_page:
            await self._store(url, 0, body, charset, parsed, fetch_ms)
        seen = {url}
        self._follow(url, parsed.next_links, seen, depth=0, is_list=True)
        self._follow(url, parsed.links, seen, depth=1, is_list=False)

    async def _page(self, url: str, depth: int) -> None:
        started = time.perf_counter()
        body, charset = await self._get(url)
        fetch_ms = (time.perf_counter() - started) * 1000
        parsed = parse_html(
            decode_html(body, charset), link_selector=self.options.link_selector, text=self.options.crunch != "none"
        )
        await self._store(url, depth, body, charset, parsed, fetch_ms)
        if depth < self.options.max_depth:
            self.counts.links += len(parsed.links)
            self._follow(url, parsed.links, {url}, depth=depth + 1, is_list=False)

    async def _store(
        self, url: str, depth: int, body: bytes, charset: str | None, parsed: ParsedPage, fetch_ms: float
    ) -> None:
        crunch = self.options.crunch != "none"
        sha256 = hashlib.sha256(body).hexdigest()
        put = self.s3.put(sha256, body, "text/html")
        crunched: dict[str, Any] | None = None
        if crunch and parsed.text:
            assert self.pool is not None
            key, crunched = await asyncio.gather(put, self.pool.run(fingerprint, parsed.text))
        else:
            key = await put
        document = self._document(url, depth, body, sha256, key, parsed, crunched, fetch_ms, charset)
        if self._bulk is not None:
            self._bulk.add(url, document)
        else:
            await self.pages.update_one({"url": url}, {"$set": document}, upsert=True)
        self.counts.pages += 1

    def _document(
        self,
        url: str,
        depth: int,
        body: bytes,
        sha256: str,
        key: str,
        parsed: ParsedPage,
        crunched: dict[str, Any] | None,
        fetch_ms: float,
        charset: str | None,
    ) -> dict[str, Any]:
        """The same fields as the pipeline's page document."""
        return {
            "url": url,
            "crawl_id": self.options.crawl_id,
            "depth": depth,
            "status": 200,
            "final_url": url,
            "redirects": 0,
            "content_type": "text/html",
            "charset": charset,
            "length": len(body),
            "truncated": False,
            "sha256": sha256,
            "blob_key": key,
            "blob_store": f"s3://{self.options.bucket}/{self.options.prefix}",
            "fetched_at": dt.datetime.now(dt.UTC),
            "attempts": 1,
            "timings": {"fetch_ms": round(fetch_ms, 2)},
            "parsed": True,
            **content_fields(parsed, crunched),
        }


def content_fields(parsed: ParsedPage, crunched: dict[str, Any] | None) -> dict[str, Any]:
    """A page document's fields from its parse and its fingerprint (None: `crunch = none`), as the
    pipeline stores them."""
    fields = {
        "title": parsed.title,
        "description": parsed.description,
        "canonical": parsed.canonical,
        "language": parsed.language,
        "link_count": parsed.link_count,
    }
    if crunched is not None:
        fields.update(word_count=crunched["word_count"], simhash=crunched["simhash"], top_words=crunched["top_words"])
    return fields


async def _open(options: FloorOptions, stack: AsyncExitStack) -> Floor:
    """One session, one MongoDB client, one S3 client, one pool: as a pipeline worker holds them."""
    import aioboto3
    import aiohttp
    from aiobotocore.config import AioConfig
    from pymongo import ASCENDING, AsyncMongoClient

    from pipeline.crunch.pool import CpuPool
    from pipeline.settings import CpuSettings
    from pipeline.store.blobs import S3BlobStore

    connector = aiohttp.TCPConnector(limit=options.concurrency, limit_per_host=options.concurrency)
    session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        options.mongo_url, tz_aware=True, journal=options.journal
    )
    stack.push_async_callback(mongo.close)
    pages = mongo[options.db]["pages"]
    await pages.create_index([("url", ASCENDING)], unique=True)
    await pages.create_index([("crawl_id", ASCENDING)])
    config = AioConfig(
        max_pool_connections=options.s3_pool,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    boto = aioboto3.Session()
    client = await stack.enter_async_context(
        boto.client("s3", endpoint_url=options.s3_endpoint, region_name="us-east-1", config=config)
    )
    s3 = S3BlobStore(client, options.bucket, options.prefix)
    await s3.open(await boto.get_credentials(), max_connections=options.s3_pool)
    stack.push_async_callback(s3.close)
    floor = Floor(options, session, pages, s3)
    batching = CpuSettings() if options.writes == "bulk" else CpuSettings(batch_delay_ms=0.0, batch_size=1)
    pool = CpuPool(
        options.processes,
        max_in_flight=options.concurrency,
        timeout=60.0,
        batch_delay=batching.batch_delay_ms / 1000,
        batch_size=batching.batch_size,
    )
    stack.callback(pool.close)
    if options.crunch != "none":
        await pool.start_processes()
    floor.pool = pool
    return floor


async def run(options: FloorOptions) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        floor = await _open(options, stack)
        print(READY, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the runner's "go", once its meters are marked
        started = time.perf_counter()
        counts = await floor.crawl()
        wall = time.perf_counter() - started
    return {
        "pages": counts.pages,
        "lists": counts.lists,
        "links": counts.links,
        "failed": len(counts.failed),
        "failures": counts.failed[:5],
        "wall_s": round(wall, 3),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--start-url", required=True)
    parser.add_argument("--mongo-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="bodies/")
    parser.add_argument("--crawl-id", default="floor")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--max-depth", type=int, default=1)
    parser.add_argument("--link-selector", default="a[href]")
    parser.add_argument("--next-selector", default="a[rel=next]")
    parser.add_argument("--writes", choices=("single", "bulk"), default="bulk")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--s3-pool", type=int, default=64, help="S3 connections (the pipeline's default)")
    parser.add_argument("--crunch", choices=("fingerprint", "none"), default="fingerprint")
    parser.add_argument("--journal", action=argparse.BooleanOptionalAction, default=True, help="write with j: true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    import uvloop  # the pipeline's workers run on uvloop too

    args = _parser().parse_args(argv)
    options = FloorOptions(**{name.replace("-", "_"): value for name, value in vars(args).items()})
    print(json.dumps(uvloop.run(run(options))), flush=True)


if __name__ == "__main__":
    main()
