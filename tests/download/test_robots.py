"""robots.txt: the rules as matched for our product token, and crawls that obey them."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from pipeline.api import Pipeline
from pipeline.connections import redis_client
from pipeline.download.fetcher import Fetcher, create_session
from pipeline.download.host_limits import AdaptiveLimiter, AdaptiveSettings
from pipeline.download.robots import Robots, RobotsCache, RobotsRecord, origin_of, product_token, robots_key
from pipeline.settings import Settings
from tests.helpers import crawl_to_completion, run_burst_worker
from tests.servers.site import SiteConfig, ThreadedSite

RULES = """\
# Everyone else: nothing.
User-agent: *
Disallow: /

User-agent: pipeline
Disallow: /page/1
Allow: /page/1$
Disallow: /page/*5$
Sitemap: http://example.com/sitemap.xml
"""


def robots(body: str, user_agent: str = "pipeline/0.1") -> Robots:
    return Robots(RobotsRecord("rules", body), product_token(user_agent), 0.0)


def test_product_token_and_origin() -> None:
    assert product_token("pipeline/0.1") == "pipeline"
    assert product_token("MyBot/2.0 (+https://example.com/bot)") == "mybot"
    assert origin_of("http://127.0.0.1:8080/page/1?x=1") == "http://127.0.0.1:8080"
    assert origin_of("https://example.com/") == "https://example.com"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/list", True),
        ("/page/1", True),  # Allow: /page/1$ is longer than Disallow: /page/1
        ("/page/12", False),
        ("/page/1/x", False),
        ("/page/5", False),  # Disallow: /page/*5$
        ("/page/25", False),
        ("/page/55x", True),  # $ anchors the end
        ("/page/2", True),
        ("/robots.txt", True),
    ],
)
def test_longest_match_wins_and_wildcards(path: str, allowed: bool) -> None:
    assert robots(RULES).allows("http://h" + path) is allowed


def test_groups_are_chosen_by_product_token() -> None:
    assert not robots(RULES, "otherbot/1.0").allows("http://h/page/2")  # falls in the * group
    other = "User-agent: pipelinebot\nDisallow: /\n"  # another crawler's group, not ours
    assert robots(other).allows("http://h/page/2")
    assert robots(RULES, "Pipeline/9").allows("http://h/page/2")  # matched case-insensitively


def test_one_record_answers_each_crawl_by_its_own_token() -> None:
    """A crawl with a User-Agent of its own is matched by its token against the shared record."""
    rules = robots("User-agent: acme-bot\nDisallow: /private/\nCrawl-delay: 3\n\nUser-agent: *\nAllow: /\n")
    assert rules.allows("http://h/private/x")  # the worker's own token: the * group
    assert not rules.allows("http://h/private/x", product_token("acme-bot/2.0 (+http://acme.test)"))
    assert rules.allows("http://h/public", "acme-bot")
    assert rules.delay_for(None) == 0.0 and rules.delay_for("acme-bot") == 3.0


def test_crawl_delay_and_sitemaps() -> None:
    rules = robots("User-agent: *\nCrawl-delay: 2.5\nSitemap: http://h/a.xml\nSitemap: http://h/b.xml.gz\n")
    assert rules.crawl_delay == 2.5 and rules.sitemaps == ["http://h/a.xml", "http://h/b.xml.gz"]
    assert robots("User-agent: *\nCrawl-delay: 86400\n").crawl_delay == 60.0  # capped
    assert Robots(RobotsRecord("allow"), "pipeline", 0.0).crawl_delay == 0.0


async def test_disallowed_urls_are_never_requested_and_counted(settings: Settings) -> None:
    config = SiteConfig(pages=30, per_list_page=30, latency_ms=5, links_per_page=0, robots_txt=RULES)
    disallowed = {f"/page/{i}" for i in (*range(10, 20), 5, 25)}
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        hits = dict(site.site.hits)
    assert status.done
    assert (status.discovered, status.stored, status.skipped_robots, status.failed) == (30, 18, 12, 0)
    assert status.discovered == status.stored + status.unchanged_count + status.failed + status.skipped_robots
    assert not disallowed & set(hits)
    assert hits["/robots.txt"] == 1
    assert all(hits[f"/page/{i}"] == 1 for i in range(30) if f"/page/{i}" not in disallowed)


async def test_ignore_robots_is_a_per_crawl_exemption(settings: Settings) -> None:
    config = SiteConfig(
        pages=10, per_list_page=10, latency_ms=5, links_per_page=0, robots_txt="User-agent: *\nDisallow: /\n"
    )
    with ThreadedSite(config) as site:
        ignored = await crawl_to_completion(settings, site.base_url + "/list", ignore_robots=True)
        assert "/robots.txt" not in site.site.hits
        obeyed = await crawl_to_completion(settings, site.base_url + "/list")
        hits = dict(site.site.hits)
    assert ignored.stored == 10
    assert obeyed.done and obeyed.counters.get("lists_skipped_robots") == 1 and obeyed.discovered == 0
    assert hits["/list"] == 1 and hits["/robots.txt"] == 1


async def test_missing_robots_txt_allows_everything(settings: Settings) -> None:
    config = SiteConfig(pages=10, per_list_page=10, latency_ms=5, links_per_page=0)  # /robots.txt is 404
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        hits = dict(site.site.hits)
    assert status.stored == 10 and status.skipped_robots == 0
    assert hits["/robots.txt"] == 1


async def test_unreadable_robots_txt_holds_the_host_until_it_can_be_read(settings: Settings) -> None:
    config = SiteConfig(pages=10, per_list_page=10, latency_ms=5, links_per_page=0, robots_failures=2)
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        requests = list(site.site.requests)
    paths = [path for _, path in requests]
    assert paths[:3] == ["/robots.txt"] * 3  # two 503s, then the 404: nothing else before it
    assert status.done and status.stored == 10 and status.failed == 0 and status.counters.get("retries", 0) == 0


async def test_unreadable_robots_txt_fails_its_urls_after_robots_wait_only(settings: Settings) -> None:
    settings = settings.replace(fetch={"robots_wait": 1.0})
    down = SiteConfig(pages=5, per_list_page=5, latency_ms=5, links_per_page=0, robots_failures=10**6)
    up = SiteConfig(pages=10, per_list_page=10, latency_ms=5, links_per_page=0)
    with ThreadedSite(down) as bad, ThreadedSite(up) as good:
        async with Pipeline(settings) as pipeline:
            failing = await pipeline.crawl(bad.base_url + "/list")
            healthy = await pipeline.crawl(good.base_url + "/list")
            await run_burst_worker(settings)
            failed, stored = await pipeline.status(failing), await pipeline.status(healthy)
            failures = await pipeline.failures(failing)
        bad_paths = set(bad.site.hits)
    assert stored.done and stored.stored == 10
    # The start page could not be read, so the crawl ends failed, saying why.
    assert failed.state == "failed" and failed.counters.get("lists_failed") == 1
    assert "robots.txt" in (failed.error or "")
    assert bad_paths == {"/robots.txt"}
    assert "robots.txt" in failures[0]["error"] and "unreadable" in failures[0]["error"]


async def test_crawl_delay_spaces_request_starts(settings: Settings) -> None:
    config = SiteConfig(
        pages=6, per_list_page=6, latency_ms=5, links_per_page=0, robots_txt="User-agent: *\nCrawl-delay: 0.3\n"
    )
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
        starts = [at for at, path in site.site.requests if path != "/robots.txt"]
    assert status.stored == 6 and len(starts) == 7
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.3 - 0.01, gaps


async def test_record_is_shared_with_an_expiry_and_names_the_sitemaps(settings: Settings) -> None:
    settings = settings.replace(fetch={"robots_ttl": 120.0})
    config = SiteConfig(pages=1, latency_ms=1, robots_txt=RULES)
    redis = redis_client(settings)
    fetchers: list[Fetcher] = []
    sessions: list[aiohttp.ClientSession] = []
    try:
        with ThreadedSite(config) as site:
            for _ in range(2):  # two workers' fetchers
                session = create_session(settings.fetch)
                sessions.append(session)
                limiter = AdaptiveLimiter(4, AdaptiveSettings(min_limit=2, max_limit=4, initial_limit=2))
                fetchers.append(Fetcher(session, limiter, settings.fetch, robots=RobotsCache(redis, settings.fetch)))
            first, second = await asyncio.gather(*(f.sitemaps(site.base_url + "/list") for f in fetchers))
            ttl = await redis.pttl(robots_key(site.base_url))
            hits = site.site.hits["/robots.txt"]
    finally:
        for session in sessions:
            await session.close()
        await redis.aclose()
    assert first == second == ["http://example.com/sitemap.xml"]
    assert hits == 1
    assert 100_000 < ttl <= 120_000
