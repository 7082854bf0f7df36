"""Take a screenshot of the dashboard with live crawls in it: `python -m pipeline.dashboard.screenshot`.

For developers (it needs the dev group's Playwright and Debian's chromium): it starts embedded
services in a temporary folder, demo sites on loopback, two workers in this process, a few crawls
in every state (running, paused, done with failures, failed, cancelled) and a schedule, serves
the dashboard, lets it collect a few seconds of rates, and saves a PNG (`docs/dashboard.png` by
default). The same steps serve to look at the page after changing it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from pipeline.api import Pipeline
from pipeline.cli.demo_site import DemoSite
from pipeline.cli.runtime import services
from pipeline.crawl.periodic import run_schedule
from pipeline.dashboard.server import start_dashboard
from pipeline.settings import ScheduleSpec, Settings
from pipeline.worker.settings import build_worker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def workers(settings: Settings, count: int) -> AsyncIterator[None]:
    running = [build_worker(settings, handle_signals=False) for _ in range(count)]
    tasks = [asyncio.create_task(worker.async_run()) for worker in running]
    try:
        yield
    finally:
        for worker, task in zip(running, tasks, strict=True):
            await worker.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def stage(pipeline: Pipeline, settings: Settings, sites: list[DemoSite]) -> str:
    """Crawls in every state; returns the id of the running one."""
    big, paused_site, small = sites
    # Done, with a few failures, started by the schedule.
    control = pipeline.control
    done_id = await run_schedule(control.store, control.frontier, settings, settings.schedules[0])
    assert done_id is not None
    await pipeline.wait(done_id, timeout=120)
    # Failed: its start page does not exist.
    failed = await pipeline.crawl(small.base_url + "/list-that-moved")
    await pipeline.wait(failed, timeout=60)
    # Cancelled part-way.
    cancelled = await pipeline.crawl(paused_site.base_url + "/list")
    await asyncio.sleep(2.0)
    await pipeline.cancel(cancelled, timeout=30)
    # Paused part-way, and one running.
    paused = await pipeline.crawl(paused_site.base_url + "/list", max_pages=900)
    running = await pipeline.crawl(big.base_url + "/list")
    await asyncio.sleep(3.0)
    await pipeline.pause(paused)
    return running


async def take(out: Path, width: int, height: int, settle_s: float) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="pipeline-screenshot-") as folder:
        spec = ScheduleSpec(name="catalogue", cron="0 3 * * *", start_url="http://127.0.0.1:1/list")
        settings = Settings().replace(
            storage={"data_dir": str(Path(folder) / "data")},
            fetch={"allow_private_networks": True, "per_host": 6, "adaptive": False, "retry_base_delay": 0.2},
            worker={"max_tries": 2},
            cpu={"processes": 1},
        )
        sites = [DemoSite(4000, 120), DemoSite(2000, 60), DemoSite(240, 10, missing_rate=0.03)]
        urls = [await site.start() for site in sites]
        spec = dataclasses.replace(spec, start_url=urls[2] + "/list")
        settings = dataclasses.replace(settings, schedules=(spec,))
        try:
            async with services(settings) as resolved, Pipeline(resolved) as pipeline, workers(resolved, 2):
                running = await stage(pipeline, resolved, sites)
                runner, address = await start_dashboard(pipeline, "127.0.0.1", 0, None)
                try:
                    async with async_playwright() as playwright:
                        browser = await playwright.chromium.launch_persistent_context(
                            str(Path(folder) / "browser"),
                            executable_path=CHROMIUM,
                            headless=True,
                            args=CHROMIUM_ARGS,
                            viewport={"width": width, "height": height},
                        )
                        page = await browser.new_page()
                        await page.goto(address)
                        await page.click(f'tr[data-crawl="{running}"]')
                        await asyncio.sleep(settle_s)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        await page.screenshot(path=str(out), full_page=True)
                        await browser.close()
                finally:
                    await runner.cleanup()
                with contextlib.suppress(Exception):
                    await pipeline.cancel(running, timeout=5)
        finally:
            for site in sites:
                await site.stop()
    print(f"saved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dashboard.screenshot", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=24.0, help="seconds of live updates before the picture")
    args = parser.parse_args()
    asyncio.run(take(args.out, args.width, args.height, args.settle))


if __name__ == "__main__":
    main()
