"""Sitemaps (sitemaps.org): the pages a site lists for crawlers, read safely.

A sitemap is a `<urlset>` of `<url><loc>` entries, or a `<sitemapindex>` of `<sitemap><loc>`
entries naming more sitemaps; either may be gzipped (`sitemap.xml.gz`). Reading one:
- gzip is undone here for a body served as a `.gz` file (`Content-Encoding: gzip` is undone by
  the fetcher), and the decompressed size is held to `fetch.max_body_bytes` like any body;
- the XML is parsed by the standard library's expat with any DTD refused: no entity can be
  declared, so none can be expanded (the billion-laughs and external-entity attacks need one).
  It is fed in slices, yielding to the event loop between them, so a 50,000-URL sitemap never
  holds up the worker's other jobs for long;
- what is not a sitemap (bad XML, an HTML page, an RSS feed) raises `InvalidSitemap` saying why.

The `Sitemap:` lines of a robots.txt are read by `robots_txt_sitemaps` (Protego).
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from protego import Protego

from pipeline.download.fetcher import Fetcher
from pipeline.errors import InvalidSitemap, PermanentFailure

GZIP_MAGIC = b"\x1f\x8b"
SLICE_BYTES = 256 * 1024
# RFC 9309: a crawler must parse at least 500 KiB of a robots.txt; the rest may be ignored.
ROBOTS_TXT_BYTES = 500 * 1024


@dataclass(frozen=True)
class Sitemap:
    """What a sitemap lists: page URLs, or (an index) more sitemaps, as written in `<loc>`."""

    index: bool
    locations: list[str] = field(default_factory=list)


class SitemapParser:
    """An incremental sitemap parser: `feed` bytes as they come, then `close` for the result."""

    def __init__(self) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartDoctypeDeclHandler = self._refuse_dtd
        parser.EntityDeclHandler = self._refuse_entity
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.buffer_text = True
        self._parser = parser
        self._depth = 0
        self._namespace = ""
        self._index: bool | None = None
        self._in_entry = False
        self._loc: list[str] | None = None
        self._locations: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise InvalidSitemap(f"malformed XML: {exc}") from None

    def close(self) -> Sitemap:
        self.feed(b"", final=True)
        if self._index is None:  # expat refuses a document without an element; kept for clarity
            raise InvalidSitemap("no sitemap element")
        return Sitemap(self._index, self._locations)

    def _refuse_dtd(self, *_: Any) -> None:
        raise InvalidSitemap("a DTD is not allowed in a sitemap")

    def _refuse_entity(self, *_: Any) -> None:
        raise InvalidSitemap("an entity declaration is not allowed in a sitemap")

    def _start(self, name: str, _attributes: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(" ")
        self._depth += 1
        if self._depth == 1:
            if local not in ("urlset", "sitemapindex"):
                raise InvalidSitemap(f"not a sitemap: the document is <{local}>, not <urlset> or <sitemapindex>")
            self._index, self._namespace = local == "sitemapindex", namespace
        elif self._depth == 2:
            self._in_entry = namespace == self._namespace and local == ("sitemap" if self._index else "url")
        elif self._depth == 3 and self._in_entry and namespace == self._namespace and local == "loc":
            # Only the entry's own <loc>: extensions (image:loc, video:...) live in other namespaces.
            self._loc = []

    def _end(self, _name: str) -> None:
        if self._depth == 3 and self._loc is not None:
            self._locations.append("".join(self._loc).strip())
            self._loc = None
        self._depth -= 1

    def _text(self, data: str) -> None:
        if self._loc is not None:
            self._loc.append(data)


def parse_sitemap(document: bytes) -> Sitemap:
    """A whole (uncompressed) sitemap at once: for small documents and tests."""
    parser = SitemapParser()
    parser.feed(document)
    return parser.close()


async def read_sitemap(body: bytes, max_bytes: int, *, truncated: bool = False) -> Sitemap:
    """The sitemap in a response body, gzipped or not, at most `max_bytes` once decompressed.

    `truncated` is the fetcher's word that the body was cut at its cap: such a sitemap is
    refused whole rather than read in part.
    """
    if truncated:
        raise InvalidSitemap(f"larger than fetch.max_body_bytes ({max_bytes} bytes)")
    parser = SitemapParser()
    if body[:2] == GZIP_MAGIC:
        await _feed_gunzipped(parser, body, max_bytes)
    else:
        for start in range(0, len(body), SLICE_BYTES):
            parser.feed(body[start : start + SLICE_BYTES])
            await asyncio.sleep(0)
    return parser.close()


async def _feed_gunzipped(parser: SitemapParser, body: bytes, max_bytes: int) -> None:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    pending, size = body, 0
    while not inflater.eof:
        try:
            chunk = inflater.decompress(pending, SLICE_BYTES)
        except zlib.error as exc:
            raise InvalidSitemap(f"corrupt gzip data: {exc}") from None
        pending = inflater.unconsumed_tail
        size += len(chunk)
        if size > max_bytes:
            raise InvalidSitemap(f"larger than fetch.max_body_bytes ({max_bytes} bytes) once decompressed")
        if not chunk and not inflater.eof:  # every byte given and the stream not over
            raise InvalidSitemap("truncated gzip data")
        parser.feed(chunk)
        await asyncio.sleep(0)


async def robots_txt_sitemaps(fetcher: Fetcher, robots_url: str) -> list[str]:
    """The `Sitemap:` lines of the robots.txt at `robots_url`, as written (maybe relative).

    A robots.txt that is missing or refused (4xx) names none (RFC 9309's reading of 4xx);
    a 5xx or an unreachable server is a `FetchError` to retry, another status a failure.
    """
    response = await fetcher.get(robots_url, robots=False)  # robots.txt itself is always allowed
    if 400 <= response.status < 500:
        return []
    if not 200 <= response.status < 300:
        raise PermanentFailure(f"HTTP {response.status}", response.status)
    text = response.body[:ROBOTS_TXT_BYTES].decode("utf-8", errors="replace")
    return list(Protego.parse(text).sitemaps)
