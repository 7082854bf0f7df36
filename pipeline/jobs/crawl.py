"""`crawl`: walk one list page: queue its children and the next list page."""

from __future__ import annotations

from pipeline.errors import PermanentFailure
from pipeline.parse.html import parse_response
from pipeline.schedule.discover import discover
from pipeline.settle.outcome import Attempt, check_payload, finish
from pipeline.settle.retries import settle
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources


async def crawl(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Fetch list page `url`; children are queued at depth 1, the next list page as another `crawl`.

    Each list page is its own job, so a failure on page 7 of 20 retries page 7 only.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        # A list page goes ahead of the child pages already queued: every later page waits for it.
        response = await res.fetcher.get_ok(url, priority=True)
        parsed = parse_response(response, link_selector=options.link_selector, next_selector=options.next_selector)
        if parsed is None:
            raise PermanentFailure("list page is not HTML")
        found = discover(url, parsed, options, depth=depth + 1, include_next=True, links=res.links)
        await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "list", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "list", url, work, depth=depth)
