"""One page through the stages: download, parse, crunch, store.

The jobs decide what to do with a page (walk it as a list, store it as a child); this module is
the one place where a response becomes a stored document and a blob.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pipeline.crawls import CrawlOptions
from pipeline.crunch import fingerprint
from pipeline.fetch import Response
from pipeline.frontier import Discovery
from pipeline.outcome import TRANSIENT, PermanentFailure
from pipeline.parse import ParsedPage, decode_html, parse_html
from pipeline.resources import Resources
from pipeline.settings import Settings
from pipeline.storage import Document, utcnow
from pipeline.urls import url_host

T = TypeVar("T")


async def _fetch_ok(
    res: Resources, url: str, *, priority: bool = False, validators: dict[str, str] | None = None
) -> Response:
    """A 2xx response, or 304 to a conditional GET; any other status is a permanent failure."""
    headers = conditional_headers(validators) if validators else None
    response = await res.fetcher.get(url, headers, priority=priority)
    if validators and response.status == 304:
        return response
    if not 200 <= response.status < 300:
        raise PermanentFailure(f"HTTP {response.status}", response.status)
    return response


def _parse(response: Response, options: CrawlOptions, *, with_next: bool) -> ParsedPage | None:
    if not response.is_html:
        return None
    html = decode_html(response.body, response.charset)
    return parse_html(
        html, link_selector=options.link_selector, next_selector=options.next_selector if with_next else None
    )


async def fetch_html(res: Resources, url: str, options: CrawlOptions) -> tuple[Response, ParsedPage | None]:
    """Fetch and parse a list page (nothing stored); it goes ahead of queued child pages."""
    response = await _fetch_ok(res, url, priority=True)
    return response, _parse(response, options, with_next=True)


class Unchanged(Exception):
    """The server answered 304 Not Modified to a conditional GET: nothing to store again."""


def conditional_headers(validators: dict[str, str]) -> dict[str, str]:
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = validators["etag"]
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = validators["last_modified"]
    return headers


async def with_validators(res: Resources, items: list[Discovery]) -> list[Discovery]:
    """Child URLs with the ETag / Last-Modified stored for them, for conditional GETs (one query)."""
    urls = [item.url for item in items if item.kind == "page"]
    if not urls:
        return items
    known = {
        doc["url"]: {k: doc[k] for k in ("etag", "last_modified") if doc.get(k)}
        async for doc in res.store.pages.find({"url": {"$in": urls}}, {"url": 1, "etag": 1, "last_modified": 1})
    }
    return [
        dataclasses.replace(item, extra=known[item.url]) if item.kind == "page" and known.get(item.url) else item
        for item in items
    ]


async def fetch_and_store(
    res: Resources, crawl_id: str, url: str, depth: int, attempt: int, validators: dict[str, str] | None = None
) -> ParsedPage | None:
    """Fetch a child page and store it; returns the parsed page (None if it was not HTML).

    With validators, the GET is conditional; a 304 records the page as seen by this crawl
    (crawl id, time) without storing anything again, and raises `Unchanged`.
    """
    options = await res.crawl_options(crawl_id)
    started = asyncio.get_running_loop().time()
    response = await _fetch_ok(res, url, validators=validators)
    if response.status == 304:
        seen = {"url": url, "crawl_id": crawl_id, "checked_at": utcnow(), "unchanged": True, "depth": depth}
        await ride_out(lambda: res.store.save_document("pages", {"url": url}, seen), res.settings)
        raise Unchanged(url)
    parsed = _parse(response, options, with_next=False)
    sha256 = hashlib.sha256(response.body).hexdigest()
    put = ride_out(lambda: res.blobs.put(sha256, response.body, response.content_type), res.settings)
    if parsed is not None and parsed.text:
        # The blob upload and the CPU stage overlap: neither waits for the other.
        blob_key, crunched = await asyncio.gather(put, res.compute(fingerprint, parsed.text))
    else:
        blob_key, crunched = await put, {}
    document = page_document(crawl_id, depth, attempt, response, sha256, blob_key, res.blobs.location, parsed, crunched)
    document["timings"]["total_ms"] = round((asyncio.get_running_loop().time() - started) * 1000, 2)
    await ride_out(lambda: res.store.save_page(document), res.settings)
    return parsed


async def ride_out(write: Callable[[], Awaitable[T]], settings: Settings) -> T:
    """Retry a write to our own storage in place for `storage.retry_window` seconds.

    A page already downloaded is not fetched again just because MongoDB or S3 blinked: the
    write is retried here, with backoff, before the job gives up and is retried as a whole.
    """
    deadline = time.monotonic() + settings.storage.retry_window
    delay = 0.1
    while True:
        try:
            return await write()
        except TRANSIENT:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)


def page_document(
    crawl_id: str,
    depth: int,
    attempt: int,
    response: Response,
    sha256: str,
    blob_key: str,
    blob_store: str,
    parsed: ParsedPage | None,
    crunched: dict[str, Any],
) -> Document:
    """The `pages` document: one per URL, overwritten by the latest crawl that stored it."""
    document: Document = {
        "url": response.url,
        "host": url_host(response.url),
        "crawl_id": crawl_id,
        "depth": depth,
        "status": response.status,
        "final_url": response.final_url,
        "redirects": response.redirects,
        "content_type": response.content_type,
        "charset": response.charset,
        "length": len(response.body),
        "truncated": response.truncated,
        "sha256": sha256,
        "blob_key": blob_key,
        "blob_store": blob_store,
        "etag": response.headers.get("etag"),
        "last_modified": response.headers.get("last-modified"),
        "fetched_at": utcnow(),
        "attempts": attempt,
        "timings": {"fetch_ms": round(response.elapsed_ms, 2)},
        "parsed": parsed is not None,
        "unchanged": False,
    }
    if parsed is not None:
        document.update(
            title=parsed.title,
            description=parsed.description,
            canonical=parsed.canonical,
            language=parsed.language,
            link_count=parsed.link_count,
            word_count=crunched.get("word_count"),
            simhash=crunched.get("simhash"),
            top_words=crunched.get("top_words", []),
        )
    return document
