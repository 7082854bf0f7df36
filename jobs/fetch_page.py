"""`fetch_page`: fetch one child page, store it, and queue its links while depth allows."""

from __future__ import annotations

from typing import Any

from pipeline.discover import discover
from pipeline.outcome import Attempt, check_payload, check_validators, finish, settle
from pipeline.pages import Unchanged, fetch_and_store, with_validators
from pipeline.resources import Resources


async def fetch_page(
    ctx: dict[str, Any], crawl_id: str, url: str, depth: int, validators: dict[str, str] | None = None
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
        try:
            parsed = await fetch_and_store(res, crawl_id, url, depth, attempt.number, known)
        except Unchanged:
            await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt, unchanged=True)
            return
        if parsed is not None and depth < options.max_depth:
            found = discover(url, parsed, options, depth=depth + 1, include_next=False, links=res.links)
            if options.conditional:
                found.items = await with_validators(res, found.items)
            await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "page", url, work)
