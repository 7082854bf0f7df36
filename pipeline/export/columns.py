"""What an export's rows hold: the columns of a page document, which of them are asked for, and
the flat values CSV and Parquet need.

CSV and Parquet need their columns before the first row, so the columns come from what a page
document is made of (`pipeline.store.documents.page_document`), shaped by the crawl's options:
the fingerprint's columns for a fingerprinting crawl, `crunch` for a crawl with a function of its
own, one `fields.NAME` column per declared field. Nested objects become dotted columns
(`timings.fetch_ms`, `fields.title`); lists and a function's results are JSON text. JSON Lines
keeps each document's own shape instead. MongoDB's `_id` means nothing outside the database and
is never exported.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.crunch.registry import FINGERPRINT, NO_CRUNCH
from pipeline.errors import InvalidExport

# A column's kind says how it is written: Parquet types, CSV text.
TEXT, INT, FLOAT, BOOL, TIME, JSON = "text", "int", "float", "bool", "time", "json"

#: The body, read from the blob store with `--with-body`, and how it is written: "text" (decoded
#: with the page's charset) or "base64" (anything that is not text, or text that does not decode).
BODY, BODY_ENCODING = "body", "body_encoding"


@dataclass(frozen=True)
class Column:
    name: str  # dotted path into the document
    kind: str

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


def _columns(spec: str) -> tuple[Column, ...]:
    return tuple(Column(*item.split(":")) for item in spec.split())


# In the order of `page_document`, which these must keep up with (a test checks). Response
# headers are one JSON column: their names are the site's, not a stable set of columns.
_FETCH = _columns(
    """url:text host:text crawl_id:text depth:int status:int final_url:text redirects:int
    content_type:text charset:text length:int truncated:bool sha256:text blob_key:text blob_store:text
    etag:text last_modified:text headers:json headers_dropped:json fetched_at:time attempts:int
    timings.fetch_ms:float timings.total_ms:float parsed:bool unchanged:bool checked_at:time"""
)
_PARSED = _columns("title:text description:text canonical:text language:text link_count:int")
_FINGERPRINT = _columns("word_count:int simhash:text top_words:json")
_CRUNCH = _columns("crunch:json")
_REPLAYED = _columns("reprocessed_at:time reprocess_id:text")  # set by `pipeline reprocess`
_BODY = _columns(f"{BODY}:text {BODY_ENCODING}:text")

#: Every column that can be exported, as a reader would look for it (`--fields` help).
KNOWN = tuple(c.name for c in (*_FETCH, *_PARSED, *_FINGERPRINT, *_CRUNCH, *_REPLAYED, *_BODY))
#: What a body needs from the document even when those columns are not exported.
BODY_SOURCES = ("blob_key", "blob_store", "content_type", "charset")


def crawl_columns(crunches: Iterable[str], field_names: Iterable[str], replayed: bool = False) -> tuple[Column, ...]:
    """The columns of a crawl's pages, in a fixed order: fetch, parse, fields, CPU stage, replay.

    `crunches` and `field_names` are those of the crawl and of its replays (which may have
    stored other ones in its documents): every column any of them wrote.
    """
    fields = tuple(Column(f"fields.{name}", TEXT) for name in dict.fromkeys(field_names))
    stage: list[Column] = []
    for crunch in crunches:
        found = () if crunch == NO_CRUNCH else _FINGERPRINT if crunch == FINGERPRINT else _CRUNCH
        stage += [c for c in found if c not in stage]
    return (*_FETCH, *_PARSED, *fields, *stage, *(_REPLAYED if replayed else ()))


@dataclass(frozen=True)
class Selection:
    """The columns an export writes, and whether it reads bodies."""

    columns: tuple[Column, ...]
    with_body: bool
    everything: bool  # no --fields: JSON Lines writes whole documents

    @property
    def projection(self) -> dict[str, int]:
        """The MongoDB projection that reads what the rows need and nothing else."""
        if self.everything:
            return {"_id": 0}
        names = [c.name for c in self.columns if c.name not in (BODY, BODY_ENCODING)]
        if self.with_body:
            names += BODY_SOURCES
        return {"_id": 0, **dict.fromkeys(names, 1)}


def select(available: Sequence[Column], fields: Sequence[str] | None, with_body: bool) -> Selection:
    """The columns that `fields` names (all of `available` if None), plus the body's if asked.

    A name is a column (`url`, `fields.title`) or a group of them (`fields`, `timings`); naming
    `body` asks for the body as `with_body` does. A name the crawl has no column for is refused
    with the list of those it has: a misspelt column would otherwise be exported as empty.
    """
    if fields is None:
        chosen = list(available)
        everything = True
    else:
        everything = False
        chosen = []
        names = [name.strip() for name in fields]
        if not names or any(not name for name in names):
            raise InvalidExport("--fields needs a comma-separated list of column names, with no empty ones")
        by_name = {c.name: c for c in (*available, *_BODY)}
        for name in names:
            found = [by_name[name]] if name in by_name else [c for c in available if c.name.startswith(name + ".")]
            if not found:
                known = ", ".join(c.name for c in available)
                raise InvalidExport(f"unknown field {name!r}: this crawl's pages have {known}, {BODY}")
            chosen += [c for c in found if c not in chosen]
        with_body = with_body or any(c in _BODY for c in chosen)
    if with_body:
        chosen += [c for c in _BODY if c not in chosen]
    return Selection(tuple(chosen), with_body, everything)


def value_at(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path of a document; None where any step is missing."""
    value: Any = document
    for step in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def json_default(value: Any) -> Any:
    """What `json.dumps` cannot write by itself: dates as ISO 8601, anything else as its text."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def as_json(value: Any) -> str:
    return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":"))


def flat_value(column: Column, value: Any) -> Any:
    """A column's value as CSV and Parquet hold it: text, a number, a bool, a time, or JSON text."""
    if value is None:
        return None
    if column.kind == JSON or (column.kind == TEXT and not isinstance(value, str)):
        return as_json(value)
    return value


def nested_row(document: Mapping[str, Any], selection: Selection) -> dict[str, Any]:
    """A JSON Lines row: the whole document, or the selected paths in the document's own shape."""
    if selection.everything:
        return {k: v for k, v in document.items() if k != "_id"}
    row: dict[str, Any] = {}
    for column in selection.columns:
        *parents, leaf = column.path
        target = row
        for step in parents:
            target = target.setdefault(step, {})
        target[leaf] = value_at(document, column.path)
    return row
