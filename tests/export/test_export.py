"""`pipeline export` and `Pipeline.export` on a real 2,000-page crawl: every format has one row per
stored page, columns can be picked, bodies come back byte for byte, S3 is written as one object,
and a failed export leaves nothing that looks complete."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pymongo import AsyncMongoClient

from pipeline.api import Pipeline
from pipeline.embedded.processes import ServiceProcess
from pipeline.errors import CrawlNotFound, ExportFailed, InvalidExport
from pipeline.export import destinations
from pipeline.settings import Settings
from tests.helpers import StaticSite, crawl_to_completion, run_burst_worker, run_cli, service_env, service_settings
from tests.servers.site import SiteConfig, ThreadedSite, render_child

PAGES = 2_000
FIELDS = {"heading": "h1"}


@dataclass
class Crawled:
    settings: Settings
    crawl_id: str
    served: dict[str, bytes]  # every child page's URL and the bytes the site sent for it
    stored: set[str]  # the URLs of the crawl's documents in `pages`
    tmp: Path


@pytest.fixture(scope="module")
async def crawled(
    redis_server: ServiceProcess,
    mongo_server: ServiceProcess,
    s3_server: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Crawled:
    """One crawl of a 2,000-page site (no latency), shared by the tests of this module. Bodies go
    to the file store, which reads them back quickly; `test_bodies_in_s3_export_to_s3` reads S3's."""
    tmp = tmp_path_factory.mktemp("export")
    settings = service_settings(redis_server, mongo_server, s3_server, tmp / "data").replace(s3={"bucket": ""})
    config = SiteConfig(pages=PAGES, per_list_page=100, page_bytes=5_000, latency_ms=0)
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list", fields=FIELDS)
        host = site.base_url.removeprefix("http://")
        served = {f"{site.base_url}/page/{i}": render_child(config, i, host) for i in range(PAGES)}
    assert status.done and status.stored == PAGES
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.url)
    try:
        stored = {doc["url"] async for doc in client[settings.mongo.db].pages.find({"crawl_id": status.crawl_id})}
    finally:
        await client.close()
    assert stored == set(served)
    return Crawled(settings, status.crawl_id, served, stored, tmp)


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_every_format_has_one_row_per_stored_page(crawled: Crawled) -> None:
    env = service_env(crawled.settings)

    result = run_cli("export", crawled.crawl_id, env=env)  # JSON Lines on stdout
    assert result.returncode == 0, result.stderr
    rows = _jsonl(result.stdout)
    assert len(rows) == PAGES
    assert {row["url"] for row in rows} == crawled.stored
    assert all("_id" not in row and row["crawl_id"] == crawled.crawl_id for row in rows)
    assert all(row["status"] == 200 and row["fetched_at"].endswith("+00:00") for row in rows)

    out = crawled.tmp / "pages.csv"
    result = run_cli("export", crawled.crawl_id, "--format", "csv", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert f"{PAGES} rows written" in result.stderr
    with out.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == PAGES
    assert {row["url"] for row in table} == crawled.stored
    header = list(table[0])
    assert header[:3] == ["url", "host", "crawl_id"]
    assert "_id" not in header
    assert {"timings.fetch_ms", "fields.heading", "simhash", "top_words"} <= set(header)
    assert json.loads(table[0]["top_words"])  # lists are JSON text
    assert all(row["fields.heading"].startswith("Page ") for row in table)  # the declared field, extracted
    assert [row["url"] for row in table] == sorted(crawled.stored)  # in URL order
    assert {row["parsed"] for row in table} == {"true"}

    out = crawled.tmp / "pages.parquet"
    result = run_cli("export", crawled.crawl_id, "--format", "parquet", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    parquet = pq.read_table(out)
    assert parquet.num_rows == PAGES
    assert parquet.column_names == header  # the same columns in the same order
    assert set(parquet.column("url").to_pylist()) == crawled.stored
    assert str(parquet.schema.field("status").type) == "int64"
    assert str(parquet.schema.field("fetched_at").type) == "timestamp[us, tz=UTC]"
    assert [p.name for p in crawled.tmp.iterdir() if p.name.endswith(".part")] == []


async def test_cli_exports_to_s3(crawled: Crawled, s3_client: Any) -> None:
    bucket = "exports-" + crawled.crawl_id
    await s3_client.create_bucket(Bucket=bucket)
    target = f"s3://{bucket}/crawls/{crawled.crawl_id}.parquet"
    result = run_cli(
        "export", crawled.crawl_id, "--format", "parquet", "--out", target, env=service_env(crawled.settings)
    )
    assert result.returncode == 0, result.stderr
    answer = await s3_client.get_object(Bucket=bucket, Key=f"crawls/{crawled.crawl_id}.parquet")
    table = pq.read_table(io.BytesIO(await answer["Body"].read()))
    assert table.num_rows == PAGES
    assert set(table.column("url").to_pylist()) == crawled.stored


async def test_fields_pick_columns_in_the_order_given(crawled: Crawled) -> None:
    env = service_env(crawled.settings)
    picked = "url,length,fields.heading,timings"
    result = run_cli("export", crawled.crawl_id, "--format", "csv", "--fields", picked, env=env)
    assert result.returncode == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0] == ["url", "length", "fields.heading", "timings.fetch_ms", "timings.total_ms"]
    assert len(table) == PAGES + 1
    lengths = {row[0]: int(row[1]) for row in table[1:]}
    assert lengths == {url: len(body) for url, body in crawled.served.items()}

    # JSON Lines keeps the document's shape: `timings` stays an object.
    result = run_cli("export", crawled.crawl_id, "--fields", "url,timings.fetch_ms", env=env)
    assert result.returncode == 0, result.stderr
    row = _jsonl(result.stdout)[0]
    assert list(row) == ["url", "timings"] and list(row["timings"]) == ["fetch_ms"]


async def test_bodies_are_the_bytes_the_site_served(crawled: Crawled) -> None:
    async with Pipeline(crawled.settings) as pipeline:
        out = io.BytesIO()
        rows = await pipeline.export(crawled.crawl_id, out, fields="url,content_type", with_body=True)
        assert rows == PAGES
        exported = _jsonl(out.getvalue().decode())
        assert all(list(row) == ["url", "content_type", "body", "body_encoding"] for row in exported)
        assert {row["body_encoding"] for row in exported} == {"text"}
        assert {row["url"]: row["body"].encode() for row in exported} == crawled.served

        path = crawled.tmp / "bodies.parquet"
        assert await pipeline.export(crawled.crawl_id, path, format="parquet", fields=["url", "body"]) == PAGES
        table = pq.read_table(path).to_pylist()
        assert {row["url"]: row["body"].encode() for row in table} == crawled.served


async def test_bad_requests_exit_2_and_write_nothing(crawled: Crawled) -> None:
    env = service_env(crawled.settings)
    out = crawled.tmp / "never.csv"
    for args in (
        ["no-such-crawl", "--format", "csv", "--out", str(out)],
        [crawled.crawl_id, "--format", "csv", "--fields", "url,titel", "--out", str(out)],
        [crawled.crawl_id, "--format", "parquet"],  # binary, so it needs --out
    ):
        result = run_cli("export", *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert "error:" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists()

    async with Pipeline(crawled.settings) as pipeline:
        with pytest.raises(CrawlNotFound):
            await pipeline.export("no-such-crawl", io.BytesIO())
        for fields in (["url", "titel"], ["fields.missing"], ["url", "", "title"], []):
            with pytest.raises(InvalidExport):
                await pipeline.export(crawled.crawl_id, io.BytesIO(), fields=fields)
        with pytest.raises(InvalidExport, match="jsonl, csv, parquet"):
            await pipeline.export(crawled.crawl_id, out, format="xml")
        with pytest.raises(InvalidExport, match="s3://BUCKET/KEY"):
            await pipeline.export(crawled.crawl_id, "s3://bucket-only")
    assert not out.exists()


async def test_a_failed_export_leaves_no_file_behind(crawled: Crawled) -> None:
    env = service_env(crawled.settings)
    result = run_cli("export", crawled.crawl_id, "--out", str(crawled.tmp / "missing-dir" / "x.jsonl"), env=env)
    assert result.returncode == 1
    assert "export failed" in result.stderr and "Traceback" not in result.stderr

    # A body that cannot be read late in the export fails it, after megabytes were written:
    # the file is not created and its temporary is removed.
    async with Pipeline(crawled.settings) as pipeline:
        listing = io.BytesIO()
        await pipeline.export(crawled.crawl_id, listing, fields="url,blob_key")
    victim = _jsonl(listing.getvalue().decode())[-10]  # the rows come in the same order every time
    blob = crawled.settings.data_dir / "blobs" / victim["blob_key"]
    moved = blob.with_name("away")
    blob.rename(moved)
    try:
        folder = crawled.tmp / "failing"
        folder.mkdir()
        result = run_cli("export", crawled.crawl_id, "--with-body", "--out", str(folder / "pages.jsonl"), env=env)
        assert result.returncode == 1, result.stderr
        assert victim["url"] in result.stderr and "Traceback" not in result.stderr
        assert list(folder.iterdir()) == []
    finally:
        moved.rename(blob)


async def test_bodies_in_s3_export_to_s3_in_parts(
    settings: Settings, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies read from S3, the export written to S3 as a multipart upload (parts as small as S3
    allows, so 12 MB of bodies take three), and a failed one leaving no object and no upload."""
    monkeypatch.setattr(destinations, "PART_BYTES", 5 * 1024 * 1024)
    config = SiteConfig(pages=40, per_list_page=40, page_bytes=300_000, latency_ms=0)
    with ThreadedSite(config) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list", crunch="none")
        host = site.base_url.removeprefix("http://")
        served = {f"{site.base_url}/page/{i}": render_child(config, i, host) for i in range(config.pages)}
    assert status.stored == config.pages
    bucket = settings.s3.bucket
    async with Pipeline(settings) as pipeline:
        rows = await pipeline.export(status.crawl_id, f"s3://{bucket}/exports/all.jsonl", with_body=True)
        assert rows == config.pages
        answer = await s3_client.get_object(Bucket=bucket, Key="exports/all.jsonl")
        assert answer["ContentType"] == "application/x-ndjson"
        assert answer["ContentLength"] > 10 * 1024 * 1024
        exported = _jsonl((await answer["Body"].read()).decode())
        assert {row["url"]: row["body"].encode() for row in exported} == served

        victim = exported[-1]
        await s3_client.delete_object(Bucket=bucket, Key=victim["blob_key"])
        with pytest.raises(ExportFailed, match=victim["url"]):
            await pipeline.export(status.crawl_id, f"s3://{bucket}/exports/failed.jsonl", with_body=True)
    listed = await s3_client.list_objects_v2(Bucket=bucket, Prefix="exports/")
    assert [item["Key"] for item in listed["Contents"]] == ["exports/all.jsonl"]
    uploads = await s3_client.list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == []


async def test_a_replay_exports_its_source_pages_and_no_credentials(settings: Settings) -> None:
    """A replay's export is its source crawl's pages, with the fields the replay extracted; the
    credentials a crawl sent (basic auth, cookies, headers) are nowhere in an export."""
    pages = {f"/p{i}": f"<html><body><h1>Title {i}</h1><p>para {i}</p></body></html>" for i in range(5)}
    listing = "".join(f'<a href="/p{i}">{i}</a>' for i in range(5))
    secrets = {"auth": "user:s3cret-pass", "cookies": {"sid": "cookie-secret"}, "headers": {"X-Key": "header-secret"}}
    async with StaticSite({"/list": listing, **pages}) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list", **secrets)
    assert status.stored == 5
    async with Pipeline(settings) as pipeline:
        replay = await pipeline.reprocess(status.crawl_id, fields={"para": "p"})
        await run_burst_worker(settings)
        assert (await pipeline.wait(replay, timeout=30)).done
        out = io.BytesIO()
        assert await pipeline.export(replay, out, format="csv") == 5
        table = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
        assert sorted(row["fields.para"] for row in table) == [f"para {i}" for i in range(5)]
        assert all(row["reprocess_id"] == replay and row["crawl_id"] == status.crawl_id for row in table)
        everything = io.BytesIO()
        await pipeline.export(status.crawl_id, everything, with_body=True)
    exported = out.getvalue() + everything.getvalue()
    for secret in ("s3cret-pass", "cookie-secret", "header-secret", base64.b64encode(b"user:s3cret-pass").decode()):
        assert secret.encode() not in exported
