"""Workers' Prometheus metrics, health endpoint and heartbeats against real services; JSON logs."""

from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pipeline.api import Pipeline
from pipeline.observe.exporter import serve_metrics
from pipeline.observe.heartbeat import Liveness, read_workers
from pipeline.observe.json_logs import JsonFormatter
from pipeline.observe.metrics import FAILURE_KINDS, Metrics, busiest_hosts, failure_kind
from pipeline.settings import Settings
from tests.helpers import eventually, running_workers
from tests.servers.site import SiteConfig, ThreadedSite, expected_child_paths, missing_paths


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(scrapes: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]], name: str, **labels: str) -> float:
    wanted = tuple(sorted(labels.items()))
    return sum(value for scrape in scrapes for (n, got), value in scrape.items() if n == name and got == wanted)


async def test_two_workers_count_what_the_crawl_did(settings: Settings) -> None:
    port = _free_port()
    settings = settings.replace(worker={"metrics_port": port})
    config = SiteConfig(pages=80, per_list_page=40, latency_ms=3, missing_rate=0.05, links_per_page=0, seed=5)
    with ThreadedSite(config) as site:
        async with Pipeline(settings) as pipeline, running_workers(settings, 2) as workers:
            crawl_id = await pipeline.crawl(site.base_url + "/list")
            status = await pipeline.wait(crawl_id, timeout=60)
            ports = sorted(worker.ctx["metrics_port"] for worker in workers)
            async with aiohttp.ClientSession() as http:
                scrapes = [_samples(await (await http.get(f"http://127.0.0.1:{p}/metrics")).text()) for p in ports]
                health = await http.get(f"http://127.0.0.1:{ports[0]}/health")
                health_body = await health.json()
            redis = pipeline.control.frontier.redis

            async def both_polling() -> bool:
                seen[:] = await read_workers(redis, settings.redis.queue)
                return len(seen) == 2 and all(w["alive"] and w["polling"] for w in seen)

            seen: list[dict[str, Any]] = []
            await eventually(both_polling, timeout=15)
        # Stopped cleanly, the workers take their records away at once.
        gone = await _workers_left(settings)

    missing = len(missing_paths(config))
    assert status.stored == len(expected_child_paths(config)) - missing and status.failed == missing
    # Two workers on one machine: the second took the next free port above the first
    # (the next free one: an outgoing connection may hold the port right above)
    assert ports[0] == port < ports[1] <= port + 20
    assert _total(scrapes, "pipeline_pages_stored_total", outcome="stored") == status.stored
    assert _total(scrapes, "pipeline_failures_total", reason="http_4xx") == status.failed
    # One read of /robots.txt for the two workers, answered 404 (no rules): a 4xx response too.
    robots_reads = 1
    assert _total(scrapes, "pipeline_responses_total", status_class="4xx") == status.failed + robots_reads
    assert _total(scrapes, "pipeline_responses_total", status_class="2xx") == status.stored + config.list_pages
    requests = status.stored + status.failed + config.list_pages + robots_reads
    assert _total(scrapes, "pipeline_fetch_seconds_count") == requests
    assert _total(scrapes, "pipeline_stored_bytes_total") > status.stored * 1000
    assert _total(scrapes, "pipeline_host_limit", host="127.0.0.1") > 0
    assert _total(scrapes, "pipeline_queue_jobs", crawl_state="running") == 0
    assert _total(scrapes, "pipeline_cpu_pool_processes") == 2
    assert all(("pipeline_event_loop_lag_seconds", ()) in scrape for scrape in scrapes)
    assert health.status == 200 and health_body["polling"] is True
    assert sorted(w["metrics"] for w in seen) == [f"127.0.0.1:{p}" for p in ports]
    assert all(w["max_jobs"] == 50 and w["jobs_running"] >= 0 and w["loop_lag_ms"] >= 0 for w in seen)
    assert gone == []


async def _workers_left(settings: Settings) -> list[dict[str, Any]]:
    async with Pipeline(settings) as pipeline:
        return await read_workers(pipeline.control.frontier.redis, settings.redis.queue)


async def test_health_says_when_a_worker_is_not_polling() -> None:
    liveness = Liveness()
    async with AsyncExitStack() as stack:
        port = await serve_metrics(stack, Metrics(), liveness, host="127.0.0.1", port=_free_port(), poll_within_s=5)
        async with aiohttp.ClientSession() as http:
            never = await http.get(f"http://127.0.0.1:{port}/health")
            liveness.last_poll = time.monotonic()
            now = await http.get(f"http://127.0.0.1:{port}/health")
            assert (never.status, (await never.json())["status"]) == (503, "not polling")
            assert now.status == 200


def test_host_labels_are_bounded() -> None:
    rows = [(f"host{i}.example", 8, i % 7, i % 3) for i in range(500)]
    kept = busiest_hosts(rows, keep=10)
    assert len(kept) == 11 and kept[-1][0] == "other"
    assert sum(r[2] for r in kept) == sum(r[2] for r in rows)
    assert min(r[2] + r[3] for r in kept[:10]) >= max(r[2] + r[3] for r in rows if r not in kept)


@given(st.text(), st.one_of(st.none(), st.integers(0, 999)))
def test_failure_labels_come_from_a_fixed_set(reason: str, status: int | None) -> None:
    assert failure_kind(reason, status) in FAILURE_KINDS


def test_failure_kinds() -> None:
    assert failure_kind("refused to connect to non-public address 10.0.0.1", None) == "blocked_address"
    assert failure_kind("HTTP 404", 404) == "http_4xx"
    assert failure_kind("HTTP 503", 503) == "http_5xx"
    assert failure_kind("redirect loop at http://x/", 301) == "redirects"
    assert failure_kind("connection error: ClientConnectorError: boom", None) == "connection"
    assert failure_kind("invalid sitemap: truncated gzip data", 200) == "invalid_sitemap"


def test_json_log_lines() -> None:
    record = logging.LogRecord("pipeline.worker", logging.WARNING, __file__, 1, "to %s", ("redis://u:pw@h:1",), None)
    line: dict[str, Any] = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "pipeline.worker"
    assert line["message"] == "to redis://***@h:1" and line["time"].endswith("+00:00")
