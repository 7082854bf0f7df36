"""JSON over HTTP for the paginated API collector: one call, an object and its details, a listing.

Faults are classified as the web pipeline's are: the fetcher raises `FetchError` (retryable for
connection errors, timeouts, 429 and 5xx); any other non-2xx status, a body cut at the size cap
and a body that is not a JSON object raise `PermanentFailure`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from pipeline.download.fetcher import Fetcher
from pipeline.errors import FetchError, PermanentFailure

JsonObject = dict[str, Any]
ACCEPT_JSON = {"Accept": "application/json"}


class Payload(NamedTuple):
    """A decoded JSON object and how long its call took."""

    data: JsonObject
    elapsed_ms: float


def _is_permanent(fault: BaseException) -> bool:
    return isinstance(fault, PermanentFailure) or (isinstance(fault, FetchError) and not fault.retryable)


def decode_object(body: bytes, content_type: str, status: int | None = None) -> JsonObject:
    """The JSON object in `body`; anything else is a `PermanentFailure` saying what came instead.

    A body that is not JSON will not become JSON on a retry: the URL fails at once, with a
    reason that names the content type (an HTML error page behind a 200 is the usual culprit).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PermanentFailure(f"invalid JSON ({content_type or 'no content type'}): {exc}", status) from None
    if not isinstance(data, dict):
        raise PermanentFailure(f"expected a JSON object, got a JSON {type(data).__name__}", status)
    return data


async def fetch_json(fetcher: Fetcher, url: str, *, priority: bool = False, robots: bool = True) -> Payload:
    """GET `url` and decode the JSON object it answers with (see the module docstring for faults)."""
    response = await fetcher.get(url, headers=ACCEPT_JSON, priority=priority, robots=robots)
    if not 200 <= response.status < 300:
        raise PermanentFailure(f"HTTP {response.status}", response.status)
    if response.truncated:
        raise PermanentFailure("JSON body cut at fetch.max_body_bytes", response.status)
    return Payload(decode_object(response.body, response.content_type, response.status), response.elapsed_ms)


def details_url(object_url: str) -> str:
    """The details endpoint of an object: `<object path>/details`, query string kept."""
    parts = urlsplit(object_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/details"))


async def fetch_object(fetcher: Fetcher, url: str, *, robots: bool = True) -> tuple[Payload, Payload]:
    """The object at `url` and its details, both requested at once.

    Both calls run to their end whatever the other does (no request cancelled half-way, no
    orphaned task), then the worst fault wins: a permanent one fails the object now, since
    retrying the other call cannot save it; otherwise the first retryable one retries it.
    """
    results = await asyncio.gather(
        fetch_json(fetcher, url, robots=robots),
        fetch_json(fetcher, details_url(url), robots=robots),
        return_exceptions=True,
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
        raise PermanentFailure("list page has no 'items' array")
    following = data.get("next")
    if following is not None and not isinstance(following, str):
        raise PermanentFailure(f"list page 'next' must be a URL or null, got {type(following).__name__}")
    urls = [i["url"] for i in items if isinstance(i, dict) and isinstance(i.get("url"), str) and i["url"]]
    return Listing(urls, following or None, len(items) - len(urls))
