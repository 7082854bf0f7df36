"""`crawl`: walk one list page: queue its children and the next list page."""

from __future__ import annotations

from typing import Any

from pipeline.discover import discover
from pipeline.outcome import Attempt, PermanentFailure, check_payload, finish, settle
from pipeline.pages import fetch_html, with_validators
from pipeline.resources import Resources


async def crawl(ctx: dict[str, Any], crawl_id: str, url: str, depth: int = 0) -> None:
    """Fetch list page `url`; children are queued at depth 1, the next list page as another `crawl`.

    Each list page is its own job, so a failure on page 7 of 20 retries page 7 only.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        _, parsed = await fetch_html(res, url, options)
        if parsed is None:
            raise PermanentFailure("list page is not HTML")
        found = discover(url, parsed, options, depth=depth + 1, include_next=True, links=res.links)
        if options.conditional:
            found.items = await with_validators(res, found.items)
        await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "list", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "list", url, work)
