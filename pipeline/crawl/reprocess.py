"""How a replay starts: `pipeline reprocess CRAWL_ID` re-parses and re-crunches a crawl's stored
pages from their stored bodies, without a request to the site.

A replay is a crawl of its own (a new id, kind `reprocess`, its record naming the crawl it
replays), run by the crawl machinery like any other: its list job (`reprocess_list`) pages
through the stored pages and queues one item job (`reprocess_page`) per page, through the
frontier, the queue bound and the backlog; every page settles once, counted like a crawl's, and
the last one completes it. The crawl it replays keeps its record and counters; its page
documents are updated in place (`reprocessed_at`, `reprocess_id`) and keep its `crawl_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING

from pipeline.crawl.lifecycle import start_crawl
from pipeline.crawl.options import REPROCESS, CrawlOptions
from pipeline.crawl.status import FINISHED_STATES
from pipeline.errors import InvalidTransition
from pipeline.schedule.frontier import Frontier
from pipeline.settings import Settings
from pipeline.store.mongo import MongoStore


async def start_reprocess(
    store: MongoStore,
    frontier: Frontier,
    settings: Settings,
    crawl_id: str,
    *,
    fields: Mapping[str, str] | None = None,
    crunch: str | None = None,
) -> str:
    """Start a replay of the pages `crawl_id` stored and return the replay's id.

    `fields` (replacing the crawl's own, whole) and `crunch` are checked first (`ConfigError`);
    then an unknown crawl raises `CrawlNotFound`, and one still running or with no stored page
    `InvalidTransition`. A replay of a replay replays the same crawl's pages again.
    """
    values = CrawlOptions.replay_values(settings, fields=fields, crunch=crunch)
    source_id, record = await store.stored_by(crawl_id)
    state = record.get("state")
    if state not in FINISHED_STATES:
        raise InvalidTransition(f"crawl {source_id} is {state}: its pages can be reprocessed once it has finished")
    first = await store.pages.find_one({"crawl_id": source_id}, {"url": 1}, sort=[("url", ASCENDING)])
    if first is None:
        raise InvalidTransition(f"crawl {source_id} has no stored pages to reprocess")
    options = CrawlOptions.from_dict(record.get("options") or {}).replay(source_id, str(first["url"]), values)
    extra: dict[str, Any] = {"kind": REPROCESS, "source_crawl": source_id, "start_url": record.get("start_url", "")}
    return await start_crawl(store, frontier, options, extra)
