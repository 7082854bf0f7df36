"""The documents a crawl stores: what a fetched, parsed and crunched page becomes in `pages`."""

from __future__ import annotations

from typing import Any

from pipeline.download.response import Response
from pipeline.parse.html import ParsedPage
from pipeline.store.mongo import Document, utcnow
from pipeline.urls import url_host


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
