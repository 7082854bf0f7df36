"""Declarative fields: spec parsing and extraction, and the parse stage returning them (pure functions)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from pipeline.download.response import Response
from pipeline.errors import InvalidSelector
from pipeline.parse.fields import FieldSpec, extract_fields, parse_field, parse_fields
from pipeline.parse.html import parse_html, parse_response

PAGE = """<html><head><title>T</title></head><body>
<h1>  The   headline </h1>
<img class="hero" src="/hero.png"><img src="/other.png">
<ul class="tags"><li><a href="/t/a">alpha</a></li><li><a href="/t/b">beta</a></li><li><a>gamma</a></li></ul>
</body></html>"""


def test_spec_forms() -> None:
    assert parse_field("t", "h1") == FieldSpec("t", "h1")
    assert parse_field("i", " img.hero@src ") == FieldSpec("i", "img.hero", attribute="src")
    assert parse_field("tags", ".tags a[]") == FieldSpec("tags", ".tags a", many=True)
    assert parse_field("hrefs", ".tags a@href[]") == FieldSpec("hrefs", ".tags a", attribute="href", many=True)
    # Brackets of an attribute selector are part of the selector, not the list suffix.
    assert parse_field("x", "a[href]") == FieldSpec("x", "a[href]")


def test_extraction_matches_the_page() -> None:
    specs = parse_fields(
        {
            "headline": "h1",
            "hero": "img.hero@src",
            "tags": ".tags a[]",
            "tag_links": ".tags a@href[]",
            "missing": "table td",
            "missing_list": "table td[]",
        }
    )
    assert extract_fields(LexborHTMLParser(PAGE), specs) == {
        "headline": "The headline",
        "hero": "/hero.png",
        "tags": ["alpha", "beta", "gamma"],
        "tag_links": ["/t/a", "/t/b"],  # the <a> without href has no value
        "missing": None,
        "missing_list": [],
    }


@pytest.mark.parametrize(
    ("name", "spec", "reason"),
    [
        ("t", "h1[", "invalid CSS selector"),
        ("t", "", "empty selector"),
        ("t", "@src", "no CSS selector"),
        ("t", "div >> p", "invalid CSS selector"),
        ("has.dot", "h1", "field name"),
        ("$x", "h1", "field name"),
        ("", "h1", "field name"),
    ],
)
def test_bad_specs_are_refused_with_the_field_name(name: str, spec: str, reason: str) -> None:
    with pytest.raises(InvalidSelector, match=reason):
        parse_field(name, spec)


@given(st.lists(st.text(alphabet="abc xyz<>&", max_size=20), max_size=8))
def test_every_match_is_listed_in_order(texts: list[str]) -> None:
    from html import escape

    html = "".join(f"<p class=v>{escape(t)}</p>" for t in texts)
    (spec,) = parse_fields({"v": "p.v[]"})
    assert extract_fields(LexborHTMLParser(html), (spec,)) == {"v": [" ".join(t.split()) for t in texts]}


def test_the_parse_stage_returns_the_crawls_fields() -> None:
    specs = parse_fields({"headline": "h1", "tags": ".tags a[]", "hero": "img.hero@src"})
    page = parse_html(PAGE, link_selector="a[href]", fields=specs)
    assert page.fields == {"headline": "The headline", "tags": ["alpha", "beta", "gamma"], "hero": "/hero.png"}
    assert page.links == ["/t/a", "/t/b"]  # the rest of the parse is as before
    # A crawl without fields gets none, and its page document no `fields`.
    assert parse_html(PAGE, link_selector="a[href]").fields == {}


def test_fields_are_read_before_the_text_strips_scripts() -> None:
    """The visible text leaves out <script> and <noscript>; a field may still want them."""
    html = '<html><body><p>shown</p><script type="application/ld+json">{"sku": 7}</script></body></html>'
    specs = parse_fields({"data": "script[type='application/ld+json']"})
    page = parse_html(html, link_selector="a[href]", fields=specs)
    assert page.fields == {"data": '{"sku": 7}'}
    assert "sku" not in page.text and "shown" in page.text


def test_response_fields_only_for_html() -> None:
    specs = parse_fields({"headline": "h1"})
    html = Response("http://h.test/", "http://h.test/", 200, "text/html", None, PAGE.encode(), False, 0, 1.0)
    assert (parsed := parse_response(html, link_selector="a", fields=specs)) is not None
    assert parsed.fields == {"headline": "The headline"}
    binary = dataclasses.replace(html, content_type="application/pdf")
    assert parse_response(binary, link_selector="a", fields=specs) is None
