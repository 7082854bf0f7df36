"""The export's columns and formats as pure functions: what a page document becomes in each format."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import sys
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crunch.registry import FINGERPRINT, NO_CRUNCH
from pipeline.download.response import Response
from pipeline.errors import InvalidExport
from pipeline.export.bodies import encode_body
from pipeline.export.columns import KNOWN, crawl_columns, select
from pipeline.export.formats import CsvWriter, JsonLinesWriter, ParquetWriter, row_writer
from pipeline.parse.html import ParsedPage
from pipeline.store.documents import page_document, reprocessed_document

WHEN = dt.datetime(2025, 3, 1, 12, 30, 5, 123000, tzinfo=dt.UTC)


def _document(crunch: str, crunched: Any) -> dict[str, Any]:
    response = Response(
        url="http://example.com/a",
        final_url="http://example.com/a",
        status=200,
        content_type="text/html",
        charset="utf-8",
        body=b"<html></html>",
        truncated=False,
        redirects=0,
        elapsed_ms=1.5,
        headers={"etag": '"x"', "set-cookie": ["a=1", "b=2"]},
        headers_dropped=("x-huge",),
    )
    parsed = ParsedPage("T", "D", None, "en", None, ["http://example.com/b"], [], "words", {"price": "3"})
    document = page_document("c1", 1, 1, response, "0" * 64, "bodies/00/" + "0" * 64, "s3://b/bodies/", parsed,
                             crunch, crunched)  # fmt: skip
    document["timings"]["total_ms"] = 3.0
    return document


def _flat_names(document: dict[str, Any], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for key, value in document.items():
        if isinstance(value, dict) and key not in ("crunch", "headers"):
            names |= _flat_names(value, f"{prefix}{key}.")
        else:
            names.add(prefix + key)
    return names


@pytest.mark.parametrize(
    ("crunch", "crunched"),
    [(FINGERPRINT, {"word_count": 1, "simhash": "0" * 16, "top_words": [["w", 1]]}), (NO_CRUNCH, None),
     ("tests.cpu_tasks:count", {"any": {"thing": 1}})],
)  # fmt: skip
def test_every_key_of_a_page_document_has_a_column(crunch: str, crunched: Any) -> None:
    """CSV and Parquet know their columns before the first row: a key added to the page document
    must be added to the export's columns too, or it would be left out of them."""
    document = _document(crunch, crunched)
    replayed = reprocessed_document(
        "r1", {"metadata": {"title": "T"}, "fields": {}, "crunched": crunched}, crunch, True
    )
    columns = {c.name for c in crawl_columns([crunch], ["price"], replayed=True)}
    assert _flat_names(document) | _flat_names(replayed) <= columns
    assert columns - {"fields.price"} <= set(KNOWN)


def test_a_crawl_and_its_replays_have_every_column_either_wrote() -> None:
    columns = [c.name for c in crawl_columns([FINGERPRINT, "my.module:fn", FINGERPRINT], ["a", "b", "a", "c"])]
    assert columns[columns.index("fields.a") :] == [
        "fields.a", "fields.b", "fields.c", "word_count", "simhash", "top_words", "crunch"
    ]  # fmt: skip
    replayed = [c.name for c in crawl_columns([NO_CRUNCH], [], replayed=True)]
    assert replayed[-2:] == ["reprocessed_at", "reprocess_id"] and "word_count" not in replayed


def test_selection_expands_groups_keeps_order_and_refuses_unknown_names() -> None:
    available = crawl_columns([FINGERPRINT], ["title", "price"])
    chosen = select(available, ["fields", "url", "timings", "url"], with_body=False)
    assert [c.name for c in chosen.columns] == [
        "fields.title", "fields.price", "url", "timings.fetch_ms", "timings.total_ms"
    ]  # fmt: skip
    assert chosen.projection == {"_id": 0, **dict.fromkeys([c.name for c in chosen.columns], 1)}

    with_body = select(available, ["url", "body"], with_body=False)
    assert with_body.with_body and [c.name for c in with_body.columns] == ["url", "body", "body_encoding"]
    assert {"blob_key", "blob_store", "charset", "content_type"} <= set(with_body.projection)

    everything = select(available, None, with_body=True)
    assert everything.everything and everything.projection == {"_id": 0}
    assert [c.name for c in everything.columns][-2:] == ["body", "body_encoding"]

    for bad in (["titel"], ["fields.weight"], ["url", " "], [], ["crunch"]):
        with pytest.raises(InvalidExport):
            select(available, bad, with_body=False)


ROWS = [
    {"url": "http://e.com/1", "title": 'comma, "quote"\nnewline', "depth": 1, "parsed": True, "fetched_at": WHEN,
     "top_words": [["a", 2]], "timings": {"fetch_ms": 1.25}, "fields": {"title": "T", "tags": ["x", "y"]}},
    {"url": "http://e.com/2", "title": None, "depth": 2, "parsed": False, "fetched_at": None, "top_words": [],
     "timings": {}, "fields": {"title": None}},
    {"url": "http://e.com/3", "title": "ünïcødé ✓"},
]  # fmt: skip
PICKED = ["url", "title", "depth", "parsed", "fetched_at", "top_words", "timings.fetch_ms", "fields"]


def _writer_output(writer: Any) -> bytes:
    chunks = []
    for row in ROWS:
        writer.write(row)
        chunks.append(writer.take())
    writer.close()
    chunks.append(writer.take())
    return b"".join(chunks)


def test_csv_is_flat_with_json_lists() -> None:
    selection = select(crawl_columns([FINGERPRINT], ["title", "tags"]), PICKED, with_body=False)
    table = list(csv.reader(io.StringIO(_writer_output(CsvWriter(selection)).decode())))
    assert table[0] == [*PICKED[:-1], "fields.title", "fields.tags"]
    assert table[1] == ["http://e.com/1", 'comma, "quote"\nnewline', "1", "true", WHEN.isoformat(), '[["a",2]]',
                        "1.25", "T", '["x","y"]']  # fmt: skip
    assert table[2] == ["http://e.com/2", "", "2", "false", "", "[]", "", "", ""]
    assert table[3] == ["http://e.com/3", "ünïcødé ✓"] + [""] * 7


def test_json_lines_keep_the_documents_shape() -> None:
    selection = select(crawl_columns([FINGERPRINT], ["title", "tags"]), PICKED, with_body=False)
    rows = [json.loads(line) for line in _writer_output(JsonLinesWriter(selection)).decode().splitlines()]
    assert rows[0]["fields"] == {"title": "T", "tags": ["x", "y"]}
    assert rows[0]["timings"] == {"fetch_ms": 1.25} and rows[0]["fetched_at"] == WHEN.isoformat()
    assert rows[2]["title"] == "ünïcødé ✓" and rows[2]["depth"] is None

    everything = select(crawl_columns([FINGERPRINT], []), None, with_body=False)
    writer = JsonLinesWriter(everything)
    writer.write({"_id": 1, **ROWS[0]})
    row = json.loads(writer.take())
    assert list(row) == list(ROWS[0])  # the whole document but `_id`, in its own order
    assert row["fields"] == ROWS[0]["fields"] and row["fetched_at"] == WHEN.isoformat()


def test_parquet_keeps_types_and_writes_a_row_group_at_a_time() -> None:
    selection = select(crawl_columns([FINGERPRINT], ["title", "tags"]), PICKED, with_body=False)
    writer = ParquetWriter(selection, row_group_rows=2)
    writer.write(ROWS[0])
    assert writer.pending() > 0  # the header went out; nothing of the group yet
    writer.take()
    writer.write(ROWS[1])  # the group is full: its bytes are ready, its rows are not held any more
    assert writer.pending() > 0
    writer.discard()

    data = _writer_output(ParquetWriter(selection, row_group_rows=2))
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.num_row_groups == 2
    rows = parquet.read().to_pylist()
    assert rows[0]["depth"] == 1 and rows[0]["parsed"] is True and rows[0]["fetched_at"] == WHEN
    assert rows[0]["fields.tags"] == '["x","y"]' and rows[0]["timings.fetch_ms"] == 1.25
    assert rows[1]["title"] is None and rows[1]["fetched_at"] is None
    assert rows[2]["title"] == "ünïcødé ✓"


def test_parquet_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    selection = select(crawl_columns([NO_CRUNCH], []), None, with_body=False)
    with pytest.raises(InvalidExport, match="'parquet' extra"):
        row_writer("parquet", selection)


def test_text_bodies_are_text_and_others_base64() -> None:
    assert encode_body("café".encode("latin-1"), "text/html", "iso-8859-1") == ("café", "text")
    assert encode_body(b'{"a": 1}', "application/ld+json", None) == ('{"a": 1}', "text")
    for body, content_type, charset in (
        (bytes(range(256)), "application/octet-stream", None),
        (b"\xff\xfe not utf-8", "text/html", None),
        (b"text", "text/plain", "no-such-charset"),
    ):
        text, encoding = encode_body(body, content_type, charset)
        assert encoding == "base64" and base64.b64decode(text) == body


@given(st.binary(max_size=200), st.sampled_from(["text/html", "image/png", "application/json", ""]),
       st.sampled_from([None, "utf-8", "iso-8859-1", "ascii"]))  # fmt: skip
def test_every_body_comes_back_byte_for_byte(body: bytes, content_type: str, charset: str | None) -> None:
    text, encoding = encode_body(body, content_type, charset)
    back = base64.b64decode(text) if encoding == "base64" else text.encode(charset or "utf-8")
    assert back == body
