"""From the links a page carries to the URLs a crawl will follow.

Each raw href is resolved against the page (or its `<base href>`), normalised and checked
against the crawl's scope. What is dropped is counted, so a crawl can say how many links it
skipped and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.crawl.options import CrawlOptions
from pipeline.errors import InvalidURL
from pipeline.parse.html import ParsedPage
from pipeline.schedule.frontier import Discovery, Kind
from pipeline.store.mongo import MongoStore
from pipeline.urls import LinkResolver, in_scope, normalise_url


@dataclass
class Found:
    """URLs a page leads to, and how many of its links were dropped and why."""

    items: list[Discovery] = field(default_factory=list)
    skipped_invalid: int = 0
    skipped_scope: int = 0
    seen: set[str] = field(default_factory=set, repr=False)
    links: LinkResolver | None = field(default=None, repr=False)  # the worker's, to reuse its work

    def add(self, href: str, base: str, options: CrawlOptions, kind: Kind, depth: int, function: str = "") -> None:
        """Resolve `href` against `base`; keep it if valid, new on this page and in scope."""
        try:
            url = self.links.resolve(href, base) if self.links is not None else normalise_url(href, base)
        except InvalidURL:
            self.skipped_invalid += 1
            return
        if url in self.seen:
            return
        self.seen.add(url)
        if not in_scope(url, options.start_url, options.scope):
            self.skipped_scope += 1
            return
        self.items.append(Discovery(url, kind, depth, function))


def _resolve_base(page_url: str, parsed: ParsedPage) -> str:
    if parsed.base_url:
        try:
            return normalise_url(parsed.base_url, page_url)
        except InvalidURL:
            pass
    return page_url


def discover(
    page_url: str,
    parsed: ParsedPage,
    options: CrawlOptions,
    *,
    depth: int,
    include_next: bool,
    links: LinkResolver | None = None,
) -> Found:
    """Child links at `depth` (and, on list pages, the next list pages) that the crawl may follow."""
    base = _resolve_base(page_url, parsed)
    found = Found(seen={page_url}, links=links)
    if include_next:
        for href in parsed.next_links:
            found.add(href, base, options, "list", 0)
    if depth <= options.max_depth:
        for href in parsed.links:
            found.add(href, base, options, "page", depth)
    return found


async def add_validators(store: MongoStore, items: list[Discovery]) -> list[Discovery]:
    """Child URLs with the ETag / Last-Modified stored for them, for conditional GETs (one query)."""
    urls = [item.url for item in items if item.kind == "page"]
    if not urls:
        return items
    known = await store.validators(urls)
    return [
        dataclasses.replace(item, extra=known[item.url]) if item.kind == "page" and item.url in known else item
        for item in items
    ]
