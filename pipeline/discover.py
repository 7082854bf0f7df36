"""From the links a page carries to the URLs a crawl will follow.

Each raw href is resolved against the page (or its `<base href>`), normalised and checked
against the crawl's scope. What is dropped is counted, so a crawl can say how many links it
skipped and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.crawls import CrawlOptions
from pipeline.frontier import Discovery, Kind
from pipeline.parse import ParsedPage
from pipeline.urls import InvalidURL, in_scope, normalise_url


@dataclass
class Found:
    items: list[Discovery] = field(default_factory=list)
    skipped_invalid: int = 0
    skipped_scope: int = 0


def _resolve_base(page_url: str, parsed: ParsedPage) -> str:
    if parsed.base_url:
        try:
            return normalise_url(parsed.base_url, page_url)
        except InvalidURL:
            pass
    return page_url


def discover(page_url: str, parsed: ParsedPage, options: CrawlOptions, *, depth: int, include_next: bool) -> Found:
    """Child links at `depth` (and, on list pages, the next list pages) that the crawl may follow."""
    base = _resolve_base(page_url, parsed)
    found = Found()
    seen: set[str] = {page_url}

    def accept(href: str, kind: Kind, link_depth: int) -> None:
        try:
            url = normalise_url(href, base)
        except InvalidURL:
            found.skipped_invalid += 1
            return
        if url in seen:
            return
        seen.add(url)
        if not in_scope(url, options.start_url, options.scope):
            found.skipped_scope += 1
            return
        found.items.append(Discovery(url, kind, link_depth))

    if include_next:
        for href in parsed.next_links:
            accept(href, "list", 0)
    if depth <= options.max_depth:
        for href in parsed.links:
            accept(href, "page", depth)
    return found
