"""Reading sitemaps: urlsets, indexes, gzip, and everything that is not a sitemap, safely."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from pipeline.errors import InvalidSitemap, PermanentFailure
from pipeline.schedule.sitemaps import SLICE_BYTES, parse_sitemap, read_sitemap

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def urlset(*locations: str, namespace: str = NS) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>2026-01-01</lastmod></url>" for loc in locations)
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset{xmlns}>{entries}</urlset>'.encode()


def test_a_urlset_lists_its_pages() -> None:
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
    <urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
      <url>
        <loc>
          https://example.com/a?x=1&amp;y=2
        </loc>
        <image:image><image:loc>https://cdn.example.com/a.jpg</image:loc></image:image>
      </url>
      <url><loc>https://example.com/b</loc><priority>0.5</priority></url>
      <other><loc>https://example.com/not-an-entry</loc></other>
    </urlset>""".encode()
    sitemap = parse_sitemap(document)
    assert not sitemap.index
    assert sitemap.locations == ["https://example.com/a?x=1&y=2", "https://example.com/b"]


def test_a_sitemap_without_a_namespace_is_read_too() -> None:
    assert parse_sitemap(urlset("https://example.com/a", namespace="")).locations == ["https://example.com/a"]


def test_an_index_lists_sitemaps() -> None:
    document = f"""<sitemapindex xmlns="{NS}">
      <sitemap><loc>https://example.com/s1.xml</loc><lastmod>2026-01-01</lastmod></sitemap>
      <sitemap><loc>https://example.com/s2.xml.gz</loc></sitemap>
    </sitemapindex>""".encode()
    sitemap = parse_sitemap(document)
    assert sitemap.index
    assert sitemap.locations == ["https://example.com/s1.xml", "https://example.com/s2.xml.gz"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"", "malformed XML: no element found"),
        (b"<urlset><url><loc>https://example.com/</loc></url>", "malformed XML"),
        (b"<urlset><url><loc>a</url></loc></urlset>", "malformed XML: mismatched tag"),
        (b"<!doctype html><html><body><p>Hello<br></body></html>", "malformed XML: syntax error"),
        (b"<!DOCTYPE html><html><body></body></html>", "a DTD is not allowed"),
        (b"<html><body><a href='/x'>x</a></body></html>", "not a sitemap: the document is <html>"),
        (b'<rss version="2.0"><channel><link>https://example.com/</link></channel></rss>', "the document is <rss>"),
        (b"just some text\n", "malformed XML: syntax error"),
    ],
)
def test_what_is_not_a_sitemap_says_why(document: bytes, reason: str) -> None:
    with pytest.raises(InvalidSitemap, match=reason) as raised:
        parse_sitemap(document)
    assert isinstance(raised.value, PermanentFailure)  # recorded as a failure, never retried
    assert raised.value.reason.startswith("invalid sitemap: ")


def test_entities_are_never_declared_so_never_expanded() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><urlset><url><loc>&c;</loc></url></urlset>'
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&x;</loc></url></urlset>"
    )
    for document in (laughs, external):
        with pytest.raises(InvalidSitemap, match="a DTD is not allowed"):
            parse_sitemap(document)
    with pytest.raises(InvalidSitemap, match="undefined entity"):
        parse_sitemap(b"<urlset><url><loc>&x;</loc></url></urlset>")


async def test_gzipped_sitemaps_are_read_like_plain_ones() -> None:
    document = urlset(*(f"https://example.com/p/{i}" for i in range(3)))
    for body in (document, gzip.compress(document)):
        sitemap = await read_sitemap(body, 1024 * 1024)
        assert sitemap.locations == [f"https://example.com/p/{i}" for i in range(3)]


async def test_the_size_cap_holds_after_decompression() -> None:
    document = urlset("https://example.com/a") + b" " * 200_000  # whitespace after the root is fine XML
    assert (await read_sitemap(gzip.compress(document), len(document))).locations == ["https://example.com/a"]
    with pytest.raises(InvalidSitemap, match=r"larger than fetch.max_body_bytes \(100000 bytes\) once decompressed"):
        await read_sitemap(gzip.compress(document), 100_000)
    bomb = gzip.compress(b"<urlset>" + b" " * 50_000_000)  # 50 MB of nothing in ~50 KB
    with pytest.raises(InvalidSitemap, match="once decompressed"):
        await read_sitemap(bomb, 1_000_000)
    with pytest.raises(InvalidSitemap, match=r"larger than fetch\.max_body_bytes"):
        await read_sitemap(document[:1000], 1000, truncated=True)  # the fetcher cut it at its cap


async def test_broken_gzip_is_an_invalid_sitemap() -> None:
    whole = gzip.compress(urlset(*(f"https://example.com/p/{i}" for i in range(100))))
    with pytest.raises(InvalidSitemap, match="truncated gzip data"):
        await read_sitemap(whole[: len(whole) // 2], 1024 * 1024)
    with pytest.raises(InvalidSitemap, match="corrupt gzip data"):
        await read_sitemap(whole[:10] + b"\x00" * 50 + whole[60:], 1024 * 1024)


async def test_a_large_sitemap_is_read_in_slices_without_holding_the_loop() -> None:
    locations = [f"https://example.com/a/rather/long/path/to/page-{i}?ref=sitemap" for i in range(50_000)]
    document = urlset(*locations)
    assert len(document) > 8 * SLICE_BYTES
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    ticker = asyncio.create_task(count_turns())
    try:
        plain = await read_sitemap(document, 50_000_000)
        gzipped = await read_sitemap(gzip.compress(document), 50_000_000)
    finally:
        ticker.cancel()
    assert plain.locations == gzipped.locations == locations  # slices may cut anywhere, even in a tag
    assert turns >= 8  # the event loop ran other tasks between slices
