"""Declared fields on a real crawl: every stored page holds what the site shows on it."""

from __future__ import annotations

from pipeline.settings import Settings
from tests.helpers import crawl_to_completion, stored_pages
from tests.servers.site import HTML, SiteConfig, ThreadedSite, child_fields

CONFIG = SiteConfig(pages=30, per_list_page=10, page_bytes=3_000, latency_ms=1, links_per_page=2)
FIELDS = {"price": ".price", "currency": ".price@data-currency", "tags": ".tags li[]"}


async def test_declared_fields_are_stored_as_each_page_shows_them(settings: Settings) -> None:
    with ThreadedSite(CONFIG) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list", fields=FIELDS, store_lists=True)
    assert status.done and status.failed == 0
    assert status.stored == CONFIG.pages + CONFIG.list_pages
    pages = await stored_pages(settings, status.crawl_id)

    for index in range(CONFIG.pages):
        page = pages[f"{site.base_url}/page/{index}"]
        shown = child_fields(CONFIG, index)
        assert page["fields"] == {"price": shown.price, "currency": shown.currency, "tags": shown.tags}, index
        # Every response header is kept with the page, for a replay of its body.
        assert page["headers"]["content-type"] == HTML
        assert page["headers"]["etag"] == page["etag"] and page["headers"]["last-modified"] == page["last_modified"]
    assert any(child_fields(CONFIG, i).tags for i in range(CONFIG.pages))
    assert any(not child_fields(CONFIG, i).tags for i in range(CONFIG.pages))

    # The list pages the crawl keeps are parsed for the same fields, which they do not have.
    kept = pages[f"{site.base_url}/list"]
    assert kept["depth"] == 0 and kept["fields"] == {"price": None, "currency": None, "tags": []}
