"""The documents a crawl stores: what a fetched, parsed and crunched page becomes in `pages`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pipeline.crunch.registry import FINGERPRINT, NO_CRUNCH
from pipeline.download.response import Response
from pipeline.errors import PermanentFailure
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
    crunch: str,
    crunched: Any,
) -> Document:
    """The `pages` document: one per URL, overwritten by the latest crawl that stored it.

    What the CPU stage adds depends on the crawl's `crunch`: the fingerprint's fields, nothing,
    or a user function's result under `crunch`. The crawl's declared fields go under `fields`
    (when it declares any), and the response headers under `headers` (see `kept_headers`), so a
    replay of the stored body (`pipeline reprocess`) knows what the response said.
    """
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
        "etag": response.header("etag"),
        "last_modified": response.header("last-modified"),
        "headers": response.headers,
        "fetched_at": utcnow(),
        "attempts": attempt,
        "timings": {"fetch_ms": round(response.elapsed_ms, 2)},
        "parsed": parsed is not None,
        "unchanged": False,
    }
    if response.headers_dropped:
        document["headers_dropped"] = list(response.headers_dropped)
    if parsed is not None:
        document.update(parsed.metadata())
        if parsed.fields:
            document["fields"] = parsed.fields
        document.update(crunch_fields(crunch, crunched))
    return document


def reprocessed_document(
    reprocess_id: str, reparsed: Mapping[str, Any] | None, crunch: str, has_fields: bool
) -> Document:
    """What a replay of a stored body changes in its page document (see `pipeline.crunch.reprocess`).

    `reparsed` is None for a body that is not HTML: only the replay itself is recorded. The
    fields are replaced whole, so a field the replay no longer declares goes with the old ones.
    """
    document: Document = {"reprocessed_at": utcnow(), "reprocess_id": reprocess_id}
    if reparsed is None:
        return document
    document.update(reparsed["metadata"])
    document["parsed"] = True
    if has_fields:
        document["fields"] = reparsed["fields"]
    document.update(crunch_fields(crunch, reparsed["crunched"]))
    return document


def crunch_fields(crunch: str, crunched: Any) -> Document:
    """The fields the CPU stage adds to an HTML page's document."""
    if crunch == NO_CRUNCH:
        return {}
    if crunch == FINGERPRINT:
        found = crunched if isinstance(crunched, dict) else {}
        return {
            "word_count": found.get("word_count"),
            "simhash": found.get("simhash"),
            "top_words": found.get("top_words", []),
        }
    check_storable(crunched, crunch)
    return {"crunch": crunched}


_SCALARS = (str, bool, float, bytes, dt.datetime, type(None))
_INT64 = 2**63


def check_storable(value: Any, source: str, depth: int = 0) -> None:
    """Raise `PermanentFailure` unless MongoDB can store `value` (what a user's function returned).

    Checked here, before the group commit: one page's unstorable value would otherwise fail the
    bulk write of every page batched with it.
    """
    if depth > 50:
        raise PermanentFailure(f"{source} returned a value nested too deeply to store")
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise PermanentFailure(f"{source} returned an integer MongoDB cannot store: {value}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_storable(item, source, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("$") or "\0" in key:
                raise PermanentFailure(f"{source} returned a key MongoDB cannot store: {key!r:.80}")
            check_storable(item, source, depth + 1)
        return
    raise PermanentFailure(f"{source} returned a {type(value).__name__}, which MongoDB cannot store")
