"""The paginated API collector end to end: real API server, arq workers, Redis, MongoDB, process pool."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.crunch.objects import crunch_object
from pipeline.download.json_api import decode_object, details_url, parse_listing
from pipeline.errors import PermanentFailure
from pipeline.jobs.collect import ITEM_JOB, LIST_JOB
from pipeline.settings import Settings
from pipeline.worker.settings import build_worker
from tests.helpers import StaticSite, crawl_to_completion
from tests.servers.api_site import (
    ApiSite,
    ApiSiteConfig,
    ThreadedApiSite,
    flaky_ids,
    list_path,
    missing_ids,
    object_ids,
    object_path,
)

PIPELINE = {"list_job": LIST_JOB, "item_job": ITEM_JOB}


async def _documents(settings: Settings, crawl_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        db = client[settings.mongo.db]
        objects = await db.objects.find({"crawl_id": crawl_id}).to_list()
        failures = await db.failures.find({"crawl_id": crawl_id}).to_list()
        record = await db.crawls.find_one({"_id": crawl_id})
    finally:
        await client.close()
    return objects, failures, record


async def test_collector_stores_every_object_once(settings: Settings) -> None:
    settings = settings.replace(cpu={"processes": 2})
    config = ApiSiteConfig(
        pages=5,
        per_page=40,
        list_latency_ms=5,
        object_latency_ms=5,
        details_latency_ms=8,
        error_rate=0.05,
        missing_rate=0.02,
        seed=3,
    )
    flaky, missing = flaky_ids(config), missing_ids(config)
    with ThreadedApiSite(config) as api:
        status = await crawl_to_completion(settings, api.list_url, pipeline="api")
        server = api.site
        hits, calls = dict(server.hits), dict(server.calls)
    objects, failures, record = await _documents(settings, status.crawl_id)

    expected = {api.base_url + object_path(i) for i in object_ids(config) if i not in missing}
    assert status.done
    assert status.stored == len(objects) == len(expected) == config.objects - len(missing)
    assert status.failed == len(failures) == len(missing)
    assert status.counters["lists_done"] == config.pages
    assert status.counters["retries"] == len(flaky)

    # Every object once, with both payloads and the crunch, crunched in a pool process.
    assert {o["url"] for o in objects} == expected
    assert len({o["object_id"] for o in objects}) == len(objects)
    for document in objects:
        crunch = document["crunch"]
        assert document["object"]["id"] == document["details"]["id"] == document["object_id"]
        assert len(crunch["description"]["simhash"]) == 16
        assert crunch["reviews"] == len(document["details"]["reviews"])
        assert 1 <= crunch["score"] <= 5
        assert crunch["pid"] != os.getpid()
        assert document["attempts"] == (2 if document["object_id"] in flaky else 1)
    assert sum(o["crunch"]["copied_reviews"] for o in objects) > 0
    assert {f["url"] for f in failures} == {api.base_url + object_path(i) for i in missing}
    assert all(f["error"] == "HTTP 404" and f["status"] == 404 for f in failures)

    # Exactly one object call and one details call per object; flaky objects (503 once) twice.
    # The two calls of an object always both complete, so a retry repeats both.
    for i in object_ids(config):
        tries = 2 if i in flaky else 1
        assert hits[object_path(i)] == tries, i
        assert hits[object_path(i) + "/details"] == tries, i
    assert all(hits[list_path(page)] == 1 for page in range(2, config.pages + 1))
    assert hits["/api/items"] == 1
    item_calls = config.objects + len(flaky)
    assert calls == {"list": config.pages, "object": item_calls, "details": item_calls}
    # Calls overlap across objects, and the two calls of one object overlap (made in turn, never).
    assert server.max_item_in_flight > 1
    assert server.overlapped

    assert record is not None
    summary = record["summary"]
    assert summary["objects"] == status.stored
    assert sum(c["objects"] for c in summary["categories"].values()) == status.stored


async def test_collector_with_split_roles(settings: Settings) -> None:
    """An I/O worker sends `crunch_object` to a CPU worker, whose pool crunches every object."""
    settings = settings.replace(cpu={"queue": settings.redis.queue + ":cpu"})
    config = ApiSiteConfig(pages=2, per_page=15, list_latency_ms=2, object_latency_ms=2, details_latency_ms=2)
    io_worker = build_worker(settings, "io", handle_signals=False)
    cpu_worker = build_worker(settings, "cpu", handle_signals=False)
    tasks = [asyncio.create_task(w.async_run()) for w in (io_worker, cpu_worker)]
    try:
        with ThreadedApiSite(config) as api:
            async with Pipeline(settings) as pipeline:
                crawl_id = await pipeline.crawl(api.list_url, list_job=LIST_JOB, item_job=ITEM_JOB, on_complete=[])
                status = await pipeline.wait(crawl_id, timeout=60)
        pool_pids = set(cpu_worker.ctx["cpu_pool"].pids())
    finally:
        for worker in (io_worker, cpu_worker):
            await worker.close()
        for task in tasks:
            task.cancel()
    objects, _, _ = await _documents(settings, crawl_id)
    assert status.done and status.stored == len(objects) == config.objects
    assert cpu_worker.jobs_complete == config.objects
    assert {o["crunch"]["pid"] for o in objects} <= pool_pids


async def test_a_list_page_that_is_not_json_fails_with_the_reason(settings: Settings) -> None:
    async with StaticSite({"/api/items": "<html><body>Maintenance</body></html>"}) as site:
        status = await crawl_to_completion(settings, site.base_url + "/api/items", on_complete=[], **PIPELINE)
    _, failures, _ = await _documents(settings, status.crawl_id)
    assert status.state == "failed" and status.error is not None and "invalid JSON" in status.error
    assert status.counters["lists_failed"] == 1
    assert site.hits["/api/items"] == 1  # not retried: another try would get the same page
    [failure] = failures
    assert failure["kind"] == "list" and failure["status"] == 200
    assert failure["error"].startswith("invalid JSON (text/html): Expecting value")


async def test_api_site_paginates_over_every_object() -> None:
    config = ApiSiteConfig(pages=3, per_page=4, list_latency_ms=0, object_latency_ms=0, details_latency_ms=0)
    seen: list[int] = []
    async with ApiSite(config) as api, aiohttp.ClientSession() as session:
        url: str | None = api.list_url
        while url is not None:
            async with session.get(url) as response:
                page = await response.json()
            seen += [item["id"] for item in page["items"]]
            assert all(item["url"] == object_path(item["id"]) for item in page["items"])
            url = api.url(page["next"]) if page["next"] else None
        async with session.get(api.url(object_path(5))) as response:
            first = await response.read()
        async with session.get(api.url(list_path(4))) as response:
            assert response.status == 404
    assert seen == list(object_ids(config))
    async with (
        ApiSite(config) as again,
        aiohttp.ClientSession() as session,
        session.get(again.url(object_path(5))) as response,
    ):
        assert await response.read() == first  # a pure function of the config and the id


def test_crunch_object() -> None:
    review = "Sturdy frame, easy to assemble, and the hinge still works after months of daily use."
    obj = {"id": 1, "description": "Polished brass lantern. " * 40}
    details = {
        "reviews": [
            {"rating": 4, "text": review},
            {"rating": 2, "text": "Arrived late and the packaging was damaged; the lens was cracked."},
            {"rating": 5, "text": review.upper()},  # the same text posted again
            {"rating": "five", "text": "not a rating"},
            "not a review",
            {"rating": 5},  # a rating without text is a review, and copies nothing
        ],
        "stock": {"ams": 3, "fra": 0, "dub": "many"},
    }
    crunched = crunch_object(obj, details)
    assert crunched["reviews"] == 4 and crunched["invalid_reviews"] == 2 and crunched["copied_reviews"] == 1
    assert crunched["rating"] == {
        "count": 3,
        "mean": 3.667,
        "stdev": 1.247,
        "histogram": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1},
    }
    assert crunched["score"] == round((3 * 5 + 11) / 8, 3)  # pulled towards the prior of 3
    assert crunched["stock"] == 3
    assert crunched["description"]["top_words"][:3] == [["polished", 40], ["brass", 40], ["lantern", 40]]
    assert crunched["pid"] == os.getpid()
    assert crunch_object({}, {}) | {"pid": 0} == crunch_object({"description": 7}, {"reviews": "x"}) | {"pid": 0}


def test_crunch_module_keeps_pool_processes_light() -> None:
    """Pool processes import `pipeline.crunch.objects` for `crunch_object`; it must not load the I/O stack."""
    heavy = ("aiohttp", "arq", "pymongo", "redis", "botocore", "selectolax")
    code = f"import sys, pipeline.crunch.objects; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_payload_shapes_fail_permanently_with_a_reason() -> None:
    with pytest.raises(PermanentFailure, match=r"expected a JSON object, got a JSON list"):
        decode_object(b"[1, 2]", "application/json")
    with pytest.raises(PermanentFailure, match=r"invalid JSON \(no content type\)"):
        decode_object(b"\xff\xfe{", "")
    with pytest.raises(PermanentFailure, match=r"no 'items' array"):
        parse_listing({"results": []})
    listing = parse_listing({"items": [{"url": "/a"}, {"id": 2}, 3], "next": None})
    assert listing.item_urls == ["/a"] and listing.invalid == 2 and listing.next_url is None
    assert details_url("http://h/api/items/7?v=2") == "http://h/api/items/7/details?v=2"
