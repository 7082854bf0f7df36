"""What a page document holds: response headers, declared fields, and what a replay changes."""

from __future__ import annotations

from typing import Any

from pipeline.download.response import Response, kept_headers
from pipeline.parse.fields import parse_fields
from pipeline.parse.html import parse_response
from pipeline.store.documents import page_document, reprocessed_document

HTML = b"<html><head><title>T</title></head><body><h1>Head</h1><p class=price>9.99</p></body></html>"


def _response(header_items: list[tuple[str, str]]) -> Response:
    headers, dropped = kept_headers(header_items)
    return Response(
        "http://h.test/p", "http://h.test/p", 200, "text/html", "utf-8", HTML, False, 0, 1.0, headers, dropped
    )


def _document(response: Response, fields: dict[str, str]) -> dict[str, Any]:
    parsed = parse_response(response, link_selector="a[href]", fields=parse_fields(fields))
    return page_document("c1", 1, 1, response, "0" * 64, "k", "file:///b", parsed, "none", None)


def test_the_document_keeps_the_response_headers() -> None:
    response = _response([("Content-Type", "text/html; charset=utf-8"), ("ETag", '"e"'), ("Vary", "a"), ("Vary", "b")])
    document = _document(response, {})
    assert document["headers"] == {"content-type": "text/html; charset=utf-8", "etag": '"e"', "vary": ["a", "b"]}
    assert document["etag"] == '"e"' and document["last_modified"] is None
    assert "headers_dropped" not in document


def test_the_document_says_which_headers_it_left_out() -> None:
    document = _document(_response([("Server", "s"), ("X-Huge", "x" * 20_000)]), {})
    assert document["headers"] == {"server": "s"}
    assert document["headers_dropped"] == ["x-huge"]


def test_fields_are_stored_only_when_the_crawl_declares_some() -> None:
    with_fields = _document(_response([]), {"headline": "h1", "price": ".price", "tags": ".tag[]"})
    assert with_fields["fields"] == {"headline": "Head", "price": "9.99", "tags": []}
    assert with_fields["title"] == "T"
    assert "fields" not in _document(_response([]), {})


def test_a_replay_updates_what_the_parse_and_crunch_made() -> None:
    reparsed = {
        "metadata": {"title": "T", "description": None, "canonical": None, "language": None, "link_count": 0},
        "fields": {"price": "9.99"},
        "crunched": {"word_count": 3, "simhash": "00", "top_words": []},
    }
    document = reprocessed_document("r1", reparsed, "fingerprint", has_fields=True)
    assert document["reprocess_id"] == "r1" and document["reprocessed_at"] is not None
    assert document["fields"] == {"price": "9.99"} and document["title"] == "T" and document["word_count"] == 3
    assert "fields" not in reprocessed_document("r1", reparsed, "none", has_fields=False)
    # A body that is not HTML: only the replay is recorded.
    assert set(reprocessed_document("r1", None, "fingerprint", has_fields=True)) == {"reprocessed_at", "reprocess_id"}
