"""URL normalisation and crawl scope: the identity of a page.

Two links name the same page when they normalise to the same string; that string is what the
crawl deduplicates on, what job ids are derived from and what `pages.url` holds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from pipeline.errors import InvalidURL

Scope = Literal["host", "domain", "any"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str, base: str | None = None) -> str:
    """Resolve `url` against `base` and bring it to canonical form.

    Relative links are resolved, the fragment dropped, scheme and host lower-cased, default
    ports removed and an empty path made `/`. Raises `InvalidURL` for anything that is not
    http(s) (`mailto:`, `javascript:`, `data:`, `ftp:`) or cannot be parsed.
    """
    url = url.strip()
    if not url:
        raise InvalidURL("empty URL")
    try:
        absolute = urljoin(base, url) if base else url
        parts = urlsplit(absolute)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidURL(f"unsupported scheme {scheme + ':' if scheme else '(none)'} in {_short(url)}")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise InvalidURL(f"no host in {_short(url)}")
        port = parts.port
    except ValueError as exc:
        if isinstance(exc, InvalidURL):
            raise
        raise InvalidURL(f"malformed URL {_short(url)}: {exc}") from None
    if any(c in host for c in " <>\"'\\{}|^`") or "%" in host:
        raise InvalidURL(f"malformed host in {_short(url)}")
    if ":" in host:  # IPv6 literal: urlsplit strips the brackets, put them back
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


class LinkResolver:
    """`normalise_url` for the links of many pages, remembering links whose result repeats.

    Sites repeat their navigation on every page, and an absolute link (`https://…`) or a
    root-relative one (`/docs/x`) resolves to the same URL on every page of the same origin;
    normalising costs far more than a lookup. Relative links (`../x`, `x`)
    depend on the page's path and are always resolved afresh. Bounded: the least recently used
    entries are dropped beyond `size`.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._known: OrderedDict[tuple[str, str], str | InvalidURL] = OrderedDict()

    def resolve(self, href: str, base: str) -> str:
        """What `normalise_url(href, base)` returns (or raises), for a normalised `base`."""
        href = href.strip()  # as normalise_url does, before deciding what the result depends on
        key = _reusable_key(href, base)
        if key is None:
            return normalise_url(href, base)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        else:
            try:
                known = normalise_url(href, base)
            except InvalidURL as exc:
                known = exc
            self._known[key] = known
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        if isinstance(known, InvalidURL):
            raise InvalidURL(str(known))
        return known


def _reusable_key(href: str, base: str) -> tuple[str, str] | None:
    """The part of `base` that `href` resolves against, with `href`; None if that is all of it.

    An absolute link needs only the base's scheme, a root-relative one its origin. Not reused:
    links with tabs or newlines, which urllib drops before parsing (a tab between two slashes
    makes a root-relative link host-relative), and "http://" links with no host, which urllib
    resolves against a base of the same scheme.
    """
    if "\t" in href or "\n" in href or "\r" in href:
        return None
    if href.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        after = href[href.index("//") + 2 : href.index("//") + 3]
        # urljoin treats an absolute link of the base's own scheme slightly differently (it
        # drops an empty ";" parameter), so the base's scheme is part of the key.
        return (base[: base.find(":")], href) if after and after not in "/?#" else None
    if href.startswith("/") and not href.startswith("//"):
        return (_origin(base), href)
    return None


def _origin(url: str) -> str:
    """`scheme://host[:port]` of a normalised URL (whose path always starts with `/`)."""
    return url[: url.find("/", url.find("//") + 2)]


def url_host(url: str) -> str:
    """The host (without port) of a normalised URL, the key of per-host limits."""
    return (urlsplit(url).hostname or "").lower()


def in_scope(url: str, start_url: str, scope: Scope | str) -> bool:
    """Whether a crawl that started at `start_url` may follow `url`.

    `host`: the same host only; `domain`: the start host and its subdomains (a leading `www.`
    of the start host is ignored); `any`: everything.
    """
    if scope == "any":
        return True
    host, start = url_host(url), url_host(start_url)
    if scope == "host":
        return host == start
    root = start.removeprefix("www.")
    return host == root or host.endswith("." + root)


def url_digest(url: str) -> str:
    """A short stable digest of a URL, used in job ids (Redis keys stay small whatever the URL)."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _short(url: str, limit: int = 120) -> str:
    return repr(url if len(url) <= limit else url[:limit] + "...")
