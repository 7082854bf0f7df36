"""Bad input: refused or failed with a clear error, and nothing else disturbed."""

from __future__ import annotations

import logging

import pytest
from arq.connections import create_pool

from pipeline.api import Pipeline
from pipeline.errors import InvalidURL
from pipeline.settings import Settings
from pipeline.worker.queue import arq_redis_settings
from pipeline.worker.serialization import deserialize, serialize
from tests.helpers import StaticSite, run_burst_worker


async def test_invalid_job_payloads_fail_alone(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    redis = await create_pool(
        arq_redis_settings(settings),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.redis.queue,
    )
    try:
        await redis.enqueue_job("fetch_page", "crawl", "file:///etc/passwd", 1)
        await redis.enqueue_job("fetch_page", {"crawl": 1}, "http://x/", -1)
        await redis.enqueue_job("fetch_page", "only-one-argument")
        await redis.enqueue_job("crawl", "c", "http://x/", "deep")
        await redis.enqueue_job("fetch_page", "c", "http://x/a b", 1)  # not the form the fetcher sends
        await redis.enqueue_job("no_such_function", 1)
        await redis.set("arq:job:garbage", b"\xc1 not msgpack")
        await redis.zadd(settings.redis.queue, {"garbage": 1})
    finally:
        await redis.aclose()

    async with StaticSite({"/list": "<a href='/a'>a</a>", "/a": "<p>fine</p>"}) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
        with caplog.at_level(logging.INFO, logger="arq"):
            await run_burst_worker(settings)
        async with Pipeline(settings) as pipeline:
            status = await pipeline.status(crawl_id)
    assert status.done and status.stored == 1  # the worker kept going
    text = caplog.text
    assert "url must be an http(s) URL string, got 'file:///etc/passwd'" in text
    assert "crawl_id must be a non-empty string" in text
    assert "depth must be a whole number" in text
    assert "url must be canonical ('http://x/a%20b'), got 'http://x/a b'" in text
    assert "function 'no_such_function' not found" in text


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("javascript:alert(1)", {}, "unsupported scheme"),
        ("data:text/html,hi", {}, "unsupported scheme"),
        ("http://", {}, "no host"),
        ("http://ok.test/", {"max_depth": -1}, "max_depth"),
        ("http://ok.test/", {"max_pages": 0}, "max_pages"),
        ("http://ok.test/", {"link_selector": "a["}, "invalid CSS selector"),
        ("http://ok.test/", {"scope": "galaxy"}, "scope"),
        ("http://ok.test/", {"allow": ["/docs/", "("]}, r"allow: invalid regular expression '\('"),
        ("http://ok.test/", {"deny": ["[a-"]}, "deny: invalid regular expression"),
        ("http://ok.test/", {"sitemaps": ["ftp://ok.test/sitemap.xml"]}, "sitemaps: unsupported scheme ftp:"),
        ("http://ok.test/", {"sitemaps": ["/sitemap.xml"]}, r"sitemaps: unsupported scheme \(none\)"),
    ],
)
async def test_api_refuses_bad_crawls_before_queueing(
    settings: Settings, url: str, options: dict[str, object], message: str
) -> None:
    async with Pipeline(settings) as pipeline:
        with pytest.raises((InvalidURL, ValueError), match=message):
            await pipeline.crawl(url, **options)  # type: ignore[arg-type]
        with pytest.raises(LookupError):
            await pipeline.status()  # nothing was recorded
