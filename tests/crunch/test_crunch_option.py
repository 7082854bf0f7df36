"""`crawl.crunch`: the CPU stage a crawl runs on each page (fingerprint, none, or a user's function)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from pipeline.api import Pipeline
from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings
from pipeline.worker import lifecycle
from pipeline.worker.context import WorkerContext
from pipeline.worker.settings import build_worker
from tests.helpers import run_cli, service_env
from tests.servers.site import SiteConfig, ThreadedSite

STATS = "tests.cpu_tasks:page_stats"
CONFIG = SiteConfig(pages=40, per_list_page=20, latency_ms=2)


async def crawl_with_worker(settings: Settings, start_url: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    """A crawl through an in-process worker; returns its status and what the worker's pool did."""
    pool: dict[str, Any] = {}

    async def on_shutdown(ctx: WorkerContext) -> None:
        cpu = ctx["pipeline"].cpu
        pool.update(pids=cpu.pids() if cpu else [], batches=cpu.batches if cpu else 0)
        await lifecycle.on_shutdown(ctx)

    worker = build_worker(settings, burst=True, handle_signals=False, on_shutdown=on_shutdown)
    async with Pipeline(settings) as pipeline:
        crawl_id = await pipeline.crawl(start_url, **options)
        try:
            await worker.async_run()
        finally:
            await worker.close()
        status = await pipeline.status(crawl_id)
        pool["pages"] = await pipeline.pages(crawl_id)
        pool["failures"] = await pipeline.failures(crawl_id)
    return status, pool


async def test_crunch_none_stores_pages_without_a_pool_process(settings: Settings) -> None:
    settings = settings.replace(crawl={"crunch": "none"})
    with ThreadedSite(CONFIG) as site:
        status, pool = await crawl_with_worker(settings, site.base_url + "/list")
    assert status.done and status.stored == CONFIG.pages
    assert pool["pids"] == [] and pool["batches"] == 0  # the pool never started a process
    page = pool["pages"][0]
    assert page["title"] and page["link_count"] > 0 and page["sha256"]
    assert not {"word_count", "simhash", "top_words", "crunch"} & page.keys()


async def test_a_crawl_may_crunch_where_the_default_does_not(settings: Settings) -> None:
    """With `crunch = none` as the default the pool is idle, and starts for the crawl that asks."""
    settings = settings.replace(crawl={"crunch": "none"})
    with ThreadedSite(CONFIG) as site:
        status, pool = await crawl_with_worker(settings, site.base_url + "/list", crunch="fingerprint")
    assert status.done and status.stored == CONFIG.pages
    assert pool["pids"]
    assert all(len(page["simhash"]) == 16 and page["word_count"] > 0 for page in pool["pages"])


async def test_a_users_function_runs_in_the_pool_and_its_result_is_stored(settings: Settings) -> None:
    settings = settings.replace(cpu={"functions": [STATS, "tests.cpu_tasks:refuse"]})
    with ThreadedSite(CONFIG) as site:
        status, pool = await crawl_with_worker(settings, site.base_url + "/list", crunch=STATS)
    assert status.done and status.stored == CONFIG.pages
    for page in pool["pages"]:
        assert page["crunch"]["words"] > 100 and page["crunch"]["longest"]
        assert page["crunch"]["pid"] != os.getpid()  # a pool process ran it
        assert "simhash" not in page


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("tests.cpu_tasks:refuse", "crunch tests.cpu_tasks:refuse raised ValueError: this page is not for me"),
        ("tests.cpu_tasks:unstorable", "returned an integer MongoDB cannot store"),
    ],
)
async def test_a_function_that_fails_fails_its_pages_with_the_reason(
    settings: Settings, function: str, reason: str
) -> None:
    settings = settings.replace(cpu={"functions": [function]})
    with ThreadedSite(SiteConfig(pages=4, per_list_page=4, latency_ms=1)) as site:
        status, pool = await crawl_with_worker(settings, site.base_url + "/list", crunch=function)
    assert status.done and status.failed == 4 and status.stored == 0
    assert all(reason in failure["error"] and failure["attempts"] == 1 for failure in pool["failures"])


async def test_a_worker_runs_no_function_its_configuration_does_not_list(settings: Settings) -> None:
    """The crawl's options live in Redis: a name written there is not enough to run code."""
    api_settings = settings.replace(cpu={"functions": [STATS]})
    with ThreadedSite(SiteConfig(pages=3, per_list_page=3, latency_ms=1)) as site:
        async with Pipeline(api_settings) as pipeline:
            crawl_id = await pipeline.crawl(site.base_url + "/list", crunch=STATS)
            worker = build_worker(settings, burst=True, handle_signals=False)  # cpu.functions empty
            try:
                await worker.async_run()
            finally:
                await worker.close()
            status = await pipeline.status(crawl_id)
            failures = await pipeline.failures(crawl_id)
    assert status.done and status.failed == 3
    assert all("not registered in this worker" in failure["error"] for failure in failures)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fingerprints", "expected fingerprint, none or package.module:function"),
        ("no_such_module_here:fn", "cannot import 'no_such_module_here'"),
        ("tests.cpu_tasks:missing", "'tests.cpu_tasks' has no 'missing'"),
        ("tests.cpu_tasks:not_callable", "is not callable"),
        ("tests.cpu_tasks:nested", "must be a function defined at the top level"),
    ],
)
def test_invalid_values_are_refused_at_start(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="crawl.crunch: .*" + message.replace(".", r"\.")):
        load_settings(environ={"PIPELINE_CRAWL_CRUNCH": value})
    with pytest.raises(ConfigError, match="cpu.functions: .*" + message.replace(".", r"\.")):
        load_settings(environ={"PIPELINE_CPU_FUNCTIONS": value})


async def test_an_unlisted_function_is_refused_before_anything_is_queued(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"crawl.crunch: '{STATS}' is not in cpu.functions")):
        load_settings(environ={"PIPELINE_CRAWL_CRUNCH": STATS})
    async with Pipeline(settings) as pipeline:
        with pytest.raises(ConfigError, match=r"is not in cpu\.functions"):
            await pipeline.crawl("http://127.0.0.1:9/list", crunch=STATS)
    registered = load_settings(environ={"PIPELINE_CRAWL_CRUNCH": STATS, "PIPELINE_CPU_FUNCTIONS": STATS})
    assert registered.crawl.crunch == STATS


def test_cli_refuses_a_bad_crunch_with_exit_code_2(settings: Settings) -> None:
    result = run_cli("crawl", "http://127.0.0.1:9/list", "--crunch", "nope.nothing:here", env=service_env(settings))
    assert result.returncode == 2
    assert "crunch" in result.stderr and "cannot import 'nope.nothing'" in result.stderr
