"""Page metadata, failures and crawl records in MongoDB.

Page documents go through the group commit (`pipeline.store.group_commit`), which keeps the
versions they replace (`pipeline.store.history`); failures and crawl records are rare enough to
be written one by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from pipeline.errors import CrawlNotFound
from pipeline.store.group_commit import BatchWriter, Document
from pipeline.store.history import PageHistory

__all__ = ["Document", "MongoStore", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MongoStore:
    """Collections `pages` (with `page_versions`), `failures` and `crawls` of the configured database."""

    def __init__(self, client: AsyncMongoClient[Document], db_name: str, batch_size: int, batch_delay: float) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[db_name]
        self.pages = self.db["pages"]
        self.failures = self.db["failures"]
        self.crawls = self.db["crawls"]
        self.history = PageHistory(self.db)
        self._batch_size, self._batch_delay = batch_size, batch_delay
        self._writers: dict[str, BatchWriter] = {
            "pages": BatchWriter(self.pages, batch_size, batch_delay, before_write=self.history.keep_replaced)
        }

    async def ensure_indexes(self) -> None:
        await self.pages.create_index([("url", ASCENDING)], unique=True)
        # A crawl's pages, in URL order: what a replay (`pipeline reprocess`) pages through.
        await self.pages.create_index([("crawl_id", ASCENDING), ("url", ASCENDING)])
        await self.history.ensure_indexes()
        await self.failures.create_index([("crawl_id", ASCENDING), ("url", ASCENDING)], unique=True)
        # The API collector's results (`jobs/collect.py`): upserted by URL, read per crawl.
        await self.db["objects"].create_index([("url", ASCENDING)], unique=True)
        await self.db["objects"].create_index([("crawl_id", ASCENDING)])

    async def save_page(self, page: Document) -> None:
        """Upsert the page's document by URL (batched with other jobs' writes); the version it
        replaces, if its content changed, goes to `page_versions`."""
        await self.save_document("pages", {"url": page["url"]}, page)

    async def save_document(
        self, collection: str, key: Mapping[str, Any], document: Document, *, upsert: bool = True
    ) -> None:
        """Upsert `document` into `collection` by `key`, batched with other jobs' writes to it.

        With `upsert` false only a document `key` finds is updated: nothing is created.
        """
        writer = self._writers.get(collection)
        if writer is None:
            writer = self._writers[collection] = BatchWriter(self.db[collection], self._batch_size, self._batch_delay)
        await writer.upsert(key, {"$set": document}, upsert=upsert)

    async def record_failure(self, failure: Document) -> None:
        # Replaced whole: a mark left by a retry of the crawl (`pipeline.crawl.control`) goes with it.
        await self.failures.replace_one({"crawl_id": failure["crawl_id"], "url": failure["url"]}, failure, upsert=True)

    async def create_crawl(self, record: Document) -> None:
        await self.crawls.insert_one(record)

    async def get_crawl(self, crawl_id: str) -> Document | None:
        return await self.crawls.find_one({"_id": crawl_id})

    async def stored_by(self, crawl_id: str) -> tuple[str, Document]:
        """The id and record of the crawl whose pages `crawl_id` names: the crawl itself, or the
        one a replay (`pipeline reprocess`) replays, since a replay updates that crawl's pages in
        place. Raises `CrawlNotFound` for an unknown id or a replay whose source is gone."""
        record = await self.get_crawl(crawl_id)
        if record is None:
            raise CrawlNotFound(f"no crawl with id {crawl_id!r}")
        source = str(record.get("source_crawl") or crawl_id)
        if source != crawl_id:
            record = await self.get_crawl(source)
            if record is None:
                raise CrawlNotFound(f"crawl {crawl_id} replays crawl {source!r}, which no longer exists")
        return source, record

    async def latest_crawl(self) -> Document | None:
        return await self.crawls.find_one({}, sort=[("created_at", -1)])

    async def finish_crawl(
        self, crawl_id: str, current: str, state: str, counters: Mapping[str, Any], error: str | None = None
    ) -> bool:
        """Move a crawl from state `current` to finished `state`; True only for the one call that made the change."""
        result = await self.crawls.update_one(
            {"_id": crawl_id, "state": current},
            {"$set": {"state": state, "finished_at": utcnow(), "counters": dict(counters), "error": error}},
        )
        return result.modified_count == 1

    async def set_crawl_state(self, crawl_id: str, states: tuple[str, ...], state: str, **fields: Any) -> bool:
        """Move a crawl from any of `states` to `state` (with `fields` set); True if it moved."""
        result = await self.crawls.update_one(
            {"_id": crawl_id, "state": {"$in": list(states)}}, {"$set": {"state": state, **fields}}
        )
        return result.modified_count == 1

    async def validators(self, urls: list[str]) -> dict[str, dict[str, str]]:
        """The ETag / Last-Modified stored for each of `urls` that has any (one query)."""
        known: dict[str, dict[str, str]] = {}
        async for doc in self.pages.find({"url": {"$in": urls}}, {"url": 1, "etag": 1, "last_modified": 1}):
            found = {k: doc[k] for k in ("etag", "last_modified") if doc.get(k)}
            if found:
                known[doc["url"]] = found
        return known

    async def drain(self) -> None:
        for writer in self._writers.values():
            await writer.drain()
