"""`sitemap` and `robots_sitemaps`: the pages a site lists for crawlers, queued like found links.

A crawl reads the sitemaps it is given (`sitemaps`, `--sitemap`) and, with `robots_sitemaps`,
those the start host's robots.txt names. The pages a sitemap lists are queued at depth 1, like
the children of a list page, under the same rules: deduplicated against everything else the
crawl found, within its scope and patterns, counted against `max_pages`. A sitemap index queues
the sitemaps it lists (within the host scope). Sitemaps are settled like list pages (counted in
`lists`); one that cannot be read is recorded in `failures` with the reason.
"""

from __future__ import annotations

from pipeline.crawl.options import CrawlOptions
from pipeline.errors import PermanentFailure
from pipeline.schedule.discover import Found
from pipeline.schedule.frontier import SITEMAP
from pipeline.schedule.scope import Scope
from pipeline.schedule.sitemaps import read_sitemap, robots_txt_sitemaps
from pipeline.settle.outcome import Attempt, check_payload, finish
from pipeline.settle.retries import settle
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources

# The protocol has no index of indexes; a site nesting them deeper than this is going in circles.
MAX_INDEX_NESTING = 3
# URLs resolved and registered per frontier call: a sitemap may list 50,000, and one script call
# that long would hold Redis up, one resolution loop that long the worker's event loop.
BATCH = 500
PAGE_DEPTH = 1


async def sitemap(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Read sitemap `url` (`depth`: how many indexes led to it) and queue what it lists."""
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        scope = await res.crawl_scope(crawl_id)
        # Like a list page, a sitemap feeds the queue: it goes ahead of the pages already queued.
        fetcher = await res.crawl_fetcher(crawl_id)
        response = await fetcher.get_ok(url, priority=True, robots=options.obeys_robots)
        listed = await read_sitemap(response.body, res.settings.fetch.max_body_bytes, truncated=response.truncated)
        if listed.index and depth >= MAX_INDEX_NESTING:
            raise PermanentFailure(f"sitemap index nested more than {MAX_INDEX_NESTING} deep", response.status)
        if listed.index:
            await _schedule(res, crawl_id, options, scope, url, listed.locations, "sitemap", depth + 1)
        elif options.max_depth >= PAGE_DEPTH:
            await _schedule(res, crawl_id, options, scope, url, listed.locations, "page", PAGE_DEPTH)
        await finish(res, crawl_id, "sitemap", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "sitemap", url, work)


async def robots_sitemaps(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Read robots.txt `url` for its `Sitemap:` lines and queue those sitemaps."""
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        scope = await res.crawl_scope(crawl_id)
        fetcher = await res.crawl_fetcher(crawl_id)
        if options.obeys_robots and fetcher.obeys_robots:
            # The robots.txt every worker already shares (read once per host for the fleet).
            named = await fetcher.sitemaps(url)
        else:
            named = await robots_txt_sitemaps(fetcher, url)
        await _schedule(res, crawl_id, options, scope, url, named, "sitemap", depth)
        await finish(res, crawl_id, "sitemap", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "sitemap", url, work)


async def _schedule(
    res: Resources,
    crawl_id: str,
    options: CrawlOptions,
    scope: Scope,
    source: str,
    locations: list[str],
    kind: str,
    depth: int,
) -> None:
    """Queue `locations` (pages, or sitemaps) in batches, each through the usual frontier rules."""
    seen = {source}
    for start in range(0, len(locations), BATCH):
        found = Found(scope, seen=seen)
        for location in locations[start : start + BATCH]:
            if kind == "sitemap":
                found.add(location, source, "sitemap", depth, SITEMAP)
            else:  # the pipeline's item job, as for the children of its list pages
                found.add(location, source, "page", depth, options.item_job)
        await res.backlog.schedule(crawl_id, options, found)
