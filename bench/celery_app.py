"""The Celery baseline: the fan-out crawl as a Celery gevent worker runs it, measured in the same run.

`NOTES.md` gives Celery's figures from another day; CPU per page moves by 10-40% between days on
these machines, so `bench.run --baseline celery` runs this app against the same services and site
as the pipeline and the floor, and the ratios come from one invocation.

It is written the way Celery users write it: a task per list page queues a task per child URL,
and a child task GETs the page with requests, parses it (selectolax, as the pipeline does),
fingerprints it in the worker (a gevent pool has nowhere else to put CPU work; with
`BENCH_CELERY_CRUNCH=none`, the seed's own job, it does not), puts the body to S3 with boto3 and
upserts its document with PyMongo (`j: true` unless `BENCH_CELERY_JOURNAL=false`). The clients are made once per worker
(`worker_init`), as Celery's docs advise. Discovered URLs are deduplicated in a Redis set, as
a crawler on Celery must do once list pages link each other.

Started by the runner as `celery -A bench.celery_app worker -P gevent -c N`, configured by
`BENCH_CELERY_*` variables; it prints `ready` on stdout when it consumes its queue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready

from bench.floor import content_fields
from pipeline.crunch.fingerprint import fingerprint
from pipeline.errors import InvalidURL
from pipeline.parse.html import decode_html, parse_html
from pipeline.urls import normalise_url

READY = "ready"
LIST_TASK = "bench.celery_app.list_page"


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"BENCH_CELERY_{name}", default)
    if value is None:
        raise RuntimeError(f"BENCH_CELERY_{name} is not set")
    return value


def make_app(broker: str, queue: str) -> Celery:
    """The app as both the worker and the runner (which sends the first task) configure it."""
    app = Celery("bench", broker=broker)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(_env("BROKER", "redis://127.0.0.1:6379/0"), _env("QUEUE", "bench-celery"))
#: What `worker_init` opened and read, once per worker: the clients and the crawl's settings.
_worker: dict[str, Any] = {}


@worker_init.connect  # type: ignore[untyped-decorator]
def _open_worker(**_: Any) -> None:
    import boto3
    import redis
    import requests
    from botocore.config import Config
    from pymongo import MongoClient

    concurrency = int(_env("CONCURRENCY", "1000"))
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    _worker["http"] = session
    _worker["s3"] = boto3.client(
        "s3",
        endpoint_url=_env("S3_ENDPOINT"),
        config=Config(
            max_pool_connections=64,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    _worker["bucket"] = _env("BUCKET")
    _worker["s3"].create_bucket(Bucket=_worker["bucket"])
    # j: true when the pipeline beside it writes so (its default): the same durability, the same work.
    journal = _env("JOURNAL", "true") == "true"
    mongo: MongoClient[dict[str, Any]] = MongoClient(_env("MONGO_URL"), tz_aware=True, journal=journal)
    pages = mongo[_env("DB")]["pages"]
    pages.create_index("url", unique=True)
    pages.create_index("crawl_id")
    _worker["pages"] = pages
    _worker["redis"] = redis.Redis.from_url(_env("BROKER"))
    _worker["crawl_id"] = _env("CRAWL_ID")
    _worker["seen_key"] = f"bench-celery:seen:{_worker['crawl_id']}"
    _worker["link_selector"] = _env("LINK_SELECTOR")
    _worker["next_selector"] = _env("NEXT_SELECTOR")
    _worker["crunch"] = _env("CRUNCH", "fingerprint") != "none"


@worker_ready.connect  # type: ignore[untyped-decorator]
def _say_ready(**_: Any) -> None:
    print(READY, flush=True)


def _get(url: str) -> tuple[bytes, str | None]:
    response = _worker["http"].get(url, allow_redirects=False, timeout=60)
    response.raise_for_status()
    return response.content, response.encoding


def _new_urls(page_url: str, hrefs: list[str]) -> list[str]:
    """The in-site URLs of `hrefs` not queued before by this crawl (one SADD round trip)."""
    host = page_url.split("/")[2]
    found: dict[str, None] = {}  # insertion-ordered set
    for href in hrefs:
        try:
            url = normalise_url(href, page_url)
        except InvalidURL:
            continue
        if url != page_url and url.split("/")[2] == host:
            found[url] = None
    urls = list(found)
    if not urls:
        return []
    pipe = _worker["redis"].pipeline(transaction=False)
    for url in urls:
        pipe.sadd(_worker["seen_key"], url)
    return [url for url, added in zip(urls, pipe.execute(), strict=True) if added]


@app.task(name=LIST_TASK, autoretry_for=(Exception,), max_retries=3, default_retry_delay=1)  # type: ignore[untyped-decorator]
def list_page(url: str) -> None:
    body, charset = _get(url)
    parsed = parse_html(
        decode_html(body, charset), link_selector=_worker["link_selector"], next_selector=_worker["next_selector"]
    )
    for next_url in _new_urls(url, parsed.next_links):
        list_page.delay(next_url)
    for child_url in _new_urls(url, parsed.links):
        fetch_page.delay(child_url)


@app.task(name="bench.celery_app.fetch_page", autoretry_for=(Exception,), max_retries=3, default_retry_delay=1)  # type: ignore[untyped-decorator]
def fetch_page(url: str) -> None:
    started = time.perf_counter()
    body, charset = _get(url)
    fetch_ms = (time.perf_counter() - started) * 1000
    crunch = _worker["crunch"]
    parsed = parse_html(decode_html(body, charset), link_selector=_worker["link_selector"], text=crunch)
    crunched = fingerprint(parsed.text) if crunch else None
    sha256 = hashlib.sha256(body).hexdigest()
    bucket, key = _worker["bucket"], f"bodies/{sha256}"
    _worker["s3"].put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/html")
    document = {
        "url": url,
        "crawl_id": _worker["crawl_id"],
        "depth": 1,
        "status": 200,
        "content_type": "text/html",
        "charset": charset,
        "length": len(body),
        "sha256": sha256,
        "blob_key": key,
        "blob_store": f"s3://{bucket}/bodies/",
        "fetched_at": dt.datetime.now(dt.UTC),
        "attempts": fetch_page.request.retries + 1,
        "timings": {"fetch_ms": round(fetch_ms, 2)},
        **content_fields(parsed, crunched),
    }
    _worker["pages"].update_one({"url": url}, {"$set": document}, upsert=True)
