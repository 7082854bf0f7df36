"""From the links a page carries to the URLs a crawl will follow.

Each raw href is resolved against the page (or its `<base href>`), normalised and checked
against the crawl's scope (`pipeline.schedule.scope`). What is dropped is counted, so a crawl
can say how many links it skipped and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.crawl.options import CrawlOptions
from pipeline.errors import InvalidURL
from pipeline.parse.html import ParsedPage
from pipeline.schedule.frontier import Discovery, Kind
from pipeline.schedule.scope import PublicSuffixes, Scope
from pipeline.store.mongo import MongoStore
from pipeline.urls import LinkResolver, normalise_url


def crawl_scope(options: CrawlOptions, suffixes: PublicSuffixes | None = None) -> Scope:
    """The scope of a crawl with these options (`suffixes` loaded, for a domain scope)."""
    return Scope(options.start_url, options.scope, options.allow, options.deny, suffixes)


@dataclass
class Found:
    """URLs a page leads to, and how many of its links were dropped and why."""

    scope: Scope
    items: list[Discovery] = field(default_factory=list)
    skipped_invalid: int = 0
    skipped_scope: int = 0
    seen: set[str] = field(default_factory=set, repr=False)
    links: LinkResolver | None = field(default=None, repr=False)  # the worker's, to reuse its work

    def add(self, href: str, base: str, kind: Kind, depth: int, function: str = "", *, keep: bool = False) -> None:
        """Resolve `href` against `base`; keep it if valid, new on this page and in scope.

        A sitemap named by an index or a robots.txt needs only the host scope; pages and list
        pages pass the allow and deny patterns too. `keep` (list pages only) also counts the
        URL as a page that its list job stores.
        """
        try:
            url = self.links.resolve(href, base) if self.links is not None else normalise_url(href, base)
        except InvalidURL:
            self.skipped_invalid += 1
            return
        if url in self.seen:
            return
        self.seen.add(url)
        if not (self.scope.follows_host(url) if kind == "sitemap" else self.scope.follows(url)):
            self.skipped_scope += 1
            return
        self.items.append(Discovery(url, kind, depth, function))
        if keep and kind == "list":
            self.items.append(Discovery(url, "page", depth, kept_by_list=True))


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
    scope: Scope,
    *,
    depth: int,
    include_next: bool,
    links: LinkResolver | None = None,
) -> Found:
    """Child links at `depth` (and, on list pages, the next list pages) that the crawl may follow."""
    base = _resolve_base(page_url, parsed)
    found = Found(scope, seen={page_url}, links=links)
    if include_next:
        for href in parsed.next_links:
            found.add(href, base, "list", 0, keep=options.keeps_list_pages)
    if depth <= options.max_depth:
        for href in parsed.links:
            found.add(href, base, "page", depth)
    return found


async def add_validators(store: MongoStore, items: list[Discovery]) -> list[Discovery]:
    """Child URLs with the ETag / Last-Modified stored for them, for conditional GETs (one query)."""
    urls = [item.url for item in items if item.kind == "page" and not item.kept_by_list]
    if not urls:
        return items
    known = await store.validators(urls)
    return [
        dataclasses.replace(item, extra=known[item.url])
        if item.kind == "page" and not item.kept_by_list and item.url in known
        else item
        for item in items
    ]
