"""`crawl`: walk one list page: queue its children and the next list page, and store it when the
crawl keeps it (the start page of a site crawl, every list page with `store_lists`)."""

from __future__ import annotations

import asyncio

from pipeline.errors import PermanentFailure
from pipeline.jobs.fetch_page import store_page
from pipeline.parse.html import parse_response
from pipeline.schedule.discover import discover
from pipeline.settle.outcome import Attempt, check_payload, finish
from pipeline.settle.retries import settle
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources


async def crawl(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Fetch list page `url`; children are queued at depth 1, the next list page as another `crawl`.

    Each list page is its own job, so a failure on page 7 of 20 retries page 7 only. A list page
    the crawl keeps was counted as a page when it was queued (with no job of its own): this job
    stores it from the same response and settles it, so it is fetched once.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        scope = await res.crawl_scope(crawl_id)
        started = asyncio.get_running_loop().time()
        # A list page goes ahead of the child pages already queued: every later page waits for it.
        fetcher = await res.crawl_fetcher(crawl_id)
        response = await fetcher.get_ok(url, priority=True, robots=options.obeys_robots)
        keeps = options.keeps_list_pages or (options.keeps_start_page and url == options.start_url)
        parsed = parse_response(
            response,
            link_selector=options.link_selector,
            next_selector=options.next_selector,
            fields=await res.crawl_fields(crawl_id) if keeps else (),
        )
        if parsed is None:
            raise PermanentFailure("list page is not HTML")
        kept = keeps and await res.frontier.page_state(crawl_id, url) == "o"
        if kept:
            await store_page(res, crawl_id, depth, attempt.number, response, parsed, started, options.crunch)
        found = discover(url, parsed, options, scope, depth=depth + 1, include_next=True, links=res.links)
        await res.backlog.schedule(crawl_id, options, found)
        if kept:
            # The list page is still pending, so this never completes the crawl, and its job must
            # stay queued until the list page settles too.
            await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt, retire=False)
        await finish(res, crawl_id, "list", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "list", url, work, depth=depth)
