"""Split roles (Celery: a gevent worker on an I/O queue, a prefork worker on a CPU queue)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.api import Pipeline
from pipeline.settings import Settings
from pipeline.worker.settings import build_worker
from tests.helpers import ROOT, run_cli, service_env
from tests.servers.site import SiteConfig, ThreadedSite


async def test_io_worker_sends_cpu_work_to_cpu_worker(settings: Settings) -> None:
    settings = settings.replace(cpu={"queue": settings.redis.queue + ":cpu"})
    config = SiteConfig(pages=60, per_list_page=30, latency_ms=3)
    io_worker = build_worker(settings, "io", handle_signals=False)
    cpu_worker = build_worker(settings, "cpu", handle_signals=False)
    assert set(io_worker.functions) >= {"crawl", "fetch_page"} and "cpu_task" not in io_worker.functions
    assert set(cpu_worker.functions) == {"cpu_task"}
    assert cpu_worker.queue_name != io_worker.queue_name
    tasks = [asyncio.create_task(w.async_run()) for w in (io_worker, cpu_worker)]
    try:
        with ThreadedSite(config) as site:
            async with Pipeline(settings) as pipeline:
                crawl_id = await pipeline.crawl(site.base_url + "/list")
                status = await pipeline.wait(crawl_id, timeout=60)
                pages = await pipeline.pages(crawl_id)
        assert io_worker.ctx["pipeline"].cpu is None  # no process pool in the I/O worker
    finally:
        for worker in (io_worker, cpu_worker):
            await worker.close()
        for task in tasks:
            task.cancel()
    assert status.done and status.stored == config.pages
    assert all(len(p["simhash"]) == 16 and p["top_words"] for p in pages)
    assert cpu_worker.jobs_complete == config.pages
    assert io_worker.jobs_complete == config.pages + config.list_pages + 1  # + the crawl summary


async def test_cpu_workers_run_a_crawls_own_function(settings: Settings) -> None:
    """A user's `crunch` runs on the CPU worker; when it raises, the page fails at once with the reason."""
    functions = ["tests.cpu_tasks:page_stats", "tests.cpu_tasks:refuse"]
    settings = settings.replace(cpu={"queue": settings.redis.queue + ":cpu", "functions": functions})
    workers = [build_worker(settings, role, handle_signals=False) for role in ("io", "cpu")]
    tasks = [asyncio.create_task(w.async_run()) for w in workers]
    try:
        with ThreadedSite(SiteConfig(pages=6, per_list_page=6, latency_ms=2)) as site:
            async with Pipeline(settings) as pipeline:
                stored = await pipeline.crawl(site.base_url + "/list", crunch=functions[0])
                failed = await pipeline.crawl(site.base_url + "/list", crunch=functions[1])
                statuses = [await pipeline.wait(crawl_id, timeout=60) for crawl_id in (stored, failed)]
                pages = await pipeline.pages(stored)
                failures = await pipeline.failures(failed)
    finally:
        for worker in workers:
            await worker.close()
        for task in tasks:
            task.cancel()
    assert [(s.stored, s.failed) for s in statuses] == [(6, 0), (0, 6)]
    assert all(page["crunch"]["words"] > 0 and page["crunch"]["pid"] != os.getpid() for page in pages)
    assert all(
        f["error"] == f"crunch {functions[1]} raised ValueError: this page is not for me (on a CPU worker)"
        for f in failures
    )


@pytest.mark.slow
def test_split_roles_as_arq_processes(settings: Settings, tmp_path: Path) -> None:
    env = service_env(settings)
    env["PIPELINE_CPU_QUEUE"] = settings.redis.queue + ":cpu"
    logs = {role: (tmp_path / f"{role}.log").open("w") for role in ("IO", "CPU")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "arq", f"pipeline.{role}WorkerSettings"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        for role, log in logs.items()
    ]
    try:
        with ThreadedSite(SiteConfig(pages=80, per_list_page=40, latency_ms=3)) as site:
            result = run_cli("crawl", site.base_url + "/list", "--wait", "--json", "--timeout", "60", env=env)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
        for log in logs.values():
            log.close()
    assert result.returncode == 0, result.stderr + (tmp_path / "CPU.log").read_text()
    assert '"stored": 80' in result.stdout
    cpu_log = (tmp_path / "CPU.log").read_text()
    assert "cpu_task" in cpu_log and "fetch_page" not in cpu_log
    assert os.path.getsize(tmp_path / "IO.log") > 0
