"""`pipeline demo`: a local site, embedded services, a worker and a crawl, end to end.

Everything runs on loopback from one command, so a new user sees the whole path (list pages,
fan-out, retries, MongoDB documents, stored bodies) before configuring anything.
"""

from __future__ import annotations

import json
import sys
import time

from pipeline.api import Pipeline
from pipeline.cli.demo_site import DemoSite
from pipeline.cli.progress import Progress
from pipeline.cli.runtime import in_process_worker, services
from pipeline.connections import redact
from pipeline.settings import Settings


async def run_demo(settings: Settings, *, pages: int, latency_ms: float, as_json: bool) -> int:
    if pages < 1 or latency_ms < 0:
        print("pipeline: --pages must be at least 1 and --latency-ms 0 or more", file=sys.stderr)
        return 2
    # The demo site is on loopback, which the fetcher refuses by default (SSRF guard).
    settings = settings.replace(fetch={"allow_private_networks": True, "retry_base_delay": 0.5})
    site = DemoSite(pages, latency_ms)
    start_url = await site.start() + "/list"
    try:
        out = sys.stderr if as_json else sys.stdout
        print(f"demo site: {start_url} ({pages} pages behind {site.list_pages} list pages)", file=out)
        async with services(settings) as resolved, Pipeline(resolved) as pipeline:
            started = time.perf_counter()
            crawl_id = await pipeline.crawl(start_url)
            async with in_process_worker(resolved):
                status = await pipeline.wait(crawl_id, timeout=600, on_progress=Progress(sys.stderr))
            elapsed = time.perf_counter() - started
            sample = await pipeline.pages(crawl_id, limit=1)
            failures = await pipeline.failures(crawl_id, limit=3)
            report = {
                **status.to_dict(),
                "pages_per_s": round(status.stored / elapsed, 1) if elapsed else 0.0,
                "mongo": f"{redact(resolved.mongo.url)} database {resolved.mongo.db!r}",
                "bodies": sample[0]["blob_store"] if sample else None,
                "site_requests": site.requests,
            }
    finally:
        await site.stop()
    if as_json:
        print(json.dumps(report))
    else:
        print(f"\ncrawl {crawl_id}: {status.state} in {elapsed:.1f}s ({report['pages_per_s']} pages/s)")
        print(f"  stored {status.stored} pages, {status.failed} failed, {status.counters.get('retries', 0)} retries")
        print(f"  metadata: {report['mongo']}, collections pages, failures, crawls")
        print(f"  bodies:   {report['bodies']}")
        if sample:
            page = sample[0]
            print(f"  e.g. {page['url']}: {page.get('title')!r}, {page['length']} bytes, simhash {page.get('simhash')}")
        for failure in failures:
            print(f"  failed: {failure['url']}: {failure['error']}")
        print(f"\nsee it again with: pipeline status {crawl_id}")
    return 0 if status.done and status.stored > 0 else 1
