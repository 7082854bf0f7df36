"""Periodic crawls: one run per tick across workers, overlapping ticks skipped, cheap re-crawls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.errors import ConfigError
from pipeline.settings import ScheduleSpec, Settings, load_settings
from pipeline.worker.settings import build_worker
from tests.helpers import crawl_to_completion, run_cli, service_env
from tests.servers.site import SiteConfig, ThreadedSite


def test_schedules_are_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[schedule]]\nname = "news"\nstart_url = "https://example.com/list"\ncron = "*/15 * * * *"\nmax_pages = 50\n'
        '[[schedule]]\nname = "api"\nstart_url = "https://example.com/api/items"\ncron = "@daily"\npipeline = "api"\n'
    )
    settings = load_settings(config, environ={})
    assert [s.name for s in settings.schedules] == ["news", "api"]
    assert settings.schedules[0].options["max_pages"] == 50 and settings.schedules[0].options["conditional"]
    for bad, message in [
        (
            'name = "x"\nstart_url = "https://e.com/"\ncron = "61 * * * *"',
            r"schedule\[x\]\.cron: '61 \* \* \* \*': bad minute",
        ),
        ('name = "x"\nstart_url = "ftp://e.com/"\ncron = "* * * * *"', r"schedule\[x\]\.start_url: unsupported scheme"),
        ('name = "x"\nstart_url = "https://e.com/"', r"schedule\[x\]\.cron: required"),
        (
            'name = "x"\nstart_url = "https://e.com/"\ncron = "@daily"\nmax_pages = "ten"',
            r"schedule\[x\]\.max_pages: expected a whole number",
        ),
        ('name = "x"\nstart_url = "https://e.com/"\ncron = "@daily"\nevery = 3', r"schedule\[x\]\.every: unknown"),
    ]:
        config.write_text("[[schedule]]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(config, environ={})


async def test_conditional_recrawl_stores_nothing_again(settings: Settings) -> None:
    config = SiteConfig(pages=40, per_list_page=40, latency_ms=2)
    with ThreadedSite(config) as site:
        first = await crawl_to_completion(settings, site.base_url + "/list")
        second = await crawl_to_completion(settings, site.base_url + "/list", conditional=True)
    assert first.stored == 40
    assert second.done and second.unchanged_count == 40 and second.stored == 0 and second.failed == 0
    async with Pipeline(settings) as pipeline:
        pages = await pipeline.pages(second.crawl_id)
    assert len(pages) == 40 and all(p["unchanged"] and p["title"] for p in pages)


@pytest.mark.slow
async def test_one_run_per_tick_and_no_stacking(settings: Settings) -> None:
    config = SiteConfig(pages=30, per_list_page=30, latency_ms=1500, latency_sigma=0.05)
    with ThreadedSite(config) as site:
        # Six fields, seconds first: a tick every 3 s.
        spec = ScheduleSpec(name="every3s", start_url=site.base_url + "/list", cron="*/3 * * * * *")
        scheduled = dataclasses_replace(settings, spec)
        workers = [build_worker(scheduled, handle_signals=False) for _ in range(3)]
        runs = [asyncio.create_task(w.async_run()) for w in workers]
        await asyncio.sleep(10)
        for worker in workers:
            await worker.close()
        for run in runs:
            run.cancel()

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        events = await db.schedule_events.find({"schedule": "every3s"}).sort("at", 1).to_list()
        crawls = await db.crawls.find({"options.schedule": "every3s"}).sort("created_at", 1).to_list()
    finally:
        await client.close()
    started = [e for e in events if e["action"] == "started"]
    skipped = [e for e in events if e["action"] == "skipped"]
    # About three ticks in ten seconds, each handled once although three workers saw it.
    assert 2 <= len(events) <= 4
    ticks = [e["at"].replace(microsecond=0) for e in events]
    assert len(set(ticks)) == len(ticks)
    assert started and skipped  # the first crawl (1.5 s per page) outlived the next tick
    assert len(crawls) == len(started)
    assert all("still running" in e["reason"] for e in skipped)


def dataclasses_replace(settings: Settings, spec: ScheduleSpec) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, schedules=(spec,))


def test_schedules_command(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[schedule]]\nname = "nightly"\nstart_url = "https://example.com/list"\ncron = "30 2 * * *"\n')
    env = service_env(settings)
    env["PIPELINE_CONFIG"] = str(config)
    result = run_cli("schedules", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["name"] == "nightly" and row["runs"] == 0 and row["next_run"].endswith("02:30:00+00:00")
    text = run_cli("schedules", env=env)
    assert "nightly: 30 2 * * *" in text.stdout and "next run" in text.stdout
