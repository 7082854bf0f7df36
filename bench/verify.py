"""Checking a finished crawl against what the site says it must contain, in MongoDB and S3.

A benchmark of a crawler that lost pages would measure the wrong thing, so every run is
verified: exactly the expected URLs are stored, one document each, and every document's body is
in the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAMPLE = 5


@dataclass(frozen=True)
class Target:
    """Where a run wrote its results."""

    mongo_url: str
    db: str
    s3_endpoint: str
    bucket: str


async def _pages(target: Target, crawl_id: str) -> list[dict[str, Any]]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(target.mongo_url)
    try:
        projection = {"_id": 0, "url": 1, "blob_key": 1, "attempts": 1, "link_count": 1, "depth": 1}
        return await client[target.db]["pages"].find({"crawl_id": crawl_id}, projection).to_list()
    finally:
        await client.close()


async def _bucket_keys(target: Target) -> set[str]:
    import aioboto3

    from tests.servers.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY

    session = aioboto3.Session(aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)
    keys: set[str] = set()
    async with session.client("s3", endpoint_url=target.s3_endpoint, region_name=S3_REGION) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=target.bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


async def verify(target: Target, crawl_id: str, expected_urls: set[str], max_depth: int) -> dict[str, Any]:
    """Counts and checks of one crawl; `verified` is true only if every check passed."""
    pages = await _pages(target, crawl_id)
    keys = await _bucket_keys(target)
    urls = [page["url"] for page in pages]
    stored = set(urls)
    missing_blobs = [page["url"] for page in pages if page.get("blob_key") not in keys]
    checks = {
        "pages_count": len(pages) == len(expected_urls),
        "one_doc_per_url": len(stored) == len(urls),
        "urls_as_expected": stored == expected_urls,
        "blobs_in_s3": not missing_blobs,
    }
    return {
        "verified": all(checks.values()),
        "checks": checks,
        "stored": len(pages),
        "missing_urls": sorted(expected_urls - stored)[:SAMPLE],
        "unexpected_urls": sorted(stored - expected_urls)[:SAMPLE],
        "missing_blobs": len(missing_blobs),
        "max_attempts": max((int(page.get("attempts") or 1) for page in pages), default=0),
        # Links a crawl had to resolve: those on pages whose links it followed.
        "links": sum(int(page.get("link_count") or 0) for page in pages if int(page.get("depth", 0)) < max_depth),
    }


async def drop(target: Target) -> None:
    """Drop the run's database, so later runs write into a server of the same size."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(target.mongo_url)
    try:
        await client.drop_database(target.db)
    finally:
        await client.close()


def verify_listed(urls: list[str], expected_urls: set[str], start_url: str) -> dict[str, Any]:
    """Checks of a baseline that stores nothing but lists the pages it parsed (Scrapy's feed).

    It must have every expected HTML page but the start page (which Scrapy parses for links and
    does not fetch again when pages link back to it); links its extractor skips by design (files
    by their extension, such as `.py`) may be missing from the list.
    """
    listed = set(urls)
    html = {url for url in expected_urls if url.endswith((".html", "/")) or "/page/" in url} - {start_url}
    checks = {"pages_count": len(listed) >= len(html), "one_doc_per_url": len(listed) == len(urls)}
    checks |= {"urls_as_expected": html <= listed <= expected_urls, "blobs_in_s3": True}
    return {
        "verified": all(checks.values()),
        "checks": checks,
        "stored": len(urls),
        "missing_urls": sorted(html - listed)[:SAMPLE],
        "unexpected_urls": sorted(listed - expected_urls)[:SAMPLE],
        "missing_blobs": 0,
        "max_attempts": 1,
        "links": 0,
    }
