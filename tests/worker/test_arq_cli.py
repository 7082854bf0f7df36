"""`arq pipeline.WorkerSettings`, as users start it, runs the pipeline's own worker.

The worker is arq's console script in a child process; Redis is restarted under it mid-crawl.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.embedded.processes import ServiceProcess, start_redis
from pipeline.settings import Settings
from tests.helpers import WorkerProcess, stored_count
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths


def test_arq_job_lines_show_only_when_verbose() -> None:
    from pipeline.worker.settings import _JobLinesOnlyWhenVerbose

    def record(level: int, function: str) -> logging.LogRecord:
        made = logging.LogRecord("arq.worker", level, "worker.py", 1, "%s", ("x",), None, func=function)
        return made

    keep = _JobLinesOnlyWhenVerbose().filter
    arq_logger = logging.getLogger("arq")
    before = arq_logger.level
    try:
        arq_logger.setLevel(logging.INFO)  # `arq pipeline.WorkerSettings`
        assert not keep(record(logging.INFO, "run_job"))
        assert keep(record(logging.WARNING, "run_job"))  # a failed job is always told
        assert keep(record(logging.INFO, "main"))  # arq's start-up lines stay
        arq_logger.setLevel(logging.DEBUG)  # `arq -v pipeline.WorkerSettings`
        assert keep(record(logging.INFO, "run_job"))
    finally:
        arq_logger.setLevel(before)


@pytest.mark.slow
async def test_arq_cli_worker_rides_out_a_redis_restart(settings: Settings, s3_client: Any, tmp_path: Path) -> None:
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", persistent=True)
    port = urlsplit(redis.url).port
    holder: dict[str, ServiceProcess] = {"redis": redis}
    settings = settings.replace(redis={"url": redis.url})
    config = SiteConfig(pages=300, per_list_page=100, latency_ms=80, latency_sigma=0.1)
    env = {"PIPELINE_WORKER_MAX_JOBS": "40", "PIPELINE_FETCH_CONCURRENCY": "40"}
    try:
        with ThreadedSite(config) as site:
            async with Pipeline(settings) as pipeline:
                crawl_id = await pipeline.crawl(site.base_url + "/list")
            worker = WorkerProcess(settings, tmp_path / "worker.log", **env)
            try:
                async with asyncio.timeout(60):
                    while await stored_count(settings, crawl_id) < 40:
                        await asyncio.sleep(0.1)
                holder["redis"].stop()  # SIGTERM: Redis writes its append-only file and exits
                stored_before = await stored_count(settings, crawl_id)
                await asyncio.sleep(3)
                holder["redis"] = await asyncio.to_thread(start_redis, tmp_path / "redis", persistent=True, port=port)
                async with Pipeline(settings) as pipeline:
                    status = await pipeline.wait(crawl_id, timeout=120)
            finally:
                code, log = await worker.stop()
            hits = dict(site.site.hits)
    finally:
        holder["redis"].stop()

    assert code == 0, log
    assert "pipeline worker ready" in log  # the pipeline's worker, not arq's stock one
    assert "Traceback" not in log
    assert "fetch_page(" not in log  # arq's two lines per job are only for `arq -v`
    expected = {site.base_url + p for p in expected_child_paths(config)}
    assert stored_before < len(expected)  # Redis went away mid-crawl
    assert status.done and status.failed == 0 and status.stored == len(expected)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        pages = await client[settings.mongo.db].pages.find({"crawl_id": crawl_id}).to_list()
    finally:
        await client.close()
    assert sorted(p["url"] for p in pages) == sorted(expected)  # every page, once
    listed = await s3_client.list_objects_v2(Bucket=settings.s3.bucket)
    assert {o["Key"] for o in listed.get("Contents", [])} == {p["blob_key"] for p in pages}
    assert all(n <= 2 for n in hits.values())  # at most the pages in flight when Redis left
