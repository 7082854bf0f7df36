"""Page bodies for `--with-body`: read from the blob store each document names, a bounded number
at a time, handed on in the documents' order.

A body is exported as text when the page is text (HTML, XML, JSON, `text/*`) and decodes with its
charset (UTF-8 when it sent none): encoded again with that charset, it is the body. Anything else
is base64, byte for byte. `body_encoding` says which.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from pipeline.errors import BlobNotFound, BlobStoreError, ExportFailed
from pipeline.export.columns import BODY, BODY_ENCODING
from pipeline.settings import S3Settings
from pipeline.store.blobs import BlobStore, read_only_store, s3_client
from pipeline.store.mongo import Document

#: Bodies read at once: enough to hide S3's latency, few enough to keep memory flat.
BODY_CONCURRENCY = 16

_TEXT_TYPES = ("application/json", "application/xml", "application/xhtml+xml", "application/javascript")


def is_text(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith(("+xml", "+json"))


def encode_body(body: bytes, content_type: str | None, charset: str | None) -> tuple[str, str]:
    """The body as exported, and its `body_encoding`: "text" or "base64"."""
    if is_text(content_type):
        try:
            return body.decode(charset or "utf-8"), "text"
        except (LookupError, UnicodeDecodeError):
            pass  # an unknown charset, or bytes that are not what it said
    return base64.b64encode(body).decode("ascii"), "base64"


class BodyReader:
    """Reads bodies from the stores the documents name (one S3 client, made when first needed)."""

    def __init__(self, s3: S3Settings) -> None:
        self._s3_settings = s3
        self._stack = contextlib.AsyncExitStack()
        self._s3_client: Any = None
        self._stores: dict[str, BlobStore] = {}
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> BodyReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _store(self, location: str) -> BlobStore:
        async with self._lock:
            store = self._stores.get(location)
            if store is None:
                if location.startswith("s3://") and self._s3_client is None:
                    self._s3_client, _ = await self._stack.enter_async_context(s3_client(self._s3_settings))
                store = self._stores[location] = read_only_store(location, self._s3_client)
            return store

    async def add_body(self, document: Document) -> Document:
        """`document` with `body` and `body_encoding` set (both None if it names no body)."""
        key, location = document.get("blob_key"), document.get("blob_store")
        if not key or not location:
            document[BODY] = document[BODY_ENCODING] = None
            return document
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            store = await self._store(location)
            body = await store.get(key)
        except (OSError, ValueError, BlobNotFound, BlobStoreError, BotoCoreError, ClientError) as exc:
            raise ExportFailed(f"cannot read the body of {document.get('url')} ({location} {key}): {exc}") from exc
        document[BODY], document[BODY_ENCODING] = encode_body(
            body, document.get("content_type"), document.get("charset")
        )
        return document


async def with_bodies(
    documents: AsyncIterator[Document], reader: BodyReader, limit: int = BODY_CONCURRENCY
) -> AsyncGenerator[Document, None]:
    """`documents` with their bodies, read `limit` at a time and yielded in the order they came."""
    window: deque[asyncio.Task[Document]] = deque()
    try:
        async for document in documents:
            window.append(asyncio.ensure_future(reader.add_body(document)))
            if len(window) >= limit:
                yield await window.popleft()
        while window:
            yield await window.popleft()
    finally:
        for task in window:
            task.cancel()
        if window:
            await asyncio.gather(*window, return_exceptions=True)
