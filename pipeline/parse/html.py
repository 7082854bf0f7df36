"""The parse stage: bytes of an HTML page in, the fields we store and the links we follow out.

selectolax's Lexbor parser is fast enough that parsing on the event loop costs less than
shipping the page to another process (bench/RESULTS.md has the figures); the heavier text
crunching goes to the CPU pool (`pipeline.crunch`). A crawl's declarative fields
(`pipeline.parse.fields`) are read from the same tree.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from pipeline.download.response import Response
from pipeline.errors import InvalidSelector
from pipeline.parse.fields import FieldSpec, FieldValue, extract_fields

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_INVISIBLE = ["script", "style", "noscript", "template", "svg"]


@dataclass(frozen=True)
class ParsedPage:
    title: str | None
    description: str | None
    canonical: str | None
    language: str | None
    base_url: str | None
    links: list[str]
    next_links: list[str]
    text: str  # visible text; the CPU stage counts and fingerprints its words
    fields: dict[str, FieldValue] = field(default_factory=dict)  # the crawl's declared fields, by name

    @property
    def link_count(self) -> int:
        return len(self.links)

    def metadata(self) -> dict[str, Any]:
        """What a page document keeps of the parse (its fields apart: a crawl may have none)."""
        return {
            "title": self.title,
            "description": self.description,
            "canonical": self.canonical,
            "language": self.language,
            "link_count": self.link_count,
        }


def parse_response(
    response: Response,
    *,
    link_selector: str,
    next_selector: str | None = None,
    text: bool = True,
    fields: tuple[FieldSpec, ...] = (),
) -> ParsedPage | None:
    """The parsed page of an HTML response; None for any other content type (stored unparsed)."""
    if not response.is_html:
        return None
    html = decode_html(response.body, response.charset)
    return parse_html(html, link_selector=link_selector, next_selector=next_selector, text=text, fields=fields)


def check_selector(selector: str) -> None:
    """Raise `InvalidSelector` unless selectolax accepts `selector`."""
    try:
        LexborHTMLParser("<html></html>").css(selector)
    except SelectolaxError:
        raise InvalidSelector(f"invalid CSS selector {selector!r}") from None


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(body: bytes, charset: str | None) -> str:
    """Decode with the HTTP charset, else a `<meta charset>` in the head, else UTF-8; never fails."""
    encoding = _known_codec(charset)
    if encoding is None:
        match = _META_CHARSET.search(body[:4096])
        encoding = _known_codec(match.group(1).decode("ascii") if match else None)
    if encoding is None and body.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    return body.decode(encoding or "utf-8", errors="replace")


def _attr(tree: LexborNode | None, selector: str, name: str) -> str | None:
    node = tree.css_first(selector) if tree is not None else None
    if node is None:
        return None
    value = node.attributes.get(name)
    return value.strip() if value and value.strip() else None


def _hrefs(tree: LexborHTMLParser, selector: str) -> list[str]:
    hrefs = []
    for node in tree.css(selector):
        href = node.attributes.get("href")
        if href:
            hrefs.append(href)
    return hrefs


def parse_html(
    html: str,
    *,
    link_selector: str,
    next_selector: str | None = None,
    text: bool = True,
    fields: tuple[FieldSpec, ...] = (),
) -> ParsedPage:
    """Extract metadata, raw link targets, the crawl's `fields` and (unless `text` is false) the
    visible text.

    Links are returned as written (relative); the caller resolves them against `base_url` or the
    page URL, because resolution and scope are crawl decisions, not parsing ones. The text is
    what the CPU stage works on; a crawl without one skips extracting it. Fields are read before
    the text, whose extraction strips scripts and styles from the tree.
    """
    tree = LexborHTMLParser(html)
    # The metadata lives in <head> (the parser moves a stray <title> or <meta> there): searching
    # it alone instead of the whole document makes these lookups cost next to nothing on a large
    # page. <html lang> is the root element's attribute.
    head = tree.head
    title_node = head.css_first("title") if head is not None else None
    title = title_node.text(strip=True) if title_node is not None else None
    links = _hrefs(tree, link_selector)
    next_links = _hrefs(tree, next_selector) if next_selector else []
    base_url = _attr(head, "base[href]", "href")
    description = _attr(head, 'meta[name="description" i]', "content")
    canonical = _attr(head, 'link[rel="canonical" i]', "href")
    root = tree.root
    lang = root.attributes.get("lang") if root is not None and root.tag == "html" else None
    language = lang.strip() if lang and lang.strip() else None
    values = extract_fields(tree, fields) if fields else {}
    return ParsedPage(
        title=title or None,
        description=description,
        canonical=canonical,
        language=language.lower() if language else None,
        base_url=base_url,
        links=links,
        next_links=next_links,
        text=_visible_text(tree) if text else "",
        fields=values,
    )


def _visible_text(tree: LexborHTMLParser) -> str:
    tree.strip_tags(_INVISIBLE)
    body = tree.body
    return body.text(separator=" ", strip=True) if body is not None else ""
