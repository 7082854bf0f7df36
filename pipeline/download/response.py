"""What a GET brings back: status, body and its response headers, after redirects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

HTML_TYPES = ("text/html", "application/xhtml+xml")
# What a page keeps of its response headers, names and values together: enough for every
# header a replay needs (content type, encoding, language, validators, links), while a site
# sending hundreds of cookies or a megabyte of header cannot bloat its document.
MAX_HEADER_BYTES = 16 * 1024

HeaderValue = str | list[str]


def is_html(content_type: str) -> bool:
    """Whether a body of this media type (lower-cased, no parameters) is parsed as HTML."""
    return content_type in HTML_TYPES


# Session credentials the site hands this crawl: a replay does not need them, and pages (and so
# exports) must not carry them. Left out without a trace, as if never sent.
SECRET_RESPONSE_HEADERS = frozenset({"set-cookie", "set-cookie2"})


def kept_headers(
    items: Iterable[tuple[str, str]], limit: int = MAX_HEADER_BYTES
) -> tuple[dict[str, HeaderValue], tuple[str, ...]]:
    """A response's headers as a page keeps them, and the names of those dropped for size.

    Names are lower-cased; a header sent once is a string, one sent several times (Link, Vary...)
    the list of its values in the order they came, so nothing is merged that
    cannot be. Headers are kept in the order they came while names and values together stay
    within `limit` bytes (UTF-8); a value that does not fit is dropped whole, never cut, and its
    header's name is reported so the document says what is missing. So is a name MongoDB could
    not take as a key (one starting with `$` or holding a dot, both legal in HTTP): one odd
    header must not make the page's document unwritable.
    """
    headers: dict[str, HeaderValue] = {}
    dropped: list[str] = []
    size = 0
    for raw_name, value in items:
        name = raw_name.lower()
        if name in SECRET_RESPONSE_HEADERS:
            continue
        cost = _size(value)
        known = headers.get(name)
        if known is None:
            if name.startswith("$") or "." in name:
                if name not in dropped:
                    dropped.append(name)
                continue
            cost += _size(name)
        if size + cost > limit:
            if name not in dropped:
                dropped.append(name)
            continue
        size += cost
        if known is None:
            headers[name] = value
        elif isinstance(known, list):
            known.append(value)
        else:
            headers[name] = [known, value]
    return headers, tuple(dropped)


def _size(text: str) -> int:
    # Header text is nearly always ASCII, whose length is its size: no copy to measure it.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class Response:
    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    redirects: int
    elapsed_ms: float
    headers: dict[str, HeaderValue] = field(default_factory=dict)  # see `kept_headers`
    headers_dropped: tuple[str, ...] = ()  # names of headers left out for size

    @property
    def is_html(self) -> bool:
        return is_html(self.content_type)

    def header(self, name: str) -> str | None:
        """The value of header `name` (lower-case), the first one if it came several times."""
        value = self.headers.get(name)
        if isinstance(value, list):
            return value[0] if value else None
        return value
