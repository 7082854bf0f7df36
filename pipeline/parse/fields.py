"""Declarative fields: `NAME=CSS` pairs a crawl extracts from every HTML page it parses.

A field's spec is a CSS selector, optionally followed by `@attribute` (the attribute's value
instead of the element's text) and by `[]` (every match, as a list, instead of the first one):

    title=h1                       the text of the first <h1>
    image=img.hero@src             the src of the first matching <img>
    tags=.tags a[]                 the text of every link under .tags
    links=article a@href[]         the href of every link in the article

Specs are checked when a crawl is submitted (`check_field`), so a bad selector is refused once,
with the field's name, instead of failing page after page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from pipeline.errors import InvalidSelector

# A field's name is a key of the page document's `fields` object: MongoDB refuses keys that start
# with `$` or hold a dot, and exports use the name as a column.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_ATTRIBUTE = re.compile(r"@([A-Za-z_:][A-Za-z0-9_:.\-]*)$")
_MANY = "[]"

FieldValue = str | list[str] | None


@dataclass(frozen=True)
class FieldSpec:
    """One field: where it is on the page and how much of it is wanted."""

    name: str
    selector: str
    attribute: str | None = None  # None: the element's text
    many: bool = False  # every match as a list, not the first one

    def extract(self, tree: LexborHTMLParser) -> FieldValue:
        if self.many:
            return [value for node in tree.css(self.selector) if (value := self._value(node)) is not None]
        node = tree.css_first(self.selector)
        return self._value(node) if node is not None else None

    def _value(self, node: LexborNode) -> str | None:
        if self.attribute is None:
            return " ".join(node.text(separator=" ", strip=True).split())
        value = node.attributes.get(self.attribute)
        return value.strip() if isinstance(value, str) else None


def parse_field(name: str, spec: str) -> FieldSpec:
    """The `FieldSpec` of `name=spec`; raises `InvalidSelector` naming the field if it cannot work."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidSelector(
            f"field name {name!r}: use letters, digits, '_' and '-' (64 at most), starting with a letter or '_'"
        )
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidSelector(f"field {name}: empty selector")
    selector = spec.strip()
    many = selector.endswith(_MANY)
    if many:
        selector = selector[: -len(_MANY)].rstrip()
    attribute = None
    match = _ATTRIBUTE.search(selector)
    if match is not None:
        attribute = match.group(1)
        selector = selector[: match.start()].rstrip()
    if not selector:
        raise InvalidSelector(f"field {name}: no CSS selector before {spec.strip()!r}")
    try:
        LexborHTMLParser("<html></html>").css(selector)
    except SelectolaxError:
        raise InvalidSelector(f"field {name}: invalid CSS selector {selector!r}") from None
    return FieldSpec(name=name, selector=selector, attribute=attribute, many=many)


def check_field(item: tuple[str, str]) -> None:
    """The settings' check of one `fields` entry (raises `InvalidSelector`, a `ValueError`)."""
    parse_field(*item)


def parse_fields(fields: Mapping[str, str]) -> tuple[FieldSpec, ...]:
    return tuple(parse_field(name, spec) for name, spec in fields.items())


def extract_fields(tree: LexborHTMLParser, specs: tuple[FieldSpec, ...]) -> dict[str, FieldValue]:
    """Every field's value on the page: None (or []) where the selector matches nothing."""
    return {spec.name: spec.extract(tree) for spec in specs}
