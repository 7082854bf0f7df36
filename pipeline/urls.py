"""URL normalisation: the identity of a page.

Two links name the same page when they normalise to the same string; that string is what the
crawl deduplicates on, what job ids are derived from, what `pages.url` holds and, byte for
byte, what the fetcher requests. Which URLs a crawl follows is `pipeline.schedule.scope`.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable

from yarl import URL

from pipeline.errors import InvalidURL

_DEFAULT_PORTS = {"http": 80, "https": 443}
# yarl encodes a host to IDNA but lets any other ASCII through; none of these can be in a name
# the resolver could look up (and `%` would be an IPv6 zone, meaningless to another machine).
_BAD_HOST = re.compile(r"[\x00-\x20\x7f<>\"'\\{}|^`%/?#@]")


def normalise_url(url: str, base: str | None = None) -> str:
    """Resolve `url` against `base` and bring it to the form aiohttp sends.

    The form is yarl's (aiohttp's own URL type): dot segments removed, percent-encoding of
    unreserved characters decoded (`%7E` -> `~`) and of everything else upper-cased, spaces and
    non-ASCII characters percent-encoded, the host lower-cased and IDNA-encoded (`bücher.de` ->
    `xn--bcher-kva.de`) without a trailing dot, default ports removed, an empty path made `/`
    and the fragment dropped. The fetcher sends this string verbatim, so the URL a crawl
    deduplicates, stores and fetches is one and the same. Raises `InvalidURL` for anything that
    is not http(s) (`mailto:`, `javascript:`, `data:`, `ftp:`) or cannot be parsed.
    """
    return _normalise(url.strip(), base, URL)


def _normalise(url: str, base: str | None, parse_base: Callable[[str], URL]) -> str:
    if not url:
        raise InvalidURL("empty URL")
    try:
        parsed = URL(url)
        if base and not (parsed.scheme and parsed.absolute):
            # A link with a scheme and a host stands alone; anything else is resolved against
            # the page (RFC 3986's resolution, as aiohttp resolves a redirect's Location).
            parsed = parse_base(base).join(parsed)
        return _canonical(parsed, url)
    except InvalidURL:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidURL(f"malformed URL {_short(url)}: {exc}") from None


def _canonical(parsed: URL, raw: str) -> str:
    scheme = parsed.scheme
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(f"unsupported scheme {scheme + ':' if scheme else '(none)'} in {_short(raw)}")
    host = (parsed.raw_host or "").rstrip(".")
    if not host:
        raise InvalidURL(f"no host in {_short(raw)}")
    if _BAD_HOST.search(host):
        raise InvalidURL(f"malformed host in {_short(raw)}")
    if ":" in host:  # IPv6 literal: yarl keeps it without its brackets
        host = f"[{host}]"
    port = parsed.explicit_port
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if parsed.raw_user is not None:
        password = parsed.raw_password
        netloc = f"{parsed.raw_user}{'' if password is None else ':' + password}@{netloc}"
    query = parsed.raw_query_string
    return f"{scheme}://{netloc}{parsed.raw_path or '/'}{'?' + query if query else ''}"


class LinkResolver:
    """`normalise_url` for the links of many pages, remembering links whose result repeats.

    Sites repeat their navigation on every page, and an absolute link (`https://…`) or a
    root-relative one (`/docs/x`) resolves to the same URL on every page of the same origin; a
    path-relative one (`../x`, `x`) to the same URL on every page of the same directory, and a
    link to an anchor of the page (`#x`) is the page itself. Normalising costs far more than a
    lookup. Other links (a query alone, another scheme) are resolved afresh, against the page's
    URL parsed once for all its links. Bounded: the least recently used entries are dropped
    beyond `size`.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._known: OrderedDict[tuple[str, str], str | InvalidURL] = OrderedDict()
        self._base: tuple[str, URL] | None = None

    def resolve(self, href: str, base: str) -> str:
        """What `normalise_url(href, base)` returns (or raises), for a normalised `base`."""
        href = href.strip()  # as normalise_url does, before deciding what the result depends on
        if href.startswith("#") and "\t" not in href and "\n" not in href and "\r" not in href:
            return base  # a link to an anchor of the page itself (an empty link is refused, as before)
        key = _reusable_key(href, base)
        if key is None:
            return _normalise(href, base, self._parse_base)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        else:
            try:
                known = _normalise(href, base, self._parse_base)
            except InvalidURL as exc:
                known = exc
            self._known[key] = known
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        if isinstance(known, InvalidURL):
            raise InvalidURL(str(known))
        return known

    def _parse_base(self, base: str) -> URL:
        """The page's URL, parsed once for all the relative links on it."""
        if self._base is None or self._base[0] != base:
            self._base = (base, URL(base))
        return self._base[1]


def _reusable_key(href: str, base: str) -> tuple[str, str] | None:
    """The part of `base` that `href` resolves against, with `href`; None if that is all of it.

    An absolute link needs only the base's scheme, a root-relative one its origin, a
    path-relative one (`os.html`, `../faq/index.html`, as generated documentation writes every
    link) the base's directory: the base's last segment and query play no part in resolving it
    (RFC 3986, 5.2.2). A link's fragment plays no part in any result. Not reused: links with tabs
    or newlines, which are dropped before parsing (a tab between two slashes makes a
    root-relative link host-relative), "http://" links with no host, which resolve against the
    base, links of another scheme, and links that are a query alone, which depend on all of the
    base.
    """
    if "\t" in href or "\n" in href or "\r" in href:
        return None
    link = href.partition("#")[0]
    if href.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        after = href[href.index("//") + 2 : href.index("//") + 3]
        return (base[: base.find(":")], link) if after and after not in "/?#" else None
    if href.startswith("/"):
        return (_origin(base), link) if not href.startswith("//") else None
    if not link or href[0] == "?" or ":" in link.split("/", 1)[0].split("?", 1)[0]:
        return None
    path = base.split("?", 1)[0]
    return (path[: path.rfind("/") + 1], link)


def _origin(url: str) -> str:
    """`scheme://host[:port]` of a normalised URL (whose path always starts with `/`)."""
    return url[: url.find("/", url.find("//") + 2)]


def url_host(url: str) -> str:
    """The host (without port) of a normalised URL, the key of per-host limits and of scope.

    Read off the string rather than parsed: it is asked for every link a page carries, and a
    general URL parser costs as much as normalising the link did.
    """
    start = url.find("//") + 2
    end = len(url)
    for mark in "/?#":
        found = url.find(mark, start, end)
        if found >= 0:
            end = found
    host = url[start:end].rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.partition(":")[0].lower()


def url_digest(url: str) -> str:
    """A short stable digest of a URL, used in job ids (Redis keys stay small whatever the URL)."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _short(url: str, limit: int = 120) -> str:
    return repr(url if len(url) <= limit else url[:limit] + "...")
