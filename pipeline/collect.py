"""The paginated API collector's machinery: JSON calls, the listing format, the crunch, the document.

The jobs (`jobs/collect.py`) walk a paginated JSON API: each list page fans out one job per
object, and each object job makes two calls (the object and its details), crunches them in the
process pool and saves one document. This module holds what those jobs are made of.

CPU-pool processes import this module to run `crunch_object`, and must not load the I/O stack
(aiohttp, PyMongo, arq...) to do it: at the top level it imports only the standard library and
`pipeline.crunch`; the few functions that raise or recognise the pipeline's outcome exceptions
import them when called, which only ever happens in the worker's own process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import statistics
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from pipeline.crunch import fingerprint

if TYPE_CHECKING:
    from pipeline.fetch import Fetcher
    from pipeline.outcome import PermanentFailure

JsonObject = dict[str, Any]
ACCEPT_JSON = {"Accept": "application/json"}
# Two reviews sharing at least this share of their word pairs (Jaccard) are one text posted
# twice, give or take an edit; unrelated reviews on the same subject share a few percent.
COPY_SIMILARITY = 0.8
# The score is a Bayesian average: few ratings pull it towards the prior, so one five-star
# review does not outrank a hundred four-star ones.
PRIOR_RATING = 3.0
PRIOR_WEIGHT = 5
_STRIP = string.punctuation + "\u201c\u201d\u2018\u2019\u2026\u2013\u2014"


# --- fetching ---------------------------------------------------------------------------------


class Payload(NamedTuple):
    """A decoded JSON object and how long its call took."""

    data: JsonObject
    elapsed_ms: float


def _permanent(reason: str, status: int | None = None) -> PermanentFailure:
    # Imported on call: see the module docstring.
    from pipeline.outcome import PermanentFailure

    return PermanentFailure(reason, status)


def _is_permanent(fault: BaseException) -> bool:
    # Imported on call, like `_permanent`'s.
    from pipeline.fetch import FetchError
    from pipeline.outcome import PermanentFailure

    return isinstance(fault, PermanentFailure) or (isinstance(fault, FetchError) and not fault.retryable)


def decode_object(body: bytes, content_type: str, status: int | None = None) -> JsonObject:
    """The JSON object in `body`; anything else is a `PermanentFailure` saying what came instead.

    A body that is not JSON will not become JSON on a retry: the URL fails at once, with a
    reason that names the content type (an HTML error page behind a 200 is the usual culprit).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _permanent(f"invalid JSON ({content_type or 'no content type'}): {exc}", status) from None
    if not isinstance(data, dict):
        raise _permanent(f"expected a JSON object, got a JSON {type(data).__name__}", status)
    return data


async def fetch_json(fetcher: Fetcher, url: str, *, priority: bool = False) -> Payload:
    """GET `url` and decode the JSON object it answers with.

    Faults are classified as the web pipeline's are: the fetcher raises `FetchError` (retryable
    for connection errors, timeouts, 429 and 5xx); any other non-2xx status, a body cut at the
    size cap and a body that is not a JSON object raise `PermanentFailure`.
    """
    response = await fetcher.get(url, headers=ACCEPT_JSON, priority=priority)
    if not 200 <= response.status < 300:
        raise _permanent(f"HTTP {response.status}", response.status)
    if response.truncated:
        raise _permanent("JSON body cut at fetch.max_body_bytes", response.status)
    return Payload(decode_object(response.body, response.content_type, response.status), response.elapsed_ms)


def details_url(object_url: str) -> str:
    """The details endpoint of an object: `<object path>/details`, query string kept."""
    parts = urlsplit(object_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/details"))


async def fetch_object(fetcher: Fetcher, url: str) -> tuple[Payload, Payload]:
    """The object at `url` and its details, both requested at once.

    Both calls run to their end whatever the other does (no request cancelled half-way, no
    orphaned task), then the worst fault wins: a permanent one fails the object now, since
    retrying the other call cannot save it; otherwise the first retryable one retries it.
    """
    results = await asyncio.gather(
        fetch_json(fetcher, url), fetch_json(fetcher, details_url(url)), return_exceptions=True
    )
    obj, details = results
    if isinstance(obj, BaseException) or isinstance(details, BaseException):
        raise _worst([r for r in results if isinstance(r, BaseException)])
    return obj, details


def _worst(faults: list[BaseException]) -> BaseException:
    for fault in faults:
        if not isinstance(fault, Exception):  # cancellation and the like always propagate
            return fault
    return next((f for f in faults if _is_permanent(f)), faults[0])


# --- the listing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What a list page links to, as given (the jobs resolve and scope-check the URLs)."""

    item_urls: list[str]
    next_url: str | None
    invalid: int  # entries without a usable "url"


def parse_listing(data: Mapping[str, Any]) -> Listing:
    """`{"items": [{"url": ...}, ...], "next": url or null}`; a page of another shape fails."""
    items = data.get("items")
    if not isinstance(items, list):
        raise _permanent("list page has no 'items' array")
    following = data.get("next")
    if following is not None and not isinstance(following, str):
        raise _permanent(f"list page 'next' must be a URL or null, got {type(following).__name__}")
    urls = [i["url"] for i in items if isinstance(i, dict) and isinstance(i.get("url"), str) and i["url"]]
    return Listing(urls, following or None, len(items) - len(urls))


# --- the CPU stage ----------------------------------------------------------------------------


def crunch_object(obj: JsonObject, details: JsonObject) -> JsonObject:
    """Everything derived from one object's two payloads; runs in a pool process.

    Simhash and top words of the description and of the reviews; review spam found by comparing
    every review's word pairs with every other's; rating statistics and a score over the reviews
    that are not copies; total stock. A few milliseconds of pure Python per object, which on the
    event loop would stall every other job of the worker. Malformed fields of a foreign API are
    skipped and counted, never fatal. `pid` records which process did the work.
    """
    reviews, invalid = _reviews(details.get("reviews"))
    copies = _copies([_shingles(text) for _, text in reviews])
    kept = [review for index, review in enumerate(reviews) if index not in copies]
    ratings = [rating for rating, _ in kept]
    description = obj.get("description")
    return {
        "description": fingerprint(description if isinstance(description, str) else ""),
        "review_words": fingerprint(" ".join(text for _, text in kept))["top_words"],
        "reviews": len(reviews),
        "copied_reviews": len(copies),
        "invalid_reviews": invalid,
        "rating": rating_stats(ratings),
        "score": score(ratings),
        "stock": _stock(details.get("stock")),
        "pid": os.getpid(),
    }


def _reviews(raw: Any) -> tuple[list[tuple[float, str]], int]:
    """Well-formed reviews as (rating 1-5, text), and how many were not."""
    if not isinstance(raw, list):
        return [], 0
    reviews: list[tuple[float, str]] = []
    for review in raw:
        rating = review.get("rating") if isinstance(review, dict) else None
        text = review.get("text") if isinstance(review, dict) else None
        if isinstance(rating, int | float) and not isinstance(rating, bool) and 1 <= rating <= 5:
            reviews.append((float(rating), text if isinstance(text, str) else ""))
    return reviews, len(raw) - len(reviews)


def _shingles(text: str) -> frozenset[str]:
    """The text's word pairs (its words, if it has fewer than two): word order counts."""
    words = [w for w in (t.strip(_STRIP) for t in text.lower().split()) if w]
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity; empty texts (rating-only reviews) resemble nothing."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _copies(shingles: list[frozenset[str]]) -> set[int]:
    """Indices of reviews that repeat an earlier one (the first of each text is kept)."""
    return {
        index
        for index, current in enumerate(shingles)
        if any(similarity(current, shingles[earlier]) >= COPY_SIMILARITY for earlier in range(index))
    }


def rating_stats(ratings: list[float]) -> JsonObject:
    """Count, mean, standard deviation and histogram (keys "1" to "5": MongoDB keys are strings)."""
    histogram = Counter(str(round(r)) for r in ratings)
    return {
        "count": len(ratings),
        "mean": round(statistics.fmean(ratings), 3) if ratings else None,
        "stdev": round(statistics.pstdev(ratings), 3) if ratings else None,
        "histogram": {str(star): histogram[str(star)] for star in range(1, 6)},
    }


def score(ratings: list[float]) -> float:
    """The ratings' Bayesian average (see `PRIOR_RATING`): 3.0 with no ratings at all."""
    return round((PRIOR_RATING * PRIOR_WEIGHT + sum(ratings)) / (PRIOR_WEIGHT + len(ratings)), 3)


def _stock(raw: Any) -> int:
    if not isinstance(raw, dict):
        return 0
    return sum(v for v in raw.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0)


# --- the document -----------------------------------------------------------------------------


def object_document(
    crawl_id: str,
    url: str,
    attempt: int,
    obj: Payload,
    details: Payload,
    crunched: JsonObject,
    timings: Mapping[str, float],
) -> JsonObject:
    """The `objects` document: one per object URL, overwritten by the latest run that stored it.

    Both payloads are kept whole (a collector should not decide which of a source's fields
    matter), with the fields worth querying lifted to the top.
    """
    return {
        "url": url,
        "crawl_id": crawl_id,
        "object_id": obj.data.get("id"),
        "name": obj.data.get("name"),
        "category": obj.data.get("category"),
        "price": obj.data.get("price"),
        "object": obj.data,
        "details": details.data,
        "crunch": crunched,
        "fetched_at": dt.datetime.now(dt.UTC),
        "attempts": attempt,
        "timings": {
            "object_ms": round(obj.elapsed_ms, 2),
            "details_ms": round(details.elapsed_ms, 2),
            **{name: round(value, 2) for name, value in timings.items()},
        },
    }
