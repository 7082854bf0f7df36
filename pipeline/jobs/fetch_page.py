"""`fetch_page`: fetch one child page, store it, and queue its links while depth allows."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from pipeline.crunch.registry import NO_CRUNCH
from pipeline.download.response import Response
from pipeline.errors import CpuFunctionError, CpuPoolBroken, CpuTimeout, PermanentFailure
from pipeline.parse.html import ParsedPage, parse_response
from pipeline.schedule.discover import discover
from pipeline.settle.outcome import Attempt, check_payload, check_validators, finish
from pipeline.settle.retries import ride_out, settle
from pipeline.store.documents import page_document
from pipeline.store.mongo import utcnow
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources


async def fetch_page(
    ctx: WorkerContext, crawl_id: str, url: str, depth: int, validators: dict[str, str] | None = None
) -> None:
    """Fetch `url`, save its metadata to MongoDB and its body to the blob store.

    Links on the page are followed only while `depth < max_depth` (the default depth 1 stops
    at the children of the list pages). `validators` (ETag, Last-Modified from an earlier
    crawl) make the GET conditional: an unchanged page is counted, not stored again.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth)
    known = check_validators(validators)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        started = asyncio.get_running_loop().time()
        fetcher = await res.crawl_fetcher(crawl_id)
        response = await fetcher.get_ok(url, validators=known, robots=options.obeys_robots)
        if response.status == 304:
            # Seen by this crawl, nothing stored again.
            seen = {"url": url, "crawl_id": crawl_id, "checked_at": utcnow(), "unchanged": True, "depth": depth}
            await ride_out(lambda: res.store.save_document("pages", {"url": url}, seen), res.settings)
            await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt, unchanged=True)
            return
        # Without a CPU stage the page's text is never used: it is not extracted either.
        parsed = parse_response(
            response,
            link_selector=options.link_selector,
            text=options.crunch != NO_CRUNCH,
            fields=await res.crawl_fields(crawl_id),
        )
        await store_page(res, crawl_id, depth, attempt.number, response, parsed, started, options.crunch)
        if parsed is not None and depth < options.max_depth:
            scope = await res.crawl_scope(crawl_id)
            found = discover(url, parsed, options, scope, depth=depth + 1, include_next=False, links=res.links)
            await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "page", url, work, depth=depth)


async def store_page(
    res: Resources,
    crawl_id: str,
    depth: int,
    attempt: int,
    response: Response,
    parsed: ParsedPage | None,
    started: float,
    crunch: str,
) -> None:
    """The body to the blob store and the crunched page to `pages`, each write ridden out."""
    sha256 = hashlib.sha256(response.body).hexdigest()
    put = ride_out(lambda: res.blobs.put(sha256, response.body, response.content_type), res.settings)
    if parsed is not None and parsed.text and crunch != NO_CRUNCH:
        # The blob upload and the CPU stage overlap: neither waits for the other.
        blob_key, crunched = await asyncio.gather(put, crunch_text(res, crunch, parsed.text))
    else:
        blob_key, crunched = await put, None
    document = page_document(
        crawl_id, depth, attempt, response, sha256, blob_key, res.blobs.location, parsed, crunch, crunched
    )
    document["timings"]["total_ms"] = round((asyncio.get_running_loop().time() - started) * 1000, 2)
    await ride_out(lambda: res.store.save_page(document), res.settings)
    res.metrics.bytes_stored(len(response.body))


async def crunch_text(res: Resources, crunch: str, text: str) -> Any:
    """The crawl's CPU stage on the page's text, in the pool (or on a CPU worker).

    A function the worker does not run, or one that raises, fails the page with the reason: it
    would fail the same way on every attempt. A pool that broke or timed out is retried.
    """
    try:
        function = res.crunch_function(crunch)
    except LookupError as exc:
        raise PermanentFailure(str(exc)) from None
    if function is None:
        return None
    try:
        return await res.compute(function, text)
    except (CpuTimeout, CpuPoolBroken):
        raise
    except CpuFunctionError as exc:
        raise PermanentFailure(f"crunch {crunch} raised {exc}"[:1000]) from exc
    except Exception as exc:  # a user's function can raise anything
        raise PermanentFailure(f"crunch {crunch} raised {type(exc).__name__}: {exc}"[:1000]) from exc
