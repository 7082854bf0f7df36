"""The store stage: page metadata, failures and crawl records in MongoDB.

Page writes from many concurrent jobs are grouped into one `bulk_write` (group commit): each job
awaits the flush that carries its document, so a job never completes before its write is
durable, yet the database sees a few large writes instead of thousands of small ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

Document = dict[str, Any]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BatchWriter:
    """Buffers upserts for one collection and writes them in bulk after `max_delay` or `max_batch`."""

    def __init__(self, collection: AsyncCollection[Document], max_batch: int, max_delay: float) -> None:
        self._collection = collection
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._ops: list[UpdateOne] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    async def upsert(self, key: Mapping[str, Any], update: Mapping[str, Any]) -> None:
        """Queue an upsert and return once it is written (or raise what the write raised)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._ops.append(UpdateOne(dict(key), dict(update), upsert=True))
        self._waiters.append(waiter)
        if len(self._ops) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_delay, self._flush)
        await waiter

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ops:
            return
        ops, waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        task = asyncio.get_running_loop().create_task(self._write(ops, waiters))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, ops: list[UpdateOne], waiters: list[asyncio.Future[None]]) -> None:
        failed: dict[int, BaseException] = {}
        try:
            await self._collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                failed[error["index"]] = RuntimeError(f"write failed: {error.get('errmsg', error)}")
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn the outcome
            failed = dict.fromkeys(range(len(ops)), exc)
        for index, waiter in enumerate(waiters):
            if waiter.done():
                continue
            if index in failed:
                waiter.set_exception(failed[index])
            else:
                waiter.set_result(None)

    async def drain(self) -> None:
        """Write everything buffered; used at shutdown so nothing queued is lost."""
        self._flush()
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


class MongoStore:
    """Collections `pages`, `failures` and `crawls` of the configured database."""

    def __init__(self, client: AsyncMongoClient[Document], db_name: str, batch_size: int, batch_delay: float) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[db_name]
        self.pages = self.db["pages"]
        self.failures = self.db["failures"]
        self.crawls = self.db["crawls"]
        self._batch_size, self._batch_delay = batch_size, batch_delay
        self._writers: dict[str, BatchWriter] = {"pages": BatchWriter(self.pages, batch_size, batch_delay)}

    async def ensure_indexes(self) -> None:
        await self.pages.create_index([("url", ASCENDING)], unique=True)
        await self.pages.create_index([("crawl_id", ASCENDING)])
        await self.failures.create_index([("crawl_id", ASCENDING), ("url", ASCENDING)], unique=True)
        # The API collector's results (`jobs/collect.py`): upserted by URL, read per crawl.
        await self.db["objects"].create_index([("url", ASCENDING)], unique=True)
        await self.db["objects"].create_index([("crawl_id", ASCENDING)])

    async def save_page(self, page: Document) -> None:
        """Upsert the page's document by URL (batched with other jobs' writes)."""
        await self.save_document("pages", {"url": page["url"]}, page)

    async def save_document(self, collection: str, key: Mapping[str, Any], document: Document) -> None:
        """Upsert `document` into `collection` by `key`, batched with other jobs' writes to it."""
        writer = self._writers.get(collection)
        if writer is None:
            writer = self._writers[collection] = BatchWriter(self.db[collection], self._batch_size, self._batch_delay)
        await writer.upsert(key, {"$set": document})

    async def record_failure(self, failure: Document) -> None:
        await self.failures.update_one(
            {"crawl_id": failure["crawl_id"], "url": failure["url"]}, {"$set": failure}, upsert=True
        )

    async def create_crawl(self, record: Document) -> None:
        await self.crawls.insert_one(record)

    async def get_crawl(self, crawl_id: str) -> Document | None:
        return await self.crawls.find_one({"_id": crawl_id})

    async def latest_crawl(self) -> Document | None:
        return await self.crawls.find_one({}, sort=[("created_at", -1)])

    async def finish_crawl(self, crawl_id: str, counters: Mapping[str, Any]) -> bool:
        """Mark a running crawl done; True only for the one call that made the change."""
        result = await self.crawls.update_one(
            {"_id": crawl_id, "state": "running"},
            {"$set": {"state": "done", "finished_at": utcnow(), "counters": dict(counters)}},
        )
        return result.modified_count == 1

    async def drain(self) -> None:
        for writer in self._writers.values():
            await writer.drain()
