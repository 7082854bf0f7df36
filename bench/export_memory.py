"""Memory of `pipeline export`: its peak RSS at N and 10N stored pages, per format, with and
without bodies. `python -m bench.export_memory [--pages 2000,20000] [--page-bytes 10000]`

Pages are stored through the real store path, not crawled: each is a synthetic site's page
(`tests.servers.site.render_child`), parsed and fingerprinted as a worker would, made into its
document by `page_document`, its body put in the file blob store and the document saved through
the group commit. (A crawl of 20,000 pages would measure the crawler, not the export.) Then
`pipeline export` runs as a child process for each format, and its peak RSS is the kernel's
high-water mark of its memory (`VmHWM`, read every 20 ms until it exits; `wait4`'s ru_maxrss
would count the RSS of this process, from which it was forked). A flat export has the same peak
at N and at 10N pages.
Prints one JSON line per export and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from pipeline.crawl.lifecycle import new_crawl_id
from pipeline.crawl.options import CrawlOptions
from pipeline.crunch.fingerprint import fingerprint
from pipeline.crunch.registry import FINGERPRINT
from pipeline.download.response import Response
from pipeline.embedded.processes import start_mongo, start_redis
from pipeline.parse.html import parse_response
from pipeline.settings import Settings
from pipeline.store.blobs import FileBlobStore
from pipeline.store.documents import page_document
from pipeline.store.mongo import MongoStore, utcnow
from tests.servers.site import SiteConfig, render_child

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("jsonl", "csv", "parquet")
DB = "export_memory"
SAVING_AT_ONCE = 500


async def store_pages(mongo_url: str, blobs: FileBlobStore, pages: int, page_bytes: int) -> str:
    """Store `pages` pages of a site of their own as one crawl; returns the crawl's id."""
    host = f"site-{pages}.example"
    config = SiteConfig(pages=pages, page_bytes=page_bytes)
    options = CrawlOptions.build(f"http://{host}/list", Settings())
    crawl_id = new_crawl_id()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        store = MongoStore(client, DB, batch_size=100, batch_delay=0.05)
        await store.ensure_indexes()
        record = {"_id": crawl_id, "start_url": options.start_url, "options": options.to_dict(), "state": "done"}
        await store.create_crawl({**record, "created_at": utcnow(), "finished_at": utcnow(), "counters": {}})

        async def save(index: int) -> None:
            url = f"http://{host}/page/{index}"
            body = render_child(config, index, host)
            response = Response(url, url, 200, "text/html", "utf-8", body, False, 0, 1.0, {})
            parsed = parse_response(response, link_selector=options.link_selector)
            sha256 = hashlib.sha256(body).hexdigest()
            key = await blobs.put(sha256, body, response.content_type)
            crunched = fingerprint(parsed.text) if parsed is not None else None
            document = page_document(
                crawl_id, 1, 1, response, sha256, key, blobs.location, parsed, FINGERPRINT, crunched
            )
            await store.save_page(document)

        for start in range(0, pages, SAVING_AT_ONCE):
            await asyncio.gather(*(save(i) for i in range(start, min(start + SAVING_AT_ONCE, pages))))
        await store.drain()
    finally:
        await client.close()
    return crawl_id


def count_rows(path: Path, format: str) -> int:
    if format == "parquet":
        import pyarrow.parquet as pq

        rows: int = pq.ParquetFile(path).metadata.num_rows
        return rows
    with path.open(newline="") as handle:
        if format == "csv":
            return sum(1 for _ in csv.reader(handle)) - 1
        return sum(1 for _ in handle)


def high_water_kb(pid: int) -> int:
    """The process's peak RSS so far (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_export(env: dict[str, str], crawl_id: str, format: str, with_body: bool, out: Path) -> dict[str, Any]:
    """One `pipeline export` child process: its rows, seconds and peak RSS."""
    args = [sys.executable, "-m", "pipeline", "export", crawl_id, "--format", format, "--out", str(out)]
    if with_body:
        args.append("--with-body")
    started = time.monotonic()
    log = out.with_suffix(".log")
    with log.open("wb") as stderr:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, high_water_kb(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"export failed ({process.returncode}): {log.read_text()}")
    rows = count_rows(out, format)
    result = {
        "format": format,
        "with_body": with_body,
        "rows": rows,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "output_mb": round(out.stat().st_size / 2**20, 1),
    }
    out.unlink()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--pages", default="2000,20000", help="comma-separated page counts (default 2000,20000)")
    parser.add_argument("--page-bytes", type=int, default=10_000, help="size of each page (default 10000)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats (default: all)")
    parser.add_argument("--bodies", choices=("both", "no", "yes"), default="both", help="exports with bodies or not")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.pages.split(",")]
    formats = [f for f in args.formats.split(",") if f]
    bodies = {"both": (False, True), "no": (False,), "yes": (True,)}[args.bodies]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="export-memory-") as tmp:
        root = Path(tmp)
        redis, mongo = start_redis(root / "redis", persistent=False), start_mongo(root / "mongo")
        try:
            blobs = FileBlobStore(root / "data" / "blobs", "bodies/")
            env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
            env.update(
                PIPELINE_CONFIG=str(ROOT / "config.toml"),
                PIPELINE_REDIS_URL=redis.url,
                PIPELINE_MONGO_URL=mongo.url,
                PIPELINE_MONGO_DB=DB,
                PIPELINE_STORAGE_DATA_DIR=str(root / "data"),
            )
            for pages in counts:
                started = time.monotonic()
                crawl_id = asyncio.run(store_pages(mongo.url, blobs, pages, args.page_bytes))
                print(f"stored {pages} pages in {time.monotonic() - started:.0f}s", file=sys.stderr)
                for with_body in bodies:
                    for format in formats:
                        result = {"pages": pages, **run_export(env, crawl_id, format, with_body, root / "out")}
                        if result["rows"] != pages:
                            raise SystemExit(f"{format} export of {pages} pages has {result['rows']} rows")
                        print(json.dumps(result), flush=True)
                        results.append(result)
        finally:
            redis.stop()
            mongo.stop()
    print(table(results, counts, formats, bodies), file=sys.stderr)
    return 0


def table(results: list[dict[str, Any]], counts: list[int], formats: Sequence[str], bodies: Sequence[bool]) -> str:
    """Markdown: one line per format and body choice, each page count's seconds and peak RSS, and
    the growth of the peak from the smallest count to the largest."""
    head = "| format | bodies | " + " | ".join(f"{n:,} rows: s / peak RSS MB" for n in counts) + " | RSS growth MB |"
    lines = [head, "|" + "---|" * (3 + len(counts))]
    for with_body in bodies:
        for format in formats:
            runs = {r["pages"]: r for r in results if r["format"] == format and r["with_body"] == with_body}
            cells = [f"{runs[n]['seconds']:.1f} / {runs[n]['peak_rss_mb']:.0f}" for n in counts]
            growth = runs[counts[-1]]["peak_rss_mb"] - runs[counts[0]]["peak_rss_mb"]
            lines.append(f"| {format} | {'yes' if with_body else 'no'} | " + " | ".join(cells) + f" | {growth:+.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
