"""The dashboard in a real headless chromium (Playwright), and its defences without one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

from pipeline.api import Pipeline
from pipeline.dashboard.data import safe_url
from pipeline.dashboard.screenshot import CHROMIUM, CHROMIUM_ARGS
from pipeline.dashboard.server import TOKEN_HEADER, resolve_token, start_dashboard
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from tests.helpers import eventually, running_workers
from tests.servers.site import SiteConfig, ThreadedSite


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            await context.close()


async def _text(page: Page, selector: str) -> str:
    return (await page.inner_text(selector)).strip()


async def test_the_page_shows_a_crawl_moving_and_pauses_it(settings: Settings, browser: BrowserContext) -> None:
    settings = settings.replace(fetch={"per_host": 3, "per_host_min": 3, "adaptive": False})
    config = SiteConfig(pages=300, per_list_page=100, latency_ms=60, latency_sigma=0.1, links_per_page=0)
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline, running_workers(settings, 2):
            runner, address = await start_dashboard(pipeline, "127.0.0.1", 0, None)
            try:
                crawl_id = await pipeline.crawl(site.base_url + "/list")
                page = await browser.new_page()
                problems: list[str] = []
                page.on("console", lambda m: _note(problems, m))
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                await page.goto(address)
                row = f'tr[data-crawl="{crawl_id}"]'
                await page.wait_for_selector(f'{row} [data-state="running"]')
                first = await _stored(page, row)

                async def moved() -> bool:
                    return await _stored(page, row) > first

                await eventually(moved, timeout=30, interval=0.2)
                # The selected crawl's own panel shows the same crawl, its chart and counters.
                await page.wait_for_selector(f'#detail[data-crawl="{crawl_id}"] .chart svg')
                assert "pages/s" in await _text(page, "#detail .chart-head")

                await page.click(f'{row} button[data-action="pause"]')

                async def paused() -> bool:
                    return (await pipeline.status(crawl_id)).state == "paused"

                await eventually(paused, timeout=10)
                await page.wait_for_selector(f'{row} [data-state="paused"]')
                await page.wait_for_selector(f'{row} button[data-action="resume"]')
                assert problems == []
                await pipeline.cancel(crawl_id, timeout=20)
            finally:
                await runner.cleanup()


async def _stored(page: Page, row: str) -> int:
    return int((await _text(page, f"{row} .count-stored")).replace(",", "") or 0)


def _note(problems: list[str], message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"console {message.type}: {message.text}")


async def test_defences(settings: Settings) -> None:
    async with Pipeline(settings) as pipeline:
        secret_url = "http://crawler:hunter2@127.0.0.1:9/list?api_key=XYZ123&page=2"
        crawl_id = await pipeline.crawl(secret_url)
        runner, address = await start_dashboard(pipeline, "127.0.0.1", 0, None)
        try:
            async with aiohttp.ClientSession() as http:
                page = await (await http.get(address)).text()
                token = page.split('name="pipeline-token" content="', 1)[1].split('"', 1)[0]
                assert len(token) >= 24
                api = address + "api/overview"
                assert (await http.get(api)).status == 401
                assert (await http.get(api, headers={TOKEN_HEADER: "wrong" * 8})).status == 401
                response = await http.get(api, headers={TOKEN_HEADER: token})
                assert response.status == 200
                headers = response.headers
                assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
                assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
                body = await response.text()
                # A page on another origin that rebinds its name to 127.0.0.1 is refused.
                rebound = await http.get(api, headers={TOKEN_HEADER: token, "Host": "evil.example:80"})
                assert rebound.status == 421
                action = f"{address}api/crawls/{crawl_id}/pause"
                cross = await http.post(action, headers={TOKEN_HEADER: token, "Origin": "http://evil.example"})
                assert cross.status == 403
                site = await http.post(action, headers={TOKEN_HEADER: token, "Sec-Fetch-Site": "cross-site"})
                assert site.status == 403
                assert (await http.post(action)).status == 401
                assert (await pipeline.status(crawl_id)).state == "running"
                same = await http.post(action, headers={TOKEN_HEADER: token, "Origin": address.rstrip("/")})
                assert same.status == 200 and (await same.json())["state"] == "paused"
                again = await http.post(action, headers={TOKEN_HEADER: token})
                assert again.status == 409 and "only a running crawl" in (await again.json())["error"]
        finally:
            await runner.cleanup()
        await pipeline.cancel(crawl_id, timeout=5)
    row = next(c for c in json.loads(body)["crawls"] if c["crawl_id"] == crawl_id)
    assert row["start_url"] == "http://127.0.0.1:9/list?api_key=***&page=2"
    assert "hunter2" not in body and "XYZ123" not in body


def test_token_rules() -> None:
    with pytest.raises(ConfigError, match="not a loopback address: give a --token"):
        resolve_token("0.0.0.0", None)
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_token("0.0.0.0", "short")
    assert resolve_token("0.0.0.0", "a-long-enough-token") == ("a-long-enough-token", False)  # never on the page
    made, embedded = resolve_token("127.0.0.1", None)
    assert embedded and len(made) >= 24


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@example.com/a?b=1", "https://example.com/a?b=1"),
        ("https://example.com/a?token=abc&sig=x&q=1", "https://example.com/a?token=***&sig=***&q=1"),
        ("https://example.com/plain", "https://example.com/plain"),
    ],
)
def test_urls_lose_their_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown
