"""Backpressure: URLs a crawl discovers beyond its queue bound wait in MongoDB, not in Redis.

A periodic poll that discovers faster than workers drain would otherwise pile up a backlog of
jobs in Redis (Celery's 200k-task queue). Here a crawl keeps at most `max_queued` jobs in Redis;
the frontier parks the rest, this module writes them to the `backlog` collection, and they move
back into the queue, oldest first, as workers finish jobs (and from a periodic sweep, so a
refill missed by a crashed worker still happens).
"""

from __future__ import annotations

import asyncio
import logging
import time

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError
from redis.exceptions import RedisError

from pipeline.crawl.options import CrawlOptions
from pipeline.schedule.discover import Found, add_validators
from pipeline.schedule.frontier import Discovery, Frontier, RegisterResult, job_id
from pipeline.store.mongo import Document, MongoStore

log = logging.getLogger("pipeline.backlog")

BACKLOGGED_SET = "pipeline:backlogged"
DUPLICATE_KEY = 11000  # MongoDB's code for an insert whose _id exists
REFILL_LOCK_S = 10.0
SWEEP_INTERVAL_S = 2.0


class Backlog:
    """The `backlog` collection and the moves between it and the queue."""

    def __init__(self, store: MongoStore, frontier: Frontier) -> None:
        self._store = store
        self._collection: AsyncCollection[Document] = store.db["backlog"]
        self._frontier = frontier

    async def ensure_indexes(self) -> None:
        await self._collection.create_index([("crawl_id", ASCENDING), ("seq", ASCENDING)])

    async def schedule(self, crawl_id: str, options: CrawlOptions, found: Found) -> RegisterResult:
        """Queue what `found` holds that is new; park what does not fit in the queue.

        A conditional crawl's child pages carry the validators stored for them, so their GETs
        can come back 304.
        """
        if options.conditional:
            found.items = await add_validators(self._store, found.items)
        result = await self._frontier.register(
            crawl_id,
            found.items,
            max_pages=options.max_pages,
            max_queued=options.max_queued,
            skipped_invalid=found.skipped_invalid,
            skipped_scope=found.skipped_scope,
        )
        if result.parked:
            await self.park(crawl_id, result.parked)
        return result

    async def park(self, crawl_id: str, items: list[Discovery]) -> None:
        """Write parked URLs to the backlog; those a re-run of the job parked before stay as they are.

        Inserted, not upserted: one insert of many documents is one commit (and, with journaled
        writes, one journal flush) where upserts are a statement each.
        """
        seq = time.time_ns()
        documents = [
            {
                "_id": job_id(crawl_id, item.kind, item.url),
                "crawl_id": crawl_id,
                "url": item.url,
                "kind": item.kind,
                "depth": item.depth,
                "function": item.function,
                "extra": item.extra,
                "seq": seq + index,
            }
            for index, item in enumerate(items)
        ]
        try:
            await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
        await self._frontier.redis.sadd(BACKLOGGED_SET, crawl_id)  # type: ignore[misc]

    async def refill(self, crawl_id: str, room: int, max_queued: int) -> int:
        """Move up to `room` parked URLs back into the queue, oldest first; one worker at a time."""
        if room <= 0 or not await self._frontier.try_lock(f"refill:{crawl_id}", REFILL_LOCK_S):
            return 0
        try:
            documents = await self._collection.find({"crawl_id": crawl_id}).sort("seq", ASCENDING).limit(room).to_list()
            if not documents:
                await self._frontier.redis.srem(BACKLOGGED_SET, crawl_id)  # type: ignore[misc]
                return 0
            items = [
                Discovery(d["url"], d["kind"], int(d["depth"]), d.get("function", ""), d.get("extra"))
                for d in documents
            ]
            moved, examined = await self._frontier.promote(crawl_id, items, max_queued=max_queued)
            # Deleted after promotion: a crash in between leaves documents whose URLs are already
            # queued, which the next refill skips and deletes. Documents the bound kept out stay.
            await self._collection.delete_many({"_id": {"$in": [d["_id"] for d in documents[:examined]]}})
            return moved
        finally:
            await self._frontier.unlock(f"refill:{crawl_id}")

    async def forget(self, crawl_id: str) -> int:
        """Drop the crawl's parked URLs (it was cancelled); returns how many there were."""
        result = await self._collection.delete_many({"crawl_id": crawl_id})
        await self._frontier.redis.srem(BACKLOGGED_SET, crawl_id)  # type: ignore[misc]
        return int(result.deleted_count)

    async def sweep(self) -> int:
        """Refill every backlogged crawl whose queue is down to half its bound; returns URLs moved."""
        moved = 0
        members: set[bytes] = await self._frontier.redis.smembers(BACKLOGGED_SET)  # type: ignore[misc]
        for raw in members:
            crawl_id = raw.decode()
            counters = await self._frontier.counters(crawl_id)
            if not counters:
                await self._frontier.redis.srem(BACKLOGGED_SET, crawl_id)  # type: ignore[misc]
                continue
            queued, waiting, limit = (
                counters.get("queued", 0),
                counters.get("waiting", 0),
                counters.get("max_queued", 0),
            )
            if waiting > 0 and queued <= limit // 2:
                moved += await self.refill(crawl_id, limit - queued, limit)
        return moved


async def sweep_forever(backlog: Backlog, interval: float = SWEEP_INTERVAL_S) -> None:
    """The worker's safety net for refills that no finishing job triggered."""
    while True:
        await asyncio.sleep(interval)
        try:
            await backlog.sweep()
        except (PyMongoError, RedisError) as exc:
            log.warning("backlog sweep failed, will try again: %s", exc)
