"""`export_crawl`: a crawl's stored pages, streamed from MongoDB to a file, a stream or S3.

A crawl's stored pages are the `pages` documents whose `crawl_id` is the crawl's: `pages` holds
one document per URL, the one its latest crawl stored (or confirmed unchanged with a 304). A page
that a later crawl stored again belongs to that crawl's export from then on; what it was before
is in its history (`pipeline.store.history`). So an export of the latest crawl of a site has one
row per page it stored, and an older crawl's export shrinks as later crawls re-store its pages.
Rows come in URL order.

Memory stays flat whatever the crawl's size: documents come through a cursor a batch at a time,
rows leave as bytes every `CHUNK_BYTES`, bodies are read a bounded number at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING

from pipeline.errors import InvalidExport
from pipeline.export.bodies import BodyReader, with_bodies
from pipeline.export.columns import Selection, crawl_columns, select
from pipeline.export.destinations import Output, open_destination
from pipeline.export.formats import CONTENT_TYPES, row_writer
from pipeline.settings import Settings
from pipeline.store.mongo import Document, MongoStore

CURSOR_BATCH = 500
CHUNK_BYTES = 1024 * 1024
#: Progress is reported every this many rows (and at the end).
PROGRESS_EVERY = 200

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportPlan:
    pages_of: str  # the crawl whose pages are exported: the one asked for, or the one it replays
    selection: Selection


async def plan_export(store: MongoStore, crawl_id: str, fields: Sequence[str] | None, with_body: bool) -> ExportPlan:
    """What an export of `crawl_id` reads and writes; `CrawlNotFound` or `InvalidExport` before
    anything is written.

    A replay (`pipeline reprocess`) updates its source crawl's documents in place, so its export
    is its source's pages; the columns are those the source and all its replays wrote.
    """
    source, record = await store.stored_by(crawl_id)
    options: Mapping[str, Any] = record.get("options") or {}
    if options.get("pipeline", "web") != "web":
        raise InvalidExport(
            f"crawl {source} collected API objects (pipeline={options.get('pipeline')}), not pages: "
            "there are no pages to export"
        )
    replays = store.crawls.find({"source_crawl": source}, {"options": 1}).sort([("created_at", ASCENDING)])
    every = [options, *[replay.get("options") or {} async for replay in replays]]
    columns = crawl_columns(
        [str(o.get("crunch", "")) for o in every],
        [name for o in every for name in o.get("fields") or {}],
        replayed=len(every) > 1,
    )
    return ExportPlan(source, select(columns, fields, with_body))


async def export_crawl(
    store: MongoStore,
    settings: Settings,
    crawl_id: str,
    out: Output,
    *,
    format: str = "jsonl",
    fields: Sequence[str] | None = None,
    with_body: bool = False,
    on_progress: Progress | None = None,
) -> int:
    """Write the crawl's stored pages to `out` (a path, `s3://bucket/key` or a binary stream)
    as `format`; returns the number of rows. `on_progress(rows, total)` is called as it goes."""
    plan = await plan_export(store, crawl_id, fields, with_body)
    selection = plan.selection
    writer = row_writer(format, selection)
    query = {"crawl_id": plan.pages_of}
    total = await store.pages.count_documents(query) if on_progress is not None else 0
    rows = 0
    try:
        async with (
            open_destination(out, CONTENT_TYPES[format], settings.s3) as destination,
            BodyReader(settings.s3) as reader,
        ):
            # In URL order, along the (crawl_id, url) index: the same rows in the same order every time.
            cursor = store.pages.find(query, selection.projection, batch_size=CURSOR_BATCH).sort([("url", ASCENDING)])
            documents = _documents(cursor)
            if selection.with_body:
                documents = with_bodies(documents, reader)
            async with contextlib.aclosing(documents):
                async for document in documents:
                    writer.write(document)
                    rows += 1
                    if writer.pending() >= CHUNK_BYTES:
                        await destination.write(writer.take())
                    if on_progress is not None and rows % PROGRESS_EVERY == 0:
                        on_progress(rows, max(total, rows))
            writer.close()
            await destination.write(writer.take())
    finally:
        writer.discard()
    if on_progress is not None:
        on_progress(rows, rows)
    return rows


async def _documents(cursor: Any) -> AsyncGenerator[Document, None]:
    try:
        async for document in cursor:
            yield document
    finally:
        await cursor.close()
