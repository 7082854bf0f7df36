"""`pipeline reprocess CRAWL_ID`: as users type it, as a real process."""

from __future__ import annotations

import asyncio
import json

from pipeline.settings import Settings
from tests.helpers import crawl_to_completion, run_cli, service_env, stored_pages
from tests.servers.site import SiteConfig, ThreadedSite, child_fields


def test_reprocess_of_an_unknown_crawl_exits_2(settings: Settings) -> None:
    result = run_cli("reprocess", "nosuchcrawl", env=service_env(settings))
    assert result.returncode == 2
    assert "no crawl with id 'nosuchcrawl'" in result.stderr and "Traceback" not in result.stderr


def test_reprocess_refuses_a_bad_field_before_starting(settings: Settings) -> None:
    result = run_cli("reprocess", "anycrawl", "--field", "x=h1[", env=service_env(settings))
    assert result.returncode == 2
    assert "fields: field x: invalid CSS selector 'h1['" in result.stderr and "Traceback" not in result.stderr


async def test_reprocess_waits_for_every_page_and_reports_like_a_crawl(settings: Settings) -> None:
    config = SiteConfig(pages=12, per_list_page=12, page_bytes=2_000, latency_ms=1, links_per_page=1)
    with ThreadedSite(config) as site:
        crawl = await crawl_to_completion(settings, site.base_url + "/list")
        requests = len(site.site.requests)
        flags = ["--field", "price=.price", "--field", "tags=.tags li[]", "--crunch", "none"]
        result = await asyncio.to_thread(
            run_cli,
            "reprocess",
            crawl.crawl_id,
            *flags,
            "--wait",
            "--json",
            "--timeout",
            "60",
            env=service_env(settings),
        )
        assert len(site.site.requests) == requests
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "done" and report["source_crawl"] == crawl.crawl_id
    assert (report["discovered"], report["stored"], report["failed"], report["fetched"]) == (12, 12, 0, 0)

    status = await asyncio.to_thread(run_cli, "status", report["crawl_id"], env=service_env(settings))
    assert status.returncode == 0 and f"reprocess of crawl {crawl.crawl_id}" in status.stdout
    pages = await stored_pages(settings, crawl.crawl_id)
    for index in range(config.pages):
        shown = child_fields(config, index)
        page = pages[f"{site.base_url}/page/{index}"]
        assert page["fields"] == {"price": shown.price, "tags": shown.tags}
        assert page["reprocess_id"] == report["crawl_id"]
