"""What the change history's lookup costs the client: `python -m bench.history_lookup`.

The group commit hands each batch of page documents to `PageHistory.keep_replaced`, which reads
the stored sha256 of the batch's URLs with one query. This times that call alone against
SecantusDB, in this process's CPU time, for batches of new pages (nothing stored: the query
finds nothing) and of pages stored before with the same content (it finds them all, keeps
nothing), at two batch sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from pipeline.embedded.processes import start_mongo
from pipeline.store.history import PageHistory

SHA = "0" * 64


async def measure(url: str, batches: int) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    lines = []
    try:
        db = client["history_lookup"]
        history = PageHistory(db)
        await db.pages.create_index("url", unique=True)
        await history.ensure_indexes()
        stored = [{"url": f"stored/{i}", "sha256": SHA, "blob_key": "k", "crawl_id": "c"} for i in range(10_000)]
        await db.pages.insert_many(stored)
        for size, kind in ((12, "new"), (12, "stored"), (100, "new"), (100, "stored")):
            runs = [[{"url": f"{kind}/{b * size + i}", "sha256": SHA} for i in range(size)] for b in range(batches)]
            cpu, wall = time.process_time(), time.monotonic()
            for batch in runs:
                await history.keep_replaced(batch)
            cpu_ms = (time.process_time() - cpu) * 1000 / batches
            wall_ms = (time.monotonic() - wall) * 1000 / batches
            lines.append(f"| {size} | {kind} | {cpu_ms:.2f} | {cpu_ms / size:.3f} | {wall_ms:.2f} |")
    finally:
        await client.close()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_lookup", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches timed per case (default 300)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="history-lookup-") as tmp:
        mongo = start_mongo(Path(tmp) / "mongo")
        try:
            lines = asyncio.run(measure(mongo.url, args.batches))
        finally:
            mongo.stop()
    print("| pages a batch | pages | client CPU ms a batch | client CPU ms a page | wall ms a batch |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
