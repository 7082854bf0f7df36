"""What one crawl adds to each of its requests, worked out once per worker and crawl.

A crawl's `headers`, `cookies`, `auth`, `user_agent` and `proxies` (declared in
`pipeline.settings.CrawlSettings`, checked in `pipeline.download.http_options`) become the
header dicts and proxy arguments aiohttp is given, built when a worker first meets the crawl
(`Resources.crawl_fetcher`) and reused for every request after: a request only picks one of
them, and merges in its own few headers (a conditional GET's validators, an API's `Accept`).

Cookies go as a `Cookie` header on each request, never through a cookie jar: the worker's one
session serves every crawl, and a jar would carry one crawl's cookies (or a site's
`Set-Cookie`) into another's requests.

Credentials (basic auth, cookies, credential-like headers) go to the origin of the URL the crawl
queued, never to another origin: when a redirect leads elsewhere, that hop is sent with the
crawl's other headers and its User-Agent only. A proxy's credentials go to the proxy, as
`Proxy-Authorization` on the request itself for an `http://` target (the proxy reads and drops
it) and on the `CONNECT` that opens the tunnel for an `https://` one (inside the tunnel the site
would see it).

The proxies are taken in turn, one per request (each redirect hop is a request); the turn is
kept here, so it belongs to the worker that made this object and to the crawl it is for.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import NamedTuple

import yarl

from pipeline.download.http_options import HIDDEN, is_secret_header
from pipeline.download.robots import product_token
from pipeline.settings import CrawlSettings

Headers = Mapping[str, str]


def basic_auth(user: str, password: str) -> str:
    """The value of an `Authorization` (or `Proxy-Authorization`) header for basic auth.

    UTF-8, as RFC 7617 lets a server ask for and as servers expect now. (aiohttp's `BasicAuth`
    does the same, but is deprecated as a request argument and warns.)
    """
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class Way(NamedTuple):
    """One way out for a crawl's requests: a proxy (or none) with the headers that go with it."""

    proxy: yarl.URL | None
    connect_headers: Headers | None  # the proxy's credentials on a CONNECT (https:// targets)
    # The request's headers: by the target's scheme (through a plain-HTTP proxy the request
    # itself carries the proxy's credentials) and by whether it is the crawl's origin.
    http_same: Headers | None
    http_other: Headers | None
    https_same: Headers | None
    https_other: Headers | None


class CrawlRequests:
    """A crawl's request settings for one worker; `None` from `build` when the crawl sets none."""

    __slots__ = ("_turn", "_ways", "proxy_hosts", "robots_token", "secrets")

    def __init__(
        self, ways: tuple[Way, ...], proxy_hosts: frozenset[str], robots_token: str | None, secrets: tuple[str, ...]
    ) -> None:
        self._ways = ways
        self._turn = 0
        self.proxy_hosts = proxy_hosts
        self.robots_token = robots_token  # None: the worker's own (`fetch.user_agent`)
        self.secrets = secrets  # longest first, so a secret inside another is hidden whole

    @classmethod
    def build(cls, options: CrawlSettings) -> CrawlRequests | None:
        if not (options.headers or options.cookies or options.auth or options.user_agent or options.proxies):
            return None
        secrets: list[str] = []
        same = dict(options.headers)
        secrets += [value for name, value in same.items() if is_secret_header(name)]
        if options.user_agent:
            same["User-Agent"] = options.user_agent
        if options.cookies:
            same["Cookie"] = "; ".join(f"{name}={value}" for name, value in options.cookies.items())
            secrets += [same["Cookie"], *options.cookies.values()]
        if options.auth:
            user, _, password = options.auth.partition(":")
            same["Authorization"] = basic_auth(user, password)
            secrets += [options.auth, password, same["Authorization"]]
        other = {name: value for name, value in same.items() if not is_secret_header(name)}
        ways: list[Way] = []
        hosts: set[str] = set()
        for raw in options.proxies or (None,):
            if raw is None:
                ways.append(Way(None, None, same or None, other or None, same or None, other or None))
                continue
            url = yarl.URL(raw)
            hosts.add((url.host or "").lower())
            if url.user is None and url.password is None:
                ways.append(Way(url, None, same or None, other or None, same or None, other or None))
                continue
            credentials = {"Proxy-Authorization": basic_auth(url.user or "", url.password or "")}
            secrets += [raw, credentials["Proxy-Authorization"]]
            secrets += [s for s in (url.password, url.raw_password) if s]
            ways.append(
                Way(
                    url.with_user(None),
                    credentials,
                    {**same, **credentials},
                    {**other, **credentials},
                    same or None,
                    other or None,
                )
            )
        token = product_token(options.user_agent) if options.user_agent else None
        shown = tuple(sorted({s for s in secrets if s and s != HIDDEN}, key=len, reverse=True))
        return cls(tuple(ways), frozenset(hosts), token or None, shown)

    @property
    def proxied(self) -> bool:
        return self._ways[0].proxy is not None

    def next_way(self) -> Way:
        """The way the next request goes: the next proxy in turn (or the only way there is)."""
        ways = self._ways
        if len(ways) == 1:
            return ways[0]
        turn = self._turn
        self._turn = (turn + 1) % len(ways)
        return ways[turn]

    def scrub(self, text: str) -> str:
        """`text` (an error message) without any of this crawl's credentials in it."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text
