"""The commands users type: `arq pipeline.WorkerSettings` and `pipeline ...`, as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from pipeline.cli.crawl_flags import given_crawl_options
from pipeline.cli.main import _parser
from pipeline.settings import Settings
from tests.helpers import ROOT, run_cli, service_env
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths, missing_paths


@pytest.mark.slow
def test_arq_worker_process_and_cli_crawl(settings: Settings) -> None:
    env = service_env(settings)
    config = SiteConfig(pages=150, per_list_page=40, latency_ms=5, missing_rate=0.02, seed=3)
    worker = subprocess.Popen(
        [sys.executable, "-m", "arq", "pipeline.WorkerSettings"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with ThreadedSite(config) as site:
            result = run_cli("crawl", site.base_url + "/list", "--wait", "--json", "--timeout", "90", env=env)
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, worker_log = worker.communicate(timeout=30)
    assert worker.returncode == 0, worker_log
    assert "Traceback" not in worker_log

    missing = len(missing_paths(config))
    assert report["stored"] == len(expected_child_paths(config)) - missing
    assert report["failed"] == missing
    assert report["discovered"] == report["stored"] + report["failed"]
    assert report["duration_s"] > 0 and report["crawl_id"]
    with MongoClient(settings.mongo.url) as client:
        db = client[settings.mongo.db]
        assert db.pages.count_documents({"crawl_id": report["crawl_id"]}) == report["stored"]
        assert db.failures.count_documents({"crawl_id": report["crawl_id"]}) == report["failed"]
        assert db.crawls.find_one({"_id": report["crawl_id"]})["state"] == "done"  # type: ignore[index]

    status = run_cli("status", report["crawl_id"], "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stored"] == report["stored"]


@pytest.mark.parametrize(
    "url", ["mailto:someone@example.com", "ftp://example.com/x", "not a url", "javascript:alert(1)"]
)
def test_crawl_refuses_bad_urls(settings: Settings, url: str) -> None:
    result = run_cli("crawl", url, env=service_env(settings))
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--deny", "("], "deny: invalid regular expression '('"),
        (["--allow", "/docs/", "--allow", "*x"], "allow: invalid regular expression '*x'"),
        (["--sitemap", "mailto:someone@example.com"], "sitemaps: unsupported scheme mailto:"),
    ],
)
def test_crawl_refuses_bad_scope_rules_and_sitemaps(settings: Settings, flags: list[str], message: str) -> None:
    result = run_cli("crawl", "http://example.com/", *flags, env=service_env(settings))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_crawl_refuses_a_bad_field_selector_before_starting(settings: Settings) -> None:
    """A field that cannot work is refused when the crawl is submitted, not found out page by page."""
    result = run_cli(
        "crawl", "http://example.com/", "--field", "price=.price", "--field", "x=h1[", env=service_env(settings)
    )
    assert result.returncode == 2
    assert "fields: field x: invalid CSS selector 'h1['" in result.stderr and "Traceback" not in result.stderr
    with MongoClient(settings.mongo.url) as client:
        assert client[settings.mongo.db].crawls.count_documents({}) == 0  # nothing was started


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--header", "Bad Name=x"], "headers: header name 'Bad Name' is not a valid HTTP token"),
        (["--cookie", "a=b;c"], "cookies: cookie a"),
        (["--auth", "nopassword"], "auth: expected USER:PASSWORD"),
        (["--proxy", "http://u:s3cr3t@proxy.test:3128/path"], "proxies: http://u:***@proxy.test:3128/path"),
    ],
)
def test_crawl_refuses_bad_http_options(settings: Settings, flags: list[str], message: str) -> None:
    result = run_cli("crawl", "http://example.com/", *flags, env=service_env(settings))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "s3cr3t" not in result.stderr


def test_repeated_flags_are_lists_of_the_options() -> None:
    sitemaps = ["--sitemap", "http://h.test/a.xml", "--sitemap", "http://h.test/b.xml"]
    scope = ["--allow", r"/p\d{1,3},x", "--deny", "/old/"]
    args = _parser().parse_args(["crawl", "http://h.test/", *sitemaps, *scope, "--robots-sitemaps", "--store-lists"])
    assert given_crawl_options(args) == {
        "sitemaps": ["http://h.test/a.xml", "http://h.test/b.xml"],
        "allow": [r"/p\d{1,3},x"],
        "deny": ["/old/"],
        "robots_sitemaps": True,
        "store_lists": True,
    }


def test_bad_configuration_stops_with_the_key_named(settings: Settings, tmp_path: Path) -> None:
    env = service_env(settings)
    env["PIPELINE_FETCH_CONCURRENCY"] = "many"
    result = run_cli("status", env=env)
    assert result.returncode == 2
    assert "fetch.concurrency" in result.stderr and "PIPELINE_FETCH_CONCURRENCY" in result.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text("[crawl]\nscope = 'everywhere'\n")
    env = service_env(settings)
    env["PIPELINE_CONFIG"] = str(bad)
    worker = subprocess.run(
        [sys.executable, "-m", "arq", "pipeline.WorkerSettings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode != 0
    assert "crawl.scope" in worker.stderr and "Traceback" not in worker.stderr


@pytest.mark.parametrize("command", ["status", "pause", "cancel"])
def test_unknown_crawl_is_refused(settings: Settings, command: str) -> None:
    result = run_cli(command, "nosuchcrawl", env=service_env(settings))
    assert result.returncode == 2
    assert "no crawl with id 'nosuchcrawl'" in result.stderr and "Traceback" not in result.stderr


def test_steering_from_the_shell(settings: Settings) -> None:
    """A crawl whose start page the SSRF guard refuses fails saying why (exit 1); what its state
    does not allow is refused (exit 2); a retry once allowed runs it to the end (exit 0)."""
    env = service_env(settings)
    env["PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS"] = "false"
    with ThreadedSite(SiteConfig(pages=5, latency_ms=1, links_per_page=0)) as site:
        start = site.base_url + "/list"
        result = run_cli("crawl", start, "--wait", "--json", "--timeout", "60", env=env)
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["state"] == "failed" and "non-public address" in report["error"]
        assert f"crawl {report['crawl_id']} failed: start page {start} failed: refused" in result.stderr

        refused = run_cli("resume", report["crawl_id"], env=env)
        assert refused.returncode == 2
        assert f"crawl {report['crawl_id']} is failed: only a paused crawl can be resumed" in refused.stderr

        env["PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS"] = "true"
        retried = run_cli("retry", report["crawl_id"], "--wait", "--json", "--timeout", "60", env=env)
    assert retried.returncode == 0, retried.stderr
    done = json.loads(retried.stdout)
    assert done["state"] == "done" and done["stored"] == 5 and done["error"] is None


@pytest.mark.slow
def test_demo_runs_on_embedded_services(tmp_path: Path) -> None:
    """The README's first command: no services configured, everything embedded under the data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_STORAGE_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--pages", "60", "--latency-ms", "5", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "done"
    assert report["stored"] + report["failed"] == report["discovered"] == 60
    assert report["stored"] >= 55
    assert report["bodies"] == (tmp_path / "data" / "blobs").resolve().as_uri()
    assert list((tmp_path / "data" / "blobs" / "bodies").glob("*/*"))  # the bodies, by digest
    assert not (tmp_path / "data" / "services.json").exists()  # embedded services stopped again
