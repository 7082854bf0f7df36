"""Which URLs a crawl follows: its host scope, then its allow and deny patterns.

Scope (`crawl.scope`):
- `host`: the start URL's host only;
- `domain`: every host of the start host's registrable domain, found with the public-suffix
  list (`a.example.co.uk` and `b.example.co.uk` share `example.co.uk`; `other.co.uk` does not;
  `alice.github.io` and `bob.github.io` are different sites, as the list's private section
  says). A host with no registrable domain (an IP address, `localhost`) is its own domain;
- `any`: every host.

Patterns (`crawl.allow`, `crawl.deny`) are regular expressions searched (`re.search`) in the
canonical URL (`pipeline.urls.normalise_url`: punycode host, yarl's percent-encoding). A URL
must match at least one `allow` pattern if any is given, and no `deny` pattern: deny wins. They
apply to the pages a crawl discovers (child links, next list pages, a sitemap's pages), not to
what the crawl is told to read (the start URL, `--sitemap` URLs) nor to the sitemap files an
index or robots.txt points to, which only need to be within the host scope.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import InvalidPattern
from pipeline.urls import url_host

SCOPES = ("host", "domain", "any")
_SITE_CACHE_SIZE = 4096


def check_pattern(pattern: str) -> None:
    """Raise `InvalidPattern` unless `pattern` compiles as a Python regular expression."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidPattern(f"invalid regular expression {pattern!r}: {exc}") from None


class PublicSuffixes:
    """The public-suffix list of tldextract's bundled snapshot: never fetched, never cached on disk.

    Loading it imports tldextract and reads the snapshot, which takes a moment: `load` is
    blocking, so a worker calls it in a thread, once, when a crawl first needs it.
    """

    def __init__(self) -> None:
        self._extract: Any = None

    @property
    def loaded(self) -> bool:
        return self._extract is not None

    def load(self) -> None:
        if self._extract is not None:
            return
        import tldextract

        # No URL to fetch a fresher list from and no cache directory: the snapshot shipped with
        # the package is read, nothing leaves the machine and nothing is written.
        extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), include_psl_private_domains=True)
        extract.extract_str("example.com")  # reads the snapshot now rather than on first use
        self._extract = extract

    def site(self, host: str) -> str:
        """The registrable domain of `host` (`example.co.uk` for `a.example.co.uk`), else `host`."""
        if self._extract is None:
            raise RuntimeError("PublicSuffixes.load() was not called")
        return self._extract.extract_str(host).top_domain_under_public_suffix or host


class Scope:
    """One crawl's scope, compiled once and asked about every URL the crawl discovers."""

    def __init__(
        self,
        start_url: str,
        scope: str = "host",
        allow: tuple[str, ...] = (),
        deny: tuple[str, ...] = (),
        suffixes: PublicSuffixes | None = None,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "domain" and (suffixes is None or not suffixes.loaded):
            raise ValueError("a domain scope needs loaded PublicSuffixes")
        self.kind = scope
        self._start_host = url_host(start_url)
        self._suffixes = suffixes
        self._start_site = suffixes.site(self._start_host) if suffixes is not None and scope == "domain" else ""
        self._allow = [re.compile(p) for p in allow]
        self._deny = [re.compile(p) for p in deny]
        # Hosts already decided, for the domain scope (a suffix lookup costs more than a link's
        # resolution). Emptied when full: a crawl sees few hosts, a hostile page many.
        self._hosts: dict[str, bool] = {}

    def follows_host(self, url: str) -> bool:
        """Whether `url`'s host is within the crawl's host or domain scope."""
        if self.kind == "any":
            return True
        host = url_host(url)
        if host == self._start_host:
            return True
        if self.kind == "host" or self._suffixes is None:
            return False
        known = self._hosts.get(host)
        if known is None:
            if len(self._hosts) >= _SITE_CACHE_SIZE:
                self._hosts.clear()
            known = self._hosts[host] = self._suffixes.site(host) == self._start_site
        return known

    def allows(self, url: str) -> bool:
        """Whether `url` passes the allow and deny patterns (deny wins)."""
        if self._allow and not any(p.search(url) for p in self._allow):
            return False
        return not any(p.search(url) for p in self._deny)

    def follows(self, url: str) -> bool:
        """Whether the crawl follows the page at `url`: within the host scope and the patterns."""
        return self.follows_host(url) and self.allows(url)
