"""Change history: a re-crawl that finds other content keeps the version it replaces in
`page_versions`, and `pipeline history URL` lists them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.errors import PageNotFound
from pipeline.settings import Settings
from pipeline.store.blobs import blob_key
from pipeline.store.history import PAGE_VERSIONS, superseded_versions
from pipeline.store.mongo import MongoStore
from tests.helpers import StaticSite, crawl_to_completion, run_cli, service_env

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _page(text: str) -> str:
    return f"<html><head><title>{text}</title></head><body><p>{text}</p></body></html>"


def _sha(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()


def test_only_pages_with_other_content_replace_a_version() -> None:
    stored = {
        "a": {"url": "a", "sha256": "1", "blob_key": "k1", "fetched_at": T0, "crawl_id": "c1"},
        "b": {"url": "b", "sha256": "2", "blob_key": "k2", "fetched_at": T0, "crawl_id": "c1"},
    }
    batch = [
        {"url": "a", "sha256": "1"},  # unchanged
        {"url": "b", "sha256": "3", "blob_key": "k3", "fetched_at": T0, "crawl_id": "c2"},  # changed
        {"url": "b", "sha256": "4"},  # changed again in the same batch: 3 is kept too
        {"url": "c", "sha256": "5"},  # new
        {"url": "a", "crawl_id": "c2", "unchanged": True},  # a 304: no content, replaces nothing
    ]
    versions = superseded_versions(stored, batch)
    assert versions == [stored["b"], {"url": "b", "sha256": "3", "blob_key": "k3", "fetched_at": T0, "crawl_id": "c2"}]


async def test_a_retried_batch_keeps_each_version_once(settings: Settings) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url, tz_aware=True)
    try:
        store = MongoStore(client, settings.mongo.db, 10, 0.001)
        await store.ensure_indexes()
        old = {"url": "http://e.com/a", "sha256": "1" * 64, "blob_key": "k1", "fetched_at": T0, "crawl_id": "c1"}
        await store.save_page(dict(old))
        new = {**old, "sha256": "2" * 64, "blob_key": "k2", "fetched_at": T0 + dt.timedelta(days=1), "crawl_id": "c2"}
        await store.history.keep_replaced([new])  # as if the first write of the batch had failed
        await store.save_page(dict(new))
        assert await store.db[PAGE_VERSIONS].count_documents({}) == 1
        timeline = await store.history.timeline("http://e.com/a")
        assert timeline == [{**new, "current": True}, {**old, "current": False}]
        with pytest.raises(PageNotFound):
            await store.history.timeline("http://e.com/never")
    finally:
        await client.close()


async def test_recrawls_build_each_pages_history(settings: Settings, s3_client: Any) -> None:
    first = {"/a": _page("a one"), "/b": _page("b one"), "/c": _page("c one")}
    async with StaticSite({"/list": '<a href="/a">A</a><a href="/b">B</a><a href="/c">C</a>', **first}) as site:
        one = await crawl_to_completion(settings, site.base_url + "/list")
        site.pages["/b"] = _page("b two")
        two = await crawl_to_completion(settings, site.base_url + "/list")
        site.pages["/b"] = first["/b"]  # back to the first content: a third version, equal to the first
        site.pages["/c"] = _page("c two")
        three = await crawl_to_completion(settings, site.base_url + "/list")
        base = site.base_url
    assert one.stored == two.stored == three.stored == 3

    env = service_env(settings)
    result = run_cli("history", base + "/b", "--json", env=env)
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    prefix = settings.s3.prefix
    expected = [(first["/b"], three.crawl_id, True), (_page("b two"), two.crawl_id, False),
                (first["/b"], one.crawl_id, False)]  # fmt: skip
    assert [(v["sha256"], v["crawl_id"], v["current"]) for v in versions] == [
        (_sha(html), crawl, current) for html, crawl, current in expected
    ]
    assert [v["blob_key"] for v in versions] == [blob_key(prefix, _sha(html)) for html, _, _ in expected]
    assert [v["fetched_at"] for v in versions] == sorted((v["fetched_at"] for v in versions), reverse=True)
    # The replaced bodies are still in S3, under their sha256.
    old = await s3_client.get_object(Bucket=settings.s3.bucket, Key=versions[1]["blob_key"])
    assert (await old["Body"].read()).decode() == _page("b two")

    # An unchanged page has its stored version only; the text listing marks it.
    result = run_cli("history", base + "/a", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "1 version" in lines[0] and len(lines) == 2
    assert lines[1].startswith("* ") and _sha(first["/a"]) in lines[1] and three.crawl_id in lines[1]

    async with Pipeline(settings) as pipeline:
        history = await pipeline.history(base + "/c")
        assert [(v["sha256"], v["current"]) for v in history] == [(_sha(_page("c two")), True),
                                                                  (_sha(first["/c"]), False)]  # fmt: skip
        assert len(await pipeline.history(base + "/a#top")) == 1  # looked up in its canonical form
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        assert await client[settings.mongo.db][PAGE_VERSIONS].count_documents({}) == 3  # none for /a
    finally:
        await client.close()

    result = run_cli("history", base + "/never-stored", env=env)
    assert result.returncode == 2
    assert "no crawl has stored" in result.stderr and "Traceback" not in result.stderr
