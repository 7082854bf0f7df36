"""The MongoDB group commit: upserts from many concurrent jobs go to the database as one bulk write.

Each job awaits the flush that carries its document, so a job never completes before its write
is acknowledged, yet the database sees a few large writes instead of thousands of small ones.
A batch is written when it holds `max_batch` upserts or its first has waited `max_delay`.
A writer may be given `before_write`, which sees a batch's `$set` documents before they are written
(the change history of `pages` reads what they replace with one query per batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

Document = dict[str, Any]
BeforeWrite = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]


class BatchWriter:
    """Buffers upserts for one collection and writes them in bulk after `max_delay` or `max_batch`."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        max_batch: int,
        max_delay: float,
        before_write: BeforeWrite | None = None,
    ) -> None:
        self._collection = collection
        self._before_write = before_write
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._ops: list[UpdateOne] = []
        self._sets: list[Mapping[str, Any]] = []  # the ops' `$set` documents, kept for `before_write`
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    async def upsert(self, key: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = True) -> None:
        """Queue an upsert (an update only, if `upsert` is false) and return once it is written
        (or raise what the write raised)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._ops.append(UpdateOne(dict(key), dict(update), upsert=upsert))
        if self._before_write is not None:
            self._sets.append(update.get("$set", {}))
        self._waiters.append(waiter)
        if len(self._ops) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_delay, self._flush)
        await waiter

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ops:
            return
        ops, sets, waiters = self._ops, self._sets, self._waiters
        self._ops, self._sets, self._waiters = [], [], []
        task = asyncio.get_running_loop().create_task(self._write(ops, sets, waiters))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(
        self, ops: list[UpdateOne], sets: list[Mapping[str, Any]], waiters: list[asyncio.Future[None]]
    ) -> None:
        failed: dict[int, BaseException] = {}
        try:
            if self._before_write is not None:
                # A failure here fails the whole batch, unwritten: its jobs retry it.
                await self._before_write(sets)
            await self._collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                failed[error["index"]] = RuntimeError(f"write failed: {error.get('errmsg', error)}")
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn the outcome
            failed = dict.fromkeys(range(len(ops)), exc)
        for index, waiter in enumerate(waiters):
            if waiter.done():
                continue
            if index in failed:
                waiter.set_exception(failed[index])
            else:
                waiter.set_result(None)

    async def drain(self) -> None:
        """Write everything buffered; used at shutdown so nothing queued is lost."""
        self._flush()
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
