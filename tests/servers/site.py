"""A deterministic synthetic website on loopback, for the tests and the benchmark.

Crawling the real web makes tests flaky and benchmarks meaningless, so this module serves a site
whose every page is a pure function of a `SiteConfig` and an index. Tests can therefore compute
what a crawl must find (`expected_child_paths`, `missing_paths`, `flaky_paths`) and check the
crawler against it, while the site counts what was actually requested (`DemoSite.hits`,
`DemoSite.duplicates`, `DemoSite.max_in_flight`).

Besides list pages (`/list?page=N`) and child pages (`/page/<i>`) the site has the hostile corners
a crawler must survive: noise links, redirect chains and loops, a slow page, a 5 MB page, a gzip
bomb, a connection reset, a Latin-1 page and arbitrary status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.servers.docs_pages import docs_links, render_docs_child
from tests.servers.loopback import LoopbackSite, ThreadedServer, serve_from_command_line

HTML = "text/html; charset=utf-8"
#: Appears only inside <script>, <style> and comments, so must never reach extracted text.
HIDDEN_TOKEN = "zzinvisiblezz"
#: The text of `/latin1`, which a client decodes correctly only by honouring <meta charset>.
LATIN1_TEXT = "Café crème, naïve façade, señor Müller à Zürich"
BIG_BYTES = 5 * 1024 * 1024
BOMB_BYTES = 200 * 1024 * 1024

_VOCABULARY = tuple(
    """alpha amber anchor apple arch atlas basin beacon birch breeze canyon cedar cipher cobalt comet
    coral delta dune ember falcon fern fjord flint garnet glacier harbor hazel horizon island jasper
    juniper kelp lagoon lantern maple marble meadow mesa nectar nimbus oasis ochre orbit pebble pine
    prairie quartz quill raven reef ridge saffron sierra spruce summit thistle tundra umber valley
    velvet willow zephyr""".split()
)
_ROOT_HTML = b'<!DOCTYPE html><html lang="en"><body><a href="/list">All pages</a></body></html>'
_BINARY = bytes(range(256)) * 16
_LATIN1_HTML = (
    f'<html><head><meta charset="iso-8859-1"><title>Latin-1</title></head><body><p>{LATIN1_TEXT}</p></body></html>'
).encode("latin-1")
_EPOCH = 1_700_000_000  # fixed Last-Modified base, so validators are stable across runs
_LINE = b"<p>" + b" ".join(w.encode() for w in _VOCABULARY) + b"\n"
_CHUNK = _LINE * (65536 // len(_LINE)) + b" " * (65536 % len(_LINE))  # 64 KiB; 80 make /big


@dataclass(frozen=True)
class SiteConfig:
    """Shape and misbehaviour of the synthetic site; equal configs serve identical sites."""

    pages: int = 300
    per_list_page: int = 50
    page_bytes: int = 20_000
    latency_ms: float = 30.0
    latency_sigma: float = 0.3
    links_per_page: int = 5
    #: List pages also link this many following list pages by number (a numbered pager), besides
    #: rel=next; 0 links only the next one, so list pages can be found only one after another.
    pager: int = 0
    seed: int = 0
    error_rate: float = 0.0
    missing_rate: float = 0.0
    concurrency_limit: int = 0
    #: The body of /robots.txt; empty: /robots.txt answers 404 (no rules, everything allowed).
    robots_txt: str = ""
    #: The first this many requests for /robots.txt answer 503 (unreadable: the host must wait).
    robots_failures: int = 0
    #: "plain": the child pages above, a 74-word vocabulary and `links_per_page` related links;
    #: "docs": pages like a documentation site's (`tests.servers.docs_pages`): words from a
    #: Zipf-distributed vocabulary of `vocabulary` words, sizes spread by `size_sigma`, section
    #: navigation and cross-references instead of `links_per_page`.
    layout: str = "plain"
    vocabulary: int = 5000
    size_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.pages < 0 or self.per_list_page < 1 or self.links_per_page < 0 or self.pager < 0:
            raise ValueError("pages >= 0, per_list_page >= 1, links_per_page >= 0 and pager >= 0 required")
        if min(self.error_rate, self.missing_rate) < 0 or self.error_rate + self.missing_rate > 1:
            raise ValueError("error_rate and missing_rate must be >= 0 and sum to at most 1")
        if self.layout not in ("plain", "docs") or self.vocabulary < 1 or self.size_sigma < 0:
            raise ValueError("layout must be plain or docs, vocabulary >= 1 and size_sigma >= 0")

    @property
    def list_pages(self) -> int:
        """Number of list pages; there is always one, even for an empty site."""
        return max(1, math.ceil(self.pages / self.per_list_page))

    @property
    def list_hops(self) -> int:
        """List pages fetched one after another before the last is known: a chain without a pager."""
        return 1 + math.ceil((self.list_pages - 1) / max(1, self.pager))


def expected_child_paths(config: SiteConfig) -> set[str]:
    """Every child path linked from the list pages (all of them, the missing ones included)."""
    return {f"/page/{i}" for i in range(config.pages)}


def missing_paths(config: SiteConfig) -> set[str]:
    """Child paths that are linked but always answer 404."""
    return {f"/page/{i}" for i in _faults(config)[0]}


def flaky_paths(config: SiteConfig) -> set[str]:
    """Child paths whose first request answers 503 and later ones 200."""
    return {f"/page/{i}" for i in _faults(config)[1]}


def _faults(config: SiteConfig) -> tuple[frozenset[int], frozenset[int]]:
    # One shuffle for both sets keeps them disjoint. Page 0 is spared so that /redirect/<n>,
    # which ends there, always lands on a 200.
    order = list(range(1, config.pages))
    random.Random(f"{config.seed}:faults").shuffle(order)
    n_missing = round(config.pages * config.missing_rate)
    n_flaky = round(config.pages * config.error_rate)
    return frozenset(order[:n_missing]), frozenset(order[n_missing : n_missing + n_flaky])


def child_links(config: SiteConfig, index: int) -> list[int]:
    """Indices of the other child pages that child `index` links to."""
    if config.layout == "docs":
        return docs_links(config, index).all()
    others = max(0, config.pages - 1)
    rng = random.Random(f"{config.seed}:links:{index}")
    picks = rng.sample(range(others), min(config.links_per_page, others))
    return [j + 1 if j >= index else j for j in picks]  # skip over `index` itself


class ChildFields(NamedTuple):
    """What child page `index` shows besides its text: a price (and its currency) and tags."""

    price: str
    currency: str
    tags: list[str]


def child_fields(config: SiteConfig, index: int) -> ChildFields:
    """The price, currency and tags child `index` shows (plain layout): what a crawl's declared
    fields must find there. Some pages have no tags at all."""
    rng = random.Random(f"{config.seed}:fields:{index}")
    price = f"{rng.randint(100, 99_999) / 100:.2f}"
    return ChildFields(price, rng.choice(("EUR", "USD", "GBP")), rng.sample(_VOCABULARY, k=rng.randint(0, 4)))


def _link_href(form: int, index: int, host: str) -> str:
    # Crawlers must resolve all of these to the same /page/<index>.
    forms = (f"../page/{index}", f"http://{host}/page/{index}", f"/page/{index}", f"{index}")
    return forms[form % 4]


def render_list(config: SiteConfig, page: int, host: str) -> bytes:
    """List page `page` (1-based): its children, pagination and noise links."""
    first = (page - 1) * config.per_list_page
    indices = range(first, min(first + config.per_list_page, config.pages))
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
        f"<title>All pages, part {page}</title></head>\n",
        f'<body><a id="top"></a><h1>All pages, part {page}</h1>\n<ul>\n',
    ]
    parts += [f'<li><a href="/page/{i}">Page {i}</a>\n' for i in indices]
    parts.append(
        '</ul>\n<p class=noise><a href="mailto:owner@example.com">Mail us</a> '
        '<a href="javascript:void(0)">Menu</a> <a href="#top">Top</a> '
        '<a href="http://example.com/x">Elsewhere</a>\n'
    )
    if indices:
        again = indices[0]
        parts.append(f'<a href="/page/{again}#section">Again</a> ')
        parts.append(f'<a href="HTTP://{host}/page/{again}">Once more</a>\n')
    if page < config.list_pages:
        href = f"?page={page + 1}" if page % 2 else f"/list?page={page + 1}"
        parts.append(f'<a rel="next" href="{href}">Next</a>\n')
    if config.pager and page < config.list_pages:
        numbers = range(page + 1, min(config.list_pages, page + config.pager) + 1)
        parts.append("<nav class=pager>" + " ".join(f'<a href="/list?page={n}">{n}</a>' for n in numbers) + "</nav>\n")
    parts.append("</body></html>\n")
    return "".join(parts).encode()


def render_child(config: SiteConfig, index: int, host: str) -> bytes:
    """Child page `index`: deliberately sloppy HTML (unclosed <div>, <p>, <li>) near `page_bytes`."""
    if config.layout == "docs":
        return render_docs_child(config, index, host, HIDDEN_TOKEN)
    rng = random.Random(f"{config.seed}:page:{index}")
    title = f"Page {index}: " + " ".join(w.capitalize() for w in rng.choices(_VOCABULARY, k=3))
    description = " ".join(rng.choices(_VOCABULARY, k=12))
    links = enumerate(child_links(config, index))
    related = "".join(f'<li><a href="{_link_href(k, j, host)}">Related {j}</a>\n' for k, j in links)
    shown = child_fields(config, index)
    tags = "".join(f"<li>{tag}\n" for tag in shown.tags)  # left unclosed, like the rest
    head = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f'<meta name="description" content="{description}">\n'
        f'<link rel="canonical" href="http://{host}/page/{index}">\n'
        f"<style>.{HIDDEN_TOKEN} {{ display: none }}</style>\n"
        f'<script>var tracker = "{HIDDEN_TOKEN}";</script>\n</head>\n<body>\n'
        f'<div class=nav><a href="/list">All pages</a> | <a href="#top">Top</a>\n'
        f"<h1>{title}</h1>\n<p class=price data-currency={shown.currency}>{shown.price}\n"
        f"<ul class=tags>\n{tags}</ul>\n<ul class=related>\n{related}</ul>\n"
    )
    tail = (
        f"<script>if (window.x) {{ console.log('{HIDDEN_TOKEN}') }}</script>\n<!-- {HIDDEN_TOKEN} -->\n</body></html>\n"
    )
    parts, size = [head], len(head) + len(tail)
    while size < config.page_bytes:
        paragraph = "<p>" + " ".join(rng.choices(_VOCABULARY, k=rng.randint(40, 120))) + "\n"
        parts.append(paragraph)
        size += len(paragraph)
    parts.append(tail)
    return "".join(parts).encode()


class _Page(NamedTuple):
    body: bytes
    etag: str
    mtime: int
    last_modified: str


def _not_modified(request: web.Request, page: _Page) -> bool:
    # RFC 9110: If-None-Match, when present, takes precedence over If-Modified-Since.
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or page.etag in tags
    since = request.if_modified_since
    return since is not None and page.mtime <= since.timestamp()


def _gzip_bomb() -> bytes:
    """~200 KB of gzip that inflates to `BOMB_BYTES` zeros, built in milliseconds.

    After a full flush deflate forgets its history, so compressing the next identical megabyte
    yields identical bytes: compress one megabyte once and repeat it instead of deflating 200 MB.
    """
    megabyte = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(megabyte) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(BOMB_BYTES // len(megabyte)):
        crc = zlib.crc32(megabyte, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, BOMB_BYTES & 0xFFFFFFFF)
    return header + block * (BOMB_BYTES // len(megabyte)) + deflate.flush() + trailer


def _fixed(status: int, headers: dict[str, str], body: bytes = b"") -> Handler:
    """A handler for a response that never changes."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers, body=body)

    return handler


class DemoSite(LoopbackSite):
    """The synthetic site as an aiohttp server, plus counters of what clients asked for.

    `hits` is keyed by path and query exactly as requested, so `/list` and `/list?page=1` count
    apart; `requests` lists every request as (arrival time.monotonic(), path and query), in order.
    `in_flight`/`max_in_flight` count only admitted requests; those turned away with 429 under
    `concurrency_limit` are counted in `rejected` instead, so `max_in_flight` never exceeds the
    limit.
    """

    def __init__(self, config: SiteConfig | None = None) -> None:
        super().__init__()
        self.config = config or SiteConfig()
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.rejected = 0
        self._retry_statuses: Counter[str] = Counter()  # 503/429 answers, which justify a repeat
        self._rng = random.Random(self.config.seed)
        self._missing, self._flaky = _faults(self.config)
        self._flaked: set[int] = set()
        self._children: dict[tuple[str, int], _Page] = {}
        self._lists: dict[tuple[str, int], bytes] = {}
        self._bomb: bytes | None = None

    def duplicate_paths(self) -> set[str]:
        """Paths requested more often than once plus one per 503/429 they were answered with."""
        return {path for path, n in list(self.hits.items()) if n > 1 + self._retry_statuses[path]}

    def duplicates(self) -> int:
        """How many paths a crawler fetched again without being told to retry."""
        return len(self.duplicate_paths())

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        app.router.add_get("/", _fixed(200, {"Content-Type": HTML}, _ROOT_HTML))
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/list", self._list)
        app.router.add_get(r"/page/{index:0|[1-9]\d*}", self._child)  # one spelling per page
        app.router.add_get("/binary.bin", _fixed(200, {"Content-Type": "application/octet-stream"}, _BINARY))
        app.router.add_get("/latin1", _fixed(200, {"Content-Type": "text/html"}, _LATIN1_HTML))
        app.router.add_get(r"/redirect/{n:\d+}", self._redirect)
        app.router.add_get("/loop", _fixed(302, {"Location": "/loop"}))
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/big", self._big)
        app.router.add_get("/gzipbomb", self._gzipbomb)
        app.router.add_get("/reset", self._reset)
        app.router.add_get(r"/status/{code:\d+}", self._status)
        return app

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.path_qs
        self.hits[key] += 1
        self.requests.append((time.monotonic(), key))
        limit = self.config.concurrency_limit
        if limit and self.in_flight >= limit:
            self.rejected += 1
            self._retry_statuses[key] += 1
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._note_status(key, exc.status)
            raise
        finally:
            self.in_flight -= 1
        self._note_status(key, response.status)
        return response

    def _note_status(self, key: str, status: int) -> None:
        if status in (429, 503):
            self._retry_statuses[key] += 1

    async def _delay(self) -> None:
        if self.config.latency_ms > 0:
            median = self.config.latency_ms / 1000
            await asyncio.sleep(self._rng.lognormvariate(math.log(median), self.config.latency_sigma))

    async def _robots(self, request: web.Request) -> web.Response:
        if self.hits["/robots.txt"] <= self.config.robots_failures:
            return web.Response(status=503, text="robots.txt is down")
        if not self.config.robots_txt:
            return web.Response(status=404, text="no robots.txt")
        return web.Response(text=self.config.robots_txt, content_type="text/plain")

    async def _list(self, request: web.Request) -> web.Response:
        raw = request.query.get("page", "1")
        page = int(raw) if raw.isdigit() else 0
        if not 1 <= page <= self.config.list_pages:
            return web.Response(status=404, text="no such list page")
        await self._delay()
        key = (request.host, page)
        if key not in self._lists:
            self._lists[key] = render_list(self.config, page, request.host)
        return web.Response(body=self._lists[key], headers={"Content-Type": HTML})

    async def _child(self, request: web.Request) -> web.Response:
        index = int(request.match_info["index"])
        if index >= self.config.pages:
            return web.Response(status=404, text="no such page")
        await self._delay()
        if index in self._missing:
            return web.Response(status=404, text="gone")
        if index in self._flaky and index not in self._flaked:
            self._flaked.add(index)
            return web.Response(status=503, text="try again")
        page = self._child_page(request.host, index)
        headers = {"ETag": page.etag, "Last-Modified": page.last_modified}
        if _not_modified(request, page):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = HTML
        return web.Response(body=page.body, headers=headers)

    def _child_page(self, host: str, index: int) -> _Page:
        page = self._children.get((host, index))
        if page is None:
            body = render_child(self.config, index, host)
            mtime = _EPOCH + index * 60
            etag = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
            page = _Page(body, etag, mtime, formatdate(mtime, usegmt=True))
            self._children[(host, index)] = page
        return page

    async def _redirect(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = f"/redirect/{n - 1}" if n > 1 else "/page/0"
        return web.Response(status=302, headers={"Location": target})

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="finally", content_type="text/html")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": HTML})
        await response.prepare(request)
        try:
            for _ in range(BIG_BYTES // len(_CHUNK)):
                await response.write(_CHUNK)
        except ConnectionError:
            pass  # the client hit its size cap and hung up, which is what /big is for
        return response

    async def _gzipbomb(self, request: web.Request) -> web.Response:
        if self._bomb is None:
            self._bomb = _gzip_bomb()
        headers = {"Content-Type": HTML, "Content-Encoding": "gzip"}
        return web.Response(body=self._bomb, headers=headers)

    async def _reset(self, request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0 turns the close into a TCP RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response()  # aiohttp quietly drops a response to a closed connection

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if not 200 <= code <= 599:
            return web.Response(status=404, text="unsupported status")
        return web.Response(status=code, body=b"" if code in (204, 304) else f"status {code}".encode())


class ThreadedSite(ThreadedServer[DemoSite]):
    """A `DemoSite` on its own event loop in a daemon thread.

    Serving thousands of pages a second costs CPU; on a separate loop that cost does not distort
    the latency of the crawler under test, and synchronous callers get a site without a loop.
    """

    thread_name = "demo-site"

    def __init__(self, config: SiteConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(DemoSite(config), host, port)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: serve the site until interrupted."""
    serve_from_command_line(
        argv,
        prog="python -m tests.servers.site",
        description="Serve the synthetic demo site until interrupted.",
        config_type=SiteConfig,
        make_site=DemoSite,
        announce=lambda site, url: f"Serving {site.config.pages} pages at {url}/list",
        default_port=8080,
    )


if __name__ == "__main__":
    main()
