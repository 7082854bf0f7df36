"""The download stage: one GET, with limits, timeouts, redirects, a size cap and an SSRF guard.

`Fetcher.get` either returns a `Response` (any final status, 2xx or not) or raises `FetchError`
saying whether trying again could help. Deciding *when* to retry belongs to the settle stage
(`pipeline.settle.retries`); this module only classifies. Per-host limits are in
`pipeline.download.host_limits`, the SSRF guard in `pipeline.download.ssrf_guard`, what a crawl
adds to its requests (headers, cookies, auth, User-Agent, proxies) in
`pipeline.download.crawl_requests`: `Fetcher.for_crawl` gives the crawl's view of the worker's
fetcher, sharing its session, limits and robots.txt records.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import time

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from pipeline.download.crawl_requests import CrawlRequests, Headers
from pipeline.download.host_limits import AdaptiveLimiter, SlotReport
from pipeline.download.response import Response, kept_headers
from pipeline.download.robots import RobotsCache, origin_of
from pipeline.download.ssrf_guard import GuardedResolver, blocked_cause, check_host
from pipeline.errors import BlockedAddress, FetchError, InvalidURL, PermanentFailure
from pipeline.observe.metrics import Recorder
from pipeline.settings import FetchSettings
from pipeline.urls import normalise_url, url_host

_REDIRECTS = {301, 302, 303, 307, 308}
_OVERLOAD = {429, 503, 504}
_CHUNK = 64 * 1024


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def conditional_headers(validators: dict[str, str]) -> dict[str, str]:
    """The headers of a conditional GET from a page's stored ETag and Last-Modified."""
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = validators["etag"]
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = validators["last_modified"]
    return headers


def create_session(settings: FetchSettings, guard: GuardedResolver | None = None) -> aiohttp.ClientSession:
    """The worker's one HTTP session, its connector sized to the concurrency it is allowed.

    `guard` is the SSRF guard its connections resolve through; the worker's `Fetcher` is given
    the same one (it tells it which hosts are proxies).
    """
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency,
        # The adaptive limiter decides per-host concurrency; a connector cap below it would queue
        # requests silently, which reads as rising latency and makes the limiter back off.
        limit_per_host=0,
        resolver=guard or GuardedResolver(settings.allow_private_networks),
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        ),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
        auto_decompress=True,
        raise_for_status=False,
        # Cookies from one crawled site must not leak into requests to another, nor one crawl's
        # into another's: a crawl's own cookies go as a header on each of its requests.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class Fetcher:
    """GETs pages through the shared session under the shared limits, as robots.txt allows.

    `robots` (with `fetch.obey_robots`) checks every URL and redirect hop against its origin's
    robots.txt before it is requested, and spaces requests by the origin's Crawl-delay; a call
    with `robots=False` (a crawl of a site you own) skips both.

    The worker's fetcher sends the worker's defaults; `for_crawl` makes a crawl's own view.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        limiter: AdaptiveLimiter,
        settings: FetchSettings,
        metrics: Recorder | None = None,
        robots: RobotsCache | None = None,
        guard: GuardedResolver | None = None,
    ) -> None:
        self._session = session
        self._limiter = limiter
        self._settings = settings
        self._metrics = metrics or Recorder()
        self._robots = robots if settings.obey_robots else None
        self._guard = guard or GuardedResolver(settings.allow_private_networks)
        self._http: CrawlRequests | None = None

    def for_crawl(self, http: CrawlRequests | None) -> Fetcher:
        """This fetcher as a crawl with these request settings uses it (itself when there are none).

        The view shares everything but `http`: one session, one set of limits, one robots.txt
        cache per worker. The crawl's proxies become hosts the SSRF guard lets connections
        reach (see `pipeline.download.ssrf_guard`).
        """
        if http is None:
            return self
        self._guard.trust_proxies(http.proxy_hosts)
        view = copy.copy(self)
        view._http = http
        return view

    @property
    def obeys_robots(self) -> bool:
        """Whether this worker reads robots.txt at all (`fetch.obey_robots`)."""
        return self._robots is not None

    async def sitemaps(self, url: str) -> list[str]:
        """The `Sitemap:` URLs in the robots.txt of `url`'s origin (read and shared like any robots.txt)."""
        robots = self._robots
        if robots is None:
            return []
        return await robots.sitemaps(url, self._robots_txt)

    async def _robots_txt(self, url: str) -> Response:
        return await self.get(url, robots=False)

    async def get_ok(
        self, url: str, *, priority: bool = False, validators: dict[str, str] | None = None, robots: bool = True
    ) -> Response:
        """A 2xx response, or 304 to a conditional GET; any other status is a `PermanentFailure`."""
        response = await self.get(
            url, conditional_headers(validators) if validators else None, priority=priority, robots=robots
        )
        if validators and response.status == 304:
            return response
        if not 200 <= response.status < 300:
            raise PermanentFailure(f"HTTP {response.status}", response.status)
        return response

    async def get(
        self, url: str, headers: dict[str, str] | None = None, *, priority: bool = False, robots: bool = True
    ) -> Response:
        """GET `url`, following redirects; `priority` requests (list pages) are served first.

        `url` is canonical (`normalise_url`), and is requested byte for byte as it is: the URL
        a crawl deduplicated and stores is the one the site receives. Redirect targets are
        normalised the same way. Raises `DisallowedByRobots` (nothing requested) when robots.txt
        disallows `url` or a hop.
        """
        started = time.perf_counter()
        current = url
        visited = {url}
        obey = self._robots if robots else None
        http = self._http
        token = http.robots_token if http is not None else None
        origin = origin_of(url) if http is not None else ""
        for hop in range(self._settings.max_redirects + 1):
            delay = self._settings.per_host_delay
            if obey is not None:
                delay = max(delay, await obey.check(current, self._robots_txt, token))
            if http is None:
                status, resp_headers, body, truncated = await self._request(current, headers, priority, delay)
            else:
                # Each hop is a request of its own: the next proxy, and the crawl's credentials
                # only while it stays on the origin the crawl asked for.
                way = http.next_way()
                same = hop == 0 or origin_of(current) == origin
                if current.startswith("https:"):
                    base, connect = (way.https_same if same else way.https_other), way.connect_headers
                else:
                    base, connect = (way.http_same if same else way.http_other), None
                sent = base if not headers else {**base, **headers} if base else headers
                status, resp_headers, body, truncated = await self._request(
                    current, sent, priority, delay, way.proxy, connect
                )
            location = resp_headers.get("Location") if status in _REDIRECTS else None
            if location is None:
                return self._response(url, current, status, resp_headers, body, truncated, hop, started)
            try:
                target = normalise_url(location, current)
            except InvalidURL as exc:
                raise FetchError(f"bad redirect from {current}: {exc}", retryable=False, status=status) from None
            if target in visited:
                raise FetchError(f"redirect loop at {target}", retryable=False, status=status)
            visited.add(target)
            current = target
        raise FetchError(f"more than {self._settings.max_redirects} redirects", retryable=False, status=status)

    async def _request(
        self,
        url: str,
        headers: Headers | None,
        priority: bool = False,
        delay: float = 0.0,
        proxy: URL | None = None,
        proxy_headers: Headers | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes, bool]:
        host = url_host(url)
        try:
            check_host(host, self._settings.allow_private_networks)
            if proxy is not None or self._guard.is_proxy_host(host):
                # A proxy resolves the name itself: all that can be checked here is what it
                # resolves to here (see `GuardedResolver.check_name`).
                await self._guard.check_name(host)
            async with self._limiter.slot(host, priority=priority, delay=delay) as report:
                return await self._exchange(url, headers, report, proxy, proxy_headers)
        except FetchError:
            raise
        except BlockedAddress as exc:
            raise FetchError(str(exc), retryable=False) from None
        except TimeoutError:
            raise FetchError("timed out", retryable=True) from None
        except aiohttp.TooManyRedirects:
            raise FetchError("too many redirects", retryable=False) from None
        except aiohttp.InvalidURL as exc:
            raise FetchError(self.shown(f"invalid URL: {exc}"), retryable=False) from None
        except (aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as exc:
            raise FetchError(self.shown(f"truncated or corrupt body: {exc}"), retryable=True) from None
        except aiohttp.ClientResponseError as exc:
            # Malformed status line or headers: the server is broken in a way a retry rarely fixes,
            # but one retry is cheap and covers half-written responses. (A proxy refusing a
            # CONNECT lands here too, its status kept.)
            raise FetchError(
                self.shown(f"bad response: {exc.message}"), retryable=True, status=exc.status or None
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            blocked = blocked_cause(exc)
            if blocked is not None:
                raise FetchError(str(blocked), retryable=False) from None
            raise FetchError(self.shown(f"connection error: {type(exc).__name__}: {exc}"), retryable=True) from None

    def shown(self, reason: str) -> str:
        """A failure's reason as it may be recorded and shown: without the crawl's credentials."""
        return self._http.scrub(reason) if self._http is not None else reason

    async def _exchange(
        self,
        url: str,
        headers: Headers | None,
        report: SlotReport,
        proxy: URL | None = None,
        proxy_headers: Headers | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes, bool]:
        """One request and response, telling the host's concurrency controller how it went."""
        started = time.perf_counter()
        try:
            # Already in yarl's form: aiohttp is told not to encode it again, so what it sends
            # is exactly this string (a non-canonical one would be sent as it is, too).
            target = URL(url, encoded=True)
            async with self._session.get(
                target, allow_redirects=False, headers=headers, proxy=proxy, proxy_headers=proxy_headers
            ) as resp:
                latency = time.perf_counter() - started
                self._metrics.response(resp.status, latency)
                if resp.status == 429 or resp.status >= 500:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    # 429, 503 and 504 say "too much": back off. Other 5xx are the page's fault.
                    if resp.status in _OVERLOAD:
                        report.overload(retry_after)
                    else:
                        report.error()
                    raise FetchError(f"HTTP {resp.status}", retryable=True, status=resp.status, retry_after=retry_after)
                report.success(latency)
                if resp.status in _REDIRECTS:
                    return resp.status, resp.headers, b"", False
                body, truncated = await self._read_capped(resp)
                return resp.status, resp.headers, body, truncated
        except TimeoutError:
            report.overload()
            raise
        except (aiohttp.ClientError, OSError):
            report.error()
            raise

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        """Read at most `max_body_bytes` of the (decompressed) body; a gzip bomb stops at the cap."""
        cap = self._settings.max_body_bytes
        declared = resp.content_length
        if declared is not None and declared <= cap and "Content-Encoding" not in resp.headers:
            body = await resp.content.readexactly(declared) if declared else b""
            return body, False
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            room = cap - size
            if len(chunk) >= room:
                chunks.append(chunk[:room])
                return b"".join(chunks), len(chunk) > room or not resp.content.at_eof()
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False

    def _response(
        self,
        url: str,
        final_url: str,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        truncated: bool,
        redirects: int,
        started: float,
    ) -> Response:
        raw_type = headers.get("Content-Type", "")
        media, _, params = raw_type.partition(";")
        charset = None
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip("\"' ").lower()
        kept, dropped = kept_headers(headers.items())
        return Response(
            url=url,
            final_url=final_url,
            status=status,
            content_type=media.strip().lower(),
            charset=charset,
            body=body,
            truncated=truncated,
            redirects=redirects,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            headers=kept,
            headers_dropped=dropped,
        )
