"""Change history: the versions of a page that later crawls replaced, in `page_versions`.

`pages` holds one document per URL, the latest crawl's. When a page is stored again with other
content (another sha256), the version it replaces (url, sha256, blob_key, fetched_at, crawl_id)
is kept in `page_versions`, so a schedule that re-crawls a site builds each page's history.
Bodies are content-addressed, so an old version's blob key still names its body.

The versions of a group commit's batch are found with one query for the batch's URLs, not one
read per page, and written before the batch itself: if the batch's write fails and is retried,
the same versions are found again, and the unique index turns the second insert into a no-op.
A page whose content did not change (same sha256, or a 304 to a conditional request) gets no
version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from pipeline.errors import InvalidURL, PageNotFound
from pipeline.store.group_commit import Document
from pipeline.urls import normalise_url

PAGE_VERSIONS = "page_versions"
VERSION_FIELDS = ("url", "sha256", "blob_key", "fetched_at", "crawl_id")
_DUPLICATE_KEY = 11000


def superseded_versions(stored: Mapping[str, Mapping[str, Any]], batch: Iterable[Mapping[str, Any]]) -> list[Document]:
    """The versions that the page documents of `batch` replace, given what `stored` holds by URL.

    Pages are taken in the batch's order, so a URL stored twice in one batch with two contents
    keeps the first of them too. Documents without a sha256 (a 304's "seen" update) change no
    content and replace nothing.
    """
    latest: dict[str, Mapping[str, Any]] = dict(stored)
    versions: list[Document] = []
    for page in batch:
        sha256 = page.get("sha256")
        if not sha256:
            continue
        url = page["url"]
        before = latest.get(url)
        if before is not None and before.get("sha256") and before["sha256"] != sha256:
            versions.append({name: before.get(name) for name in VERSION_FIELDS})
        latest[url] = page
    return versions


class PageHistory:
    """`page_versions` of one database, next to its `pages`."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.pages = db["pages"]
        self.versions = db[PAGE_VERSIONS]

    async def ensure_indexes(self) -> None:
        # One entry per version: (url, fetched_at) is how versions are read, newest first, and
        # sha256 makes the key unique, so a retried batch cannot keep a version twice.
        await self.versions.create_index(
            [("url", ASCENDING), ("fetched_at", DESCENDING), ("sha256", ASCENDING)], unique=True
        )

    async def keep_replaced(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """Write the versions that `batch` (page documents about to be upserted) replaces.

        The group commit calls this before writing the batch; one query reads the stored
        sha256 of the batch's URLs.
        """
        urls = list({page["url"] for page in batch if page.get("sha256")})
        if not urls:
            return
        projection = {"_id": 0, **dict.fromkeys(VERSION_FIELDS, 1)}
        stored = {doc["url"]: doc async for doc in self.pages.find({"url": {"$in": urls}}, projection)}
        versions = superseded_versions(stored, batch)
        if not versions:
            return
        try:
            await self.versions.insert_many(versions, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise

    async def timeline(self, url: str) -> list[Document]:
        """Every version of the page at `url`, newest first: the stored one (`current` true),
        then those later crawls replaced. `PageNotFound` if no crawl stored it.

        `url` is looked up as given, then in its canonical form (the one crawls store).
        """
        projection = {"_id": 0, **dict.fromkeys(VERSION_FIELDS, 1)}
        current = await self.pages.find_one({"url": url}, projection)
        if current is None:
            try:
                canonical = normalise_url(url)
            except InvalidURL:
                canonical = url
            if canonical != url:
                url, current = canonical, await self.pages.find_one({"url": canonical}, projection)
        if current is None:
            raise PageNotFound(f"no crawl has stored {url}")
        found = self.versions.find({"url": url}, projection).sort([("fetched_at", DESCENDING)])
        older = [{**version, "current": False} async for version in found]
        return [{**{name: current.get(name) for name in VERSION_FIELDS}, "current": True}, *older]
