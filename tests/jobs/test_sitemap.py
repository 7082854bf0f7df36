"""Sitemaps in a crawl: given, named by robots.txt, indexed, gzipped, broken, out of scope, too big."""

from __future__ import annotations

import gzip
from typing import Any

from pymongo import AsyncMongoClient

from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
CAP = 100_000


def urlset(*locations: str) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc></url>" for loc in locations)
    return f'<?xml version="1.0"?><urlset xmlns="{NS}">{entries}</urlset>'.encode()


def index(*locations: str) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locations)
    return f'<?xml version="1.0"?><sitemapindex xmlns="{NS}">{entries}</sitemapindex>'.encode()


XML, GZIP = "application/xml", "application/gzip"
BROKEN = f'<urlset xmlns="{NS}"><url><loc>'.encode()


async def test_sitemaps_feed_the_crawl_under_its_rules(settings: Settings) -> None:
    settings = settings.replace(fetch={"max_body_bytes": CAP})
    async with StaticSite({}) as site:
        base = site.base_url
        site.pages.update(
            {
                "/list": "<a href='/p/1'>one</a>",
                "/robots.txt": (
                    b"User-agent: *\nSitemap: /index.xml\nSitemap: http://elsewhere.test/s.xml\n",
                    "text/plain",
                ),
                "/sitemap.xml": (
                    urlset(
                        f"{base}/p/1",
                        f"{base}/p/2",
                        f"{base}/p/2",
                        f"{base}/private/3",
                        "http://other.test/p",
                        "mailto:x",
                    ),
                    XML,
                ),
                "/index.xml": (
                    index(
                        f"{base}/sitemap.xml",  # given already: read once
                        f"{base}/sm/packed.xml.gz",
                        f"{base}/sm/broken.xml",
                        f"{base}/sm/page.html",
                        f"{base}/sm/bomb.xml.gz",
                        f"{base}/sm/huge.xml",
                        f"{base}/sm/missing.xml",
                        f"{base}/nest/1.xml",
                    ),
                    XML,
                ),
                # Indexes of indexes: read to three levels below the first, then refused.
                "/nest/1.xml": (index(f"{base}/nest/2.xml"), XML),
                "/nest/2.xml": (index(f"{base}/nest/3.xml"), XML),
                "/nest/3.xml": (index(f"{base}/p/5"), XML),
                "/sm/packed.xml.gz": (gzip.compress(urlset(f"{base}/p/3", f"{base}/p/1")), GZIP),
                "/sm/broken.xml": (BROKEN, XML),
                "/sm/page.html": "<html><body><a href='/p/4'>not a sitemap</a></body></html>",
                "/sm/bomb.xml.gz": (gzip.compress(b"<urlset>" + b" " * (20 * CAP) + b"</urlset>"), GZIP),
                "/sm/huge.xml": (urlset(*(f"{base}/p/{i}" for i in range(10, 5000))), XML),
                **{f"/p/{i}": f"<p>page {i}</p>" for i in range(1, 6)},
            }
        )
        status = await crawl_to_completion(
            settings, base + "/list", sitemaps=[base + "/sitemap.xml"], robots_sitemaps=True, deny=["/private/"]
        )
        hits = dict(site.hits)

    counters = status.counters
    assert status.done
    assert (status.discovered, status.stored, status.failed) == (3, 3, 0)  # p/1, p/2, p/3
    assert counters["lists"] == counters["lists_done"] + counters["lists_failed"] == 13
    assert counters["lists_done"] == 7  # the list page, sitemap.xml, robots.txt, the index, packed, nest/1-2
    assert counters["skipped_scope"] == 3  # /private/3 (denied), other.test, elsewhere.test (other hosts)
    assert counters["skipped_invalid"] == 1  # mailto:x
    for path in ("/p/1", "/p/2", "/p/3", "/sitemap.xml", "/robots.txt", "/index.xml", "/sm/packed.xml.gz"):
        assert hits[path] == 1, path
    assert "/p/4" not in hits and "/private/3" not in hits and "/p/5" not in hits

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        pages = {p["url"] for p in await db.pages.find({"crawl_id": status.crawl_id}).to_list()}
        failures = {f["url"]: f for f in await db.failures.find({"crawl_id": status.crawl_id}).to_list()}
    finally:
        await client.close()
    assert pages == {f"{base}/p/{i}" for i in (1, 2, 3)}
    reasons = {url.removeprefix(base): (f["kind"], f["error"]) for url, f in failures.items()}
    assert reasons["/sm/broken.xml"] == (
        "sitemap",
        f"invalid sitemap: malformed XML: no element found: line 1, column {len(BROKEN)}",
    )
    assert reasons["/sm/page.html"] == (
        "sitemap",
        "invalid sitemap: not a sitemap: the document is <html>, not <urlset> or <sitemapindex>",
    )
    assert reasons["/sm/bomb.xml.gz"] == (
        "sitemap",
        f"invalid sitemap: larger than fetch.max_body_bytes ({CAP} bytes) once decompressed",
    )
    assert reasons["/sm/huge.xml"] == ("sitemap", f"invalid sitemap: larger than fetch.max_body_bytes ({CAP} bytes)")
    assert reasons["/sm/missing.xml"] == ("sitemap", "HTTP 404")
    assert reasons["/nest/3.xml"] == ("sitemap", "sitemap index nested more than 3 deep")
    assert len(failures) == 6
