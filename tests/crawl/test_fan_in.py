"""Fan-in (Celery's chord): completion jobs run exactly once when a crawl's last page settles."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.settings import Settings
from tests.helpers import run_burst_worker
from tests.servers.site import SiteConfig, ThreadedSite, missing_paths


async def test_completion_jobs_run_once_across_workers(settings: Settings) -> None:
    settings = settings.replace(worker={"functions": ["tests.completion_jobs:record_completion"]})
    config = SiteConfig(pages=90, per_list_page=30, latency_ms=5, missing_rate=0.05, error_rate=0.05, seed=5)
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list", on_complete=["crawl_summary", "record_completion"])
            # Three workers race for the last pages and for the completion.
            await asyncio.gather(*(run_burst_worker(settings) for _ in range(3)))
            status = await pipeline.status(crawl_id)

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        runs = await db.completion_runs.find({"crawl_id": crawl_id}).to_list()
        record = await db.crawls.find_one({"_id": crawl_id})
    finally:
        await client.close()
    assert status.done
    assert len(runs) == 1
    assert record is not None
    summary = record["summary"]
    missing = len(missing_paths(config))
    assert summary["pages"] == status.stored == config.pages - missing
    assert summary["status_histogram"] == {"200": config.pages - missing}
    assert summary["failure_reasons"] == {"HTTP 404": missing}
    assert summary["bytes"] > 90 * 15_000
    assert summary["slowest_hosts"][0]["host"] == "127.0.0.1"
    assert summary["duration_s"] > 0


async def test_unknown_completion_job_is_a_clear_config_error(settings: Settings) -> None:
    import pytest

    from pipeline.errors import ConfigError
    from pipeline.worker.settings import worker_kwargs

    with pytest.raises(ConfigError, match=r"worker\.functions: cannot import 'no\.such:job'"):
        worker_kwargs(settings.replace(worker={"functions": ["no.such:job"]}))
