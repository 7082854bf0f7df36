"""What is benchmarked: the pipeline (N worker processes fed through Redis) or the floor.

Both start their processes, report ready, and then crawl while the runner's meters run. The
runner's CPU window opens (`mark`) only when everything is up, so start-up is never charged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.cluster import BenchError, Child, Services, child_env, console_script, python_module, start_ready
from bench.verify import Target
from bench.workloads import Workload

CRAWL_TIMEOUT = 1800.0
WAIT_POLL_S = 0.2
STALL_TIMEOUT = 60.0  # a Celery crawl that stores nothing for this long has lost its tasks
READY = "ready"


@dataclass
class Outcome:
    """How a crawl went, as the subject itself saw it."""

    crawl_id: str
    wall_s: float
    wall_observed_s: float
    retries: int = 0
    failed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunPlaces:
    """Where one run writes: services, its own queue, database and bucket, and its logs; and how
    durably every subject writes to MongoDB (`j: true`, the pipeline's default)."""

    services: Services
    target: Target
    queue: str
    logs: Path
    start_url: str
    journal: bool = True


class Subject(Protocol):
    name: str
    workers: int
    slug: str  # the name, fit for database, bucket and file names
    settings: tuple[tuple[str, str], ...]  # worker settings of this subject on top of the workload's
    crunch: str  # the CPU stage: "fingerprint" or "none" (the seed's job)

    def start(self, workload: Workload, places: RunPlaces) -> list[Child]: ...

    def crawl(
        self, children: list[Child], workload: Workload, places: RunPlaces, mark: Callable[[], None]
    ) -> Outcome: ...


def _worker_env(
    workload: Workload,
    places: RunPlaces,
    extra: Sequence[tuple[str, str]] = (),
    crunch: str = "fingerprint",
    workers: int = 1,
) -> dict[str, str]:
    """The configuration of every worker, as `PIPELINE_*` variables over an empty config file.

    The workload's own `settings` (from `--set`) come last, then the subject's `extra` ones (a
    `--variant`), so they can override anything here.
    """
    config = places.logs / "empty-config.toml"
    config.write_text("# The benchmark configures workers through PIPELINE_* variables only.\n")
    concurrency = str(workload.concurrency)
    variables = {
        "PIPELINE_CONFIG": str(config),
        "PIPELINE_REDIS_URL": places.services.redis.url,
        "PIPELINE_REDIS_QUEUE": places.queue,
        "PIPELINE_MONGO_URL": places.target.mongo_url,
        "PIPELINE_MONGO_DB": places.target.db,
        "PIPELINE_S3_BUCKET": places.target.bucket,
        "PIPELINE_S3_ENDPOINT_URL": places.target.s3_endpoint,
        "PIPELINE_STORAGE_DATA_DIR": str(places.logs / "data"),
        "PIPELINE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "PIPELINE_FETCH_CONCURRENCY": concurrency,
        # Per-host limits are the fleet's: N workers share one host's permits. The site is one
        # host, and the workloads give each worker its own concurrency, as N floors would have.
        "PIPELINE_FETCH_PER_HOST": str(workload.concurrency * workers),
        "PIPELINE_WORKER_MAX_JOBS": concurrency,
        "PIPELINE_MONGO_JOURNAL": str(places.journal).lower(),
        "PIPELINE_CRAWL_CRUNCH": crunch,
    }
    if _has_setting("fetch", "adaptive"):
        # The workloads fix the concurrency, as the floor and Celery's figures have it; the
        # adaptive per-host limit would start at a handful and grow by one per round trip.
        # `--set fetch.adaptive=true` measures it instead.
        variables["PIPELINE_FETCH_ADAPTIVE"] = "false"
    for key, value in (*workload.settings, *extra):
        variables["PIPELINE_" + key.replace(".", "_").upper()] = value
    return child_env(variables)


def _has_setting(section: str, key: str) -> bool:
    """Whether the pipeline in this tree knows `section.key` (an unknown key stops a worker)."""
    import dataclasses

    from pipeline.settings import Settings

    part = getattr(Settings(), section, None)
    if part is None or not dataclasses.is_dataclass(part):
        return False
    return key in {field.name for field in dataclasses.fields(part)}


# How a worker is started: the two commands the README gives users.
LAUNCHERS: dict[str, tuple[str, ...]] = {
    "pipeline": ("pipeline", "worker"),
    "arq": ("arq", "pipeline.WorkerSettings"),
}
WORKER_READY = "pipeline worker ready"


@dataclass
class PipelineSubject:
    """`workers` worker processes, started as users start them, fed by a crawl from the Python API.

    `launcher` "pipeline" runs `pipeline worker`, "arq" runs `arq pipeline.WorkerSettings`: the
    worker is the same either way, and the benchmark shows it.
    """

    workers: int
    settings: tuple[tuple[str, str], ...] = ()  # a variant's settings (`--variant`)
    launcher: str = "pipeline"
    crunch: str = "fingerprint"
    name: str = field(init=False)
    slug: str = field(init=False)

    def __post_init__(self) -> None:
        variant = ",".join(f"{key}={value}" for key, value in self.settings)
        command = " ".join(LAUNCHERS[self.launcher])
        self.name = f"{command} [{variant}]" if variant else command
        self.slug = "-".join(LAUNCHERS[self.launcher][0:1]) + "-worker"
        if variant:
            self.slug += "-" + hashlib.sha1(variant.encode()).hexdigest()[:6]

    def start(self, workload: Workload, places: RunPlaces) -> list[Child]:
        env = _worker_env(workload, places, self.settings, self.crunch, self.workers)
        argv = console_script(*LAUNCHERS[self.launcher])
        children = [Child(f"worker-{i}", argv, env, places.logs / f"worker-{i}.log") for i in range(self.workers)]
        try:
            for child in children:
                child.wait_for_log(WORKER_READY)
        except BaseException:
            for child in children:
                child.stop(5)
            raise
        return children

    def crawl(self, children: list[Child], workload: Workload, places: RunPlaces, mark: Callable[[], None]) -> Outcome:
        return asyncio.run(self._crawl(workload, places, mark))

    async def _crawl(self, workload: Workload, places: RunPlaces, mark: Callable[[], None]) -> Outcome:
        from pipeline.api import Pipeline
        from pipeline.settings import Settings

        settings = Settings().replace(
            redis={"url": places.services.redis.url, "queue": places.queue},
            mongo={"url": places.target.mongo_url, "db": places.target.db},
        )
        async with Pipeline(settings) as pipeline:
            mark()
            started = time.perf_counter()
            crawl_id = await pipeline.crawl(
                places.start_url,
                max_depth=workload.max_depth,
                link_selector=workload.link_selector,
                next_selector=workload.next_selector,
                crunch=self.crunch,
            )
            status = await pipeline.wait(crawl_id, timeout=CRAWL_TIMEOUT, poll_interval=WAIT_POLL_S)
            observed = time.perf_counter() - started
        return Outcome(
            crawl_id=crawl_id,
            # The crawl record's own timestamps: from the enqueue to the last URL settled.
            wall_s=status.duration_s,
            wall_observed_s=observed,
            retries=status.counters.get("retries", 0),
            failed=status.failed + status.counters.get("lists_failed", 0),
            extra={"crawl_counters": status.counters},
        )


@dataclass
class FloorSubject:
    """The same per-page work as one asyncio loop (`bench.floor`), with single or bulk MongoDB writes."""

    writes: str
    workers: int = 1
    crunch: str = "fingerprint"
    settings: tuple[tuple[str, str], ...] = field(init=False, default=())
    name: str = field(init=False)
    slug: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.slug = f"floor-{self.writes}"

    def start(self, workload: Workload, places: RunPlaces) -> list[Child]:
        argv = python_module(
            "bench.floor",
            "--start-url", places.start_url,
            "--mongo-url", places.target.mongo_url,
            "--db", places.target.db,
            "--s3-endpoint", places.target.s3_endpoint,
            "--bucket", places.target.bucket,
            "--crawl-id", self.name,
            "--concurrency", str(workload.concurrency),
            "--max-depth", str(workload.max_depth),
            "--writes", self.writes,
            "--crunch", self.crunch,
            "--journal" if places.journal else "--no-journal",
        )  # fmt: skip
        if workload.link_selector:
            argv += ["--link-selector", workload.link_selector]
        if workload.next_selector:
            argv += ["--next-selector", workload.next_selector]
        child = Child(self.name, argv, child_env({}), places.logs / f"{self.name}.log")
        start_ready([child], READY)
        return [child]

    def crawl(self, children: list[Child], workload: Workload, places: RunPlaces, mark: Callable[[], None]) -> Outcome:
        floor = children[0]
        mark()
        started = time.perf_counter()
        floor.send("go")
        result = json.loads(floor.read_line(CRAWL_TIMEOUT))
        observed = time.perf_counter() - started
        return Outcome(
            crawl_id=self.name,
            wall_s=float(result["wall_s"]),
            wall_observed_s=observed,
            failed=int(result["failed"]),
            extra={"floor_failures": result["failures"]} if result["failed"] else {},
        )


@dataclass
class CelerySubject:
    """The baseline: a Celery gevent worker (`bench.celery_app`), fed by one list-page task.

    Needs `celery`, `gevent`, `requests` and `boto3` (`uv pip install --group celery-baseline`).
    Celery knows no end of a crawl, so the crawl is over when MongoDB holds every expected page.
    """

    workers: int = 1
    crunch: str = "fingerprint"
    settings: tuple[tuple[str, str], ...] = field(init=False, default=())
    name: str = field(init=False, default="celery-gevent")
    slug: str = field(init=False, default="celery-gevent")

    def _variables(self, workload: Workload, places: RunPlaces) -> dict[str, str]:
        return {
            "BENCH_CELERY_BROKER": places.services.redis.url,
            "BENCH_CELERY_QUEUE": places.queue,
            "BENCH_CELERY_CRAWL_ID": self.name,
            "BENCH_CELERY_MONGO_URL": places.target.mongo_url,
            "BENCH_CELERY_DB": places.target.db,
            "BENCH_CELERY_S3_ENDPOINT": places.target.s3_endpoint,
            "BENCH_CELERY_BUCKET": places.target.bucket,
            "BENCH_CELERY_CONCURRENCY": str(workload.concurrency),
            "BENCH_CELERY_LINK_SELECTOR": workload.link_selector or "a[href]",
            "BENCH_CELERY_NEXT_SELECTOR": workload.next_selector or "a[rel=next]",
            "BENCH_CELERY_CRUNCH": self.crunch,
            "BENCH_CELERY_JOURNAL": str(places.journal).lower(),
        }

    def start(self, workload: Workload, places: RunPlaces) -> list[Child]:
        if workload.walks_graph or workload.max_depth != 1:
            raise BenchError("the Celery baseline crawls list pages and their children only (max_depth 1)")
        try:
            import celery  # noqa: F401
        except ImportError:
            raise BenchError("--baseline celery needs: uv pip install --group celery-baseline") from None
        argv = python_module(
            "celery", "-A", "bench.celery_app", "--quiet", "worker", "-P", "gevent", "-c", str(workload.concurrency),
            "-Q", places.queue, "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
            "--without-mingle",
        )  # fmt: skip
        env = child_env(self._variables(workload, places))
        children = [Child(f"celery-{i}", argv, env, places.logs / f"celery-{i}.log") for i in range(self.workers)]
        start_ready(children, READY)
        return children

    def crawl(self, children: list[Child], workload: Workload, places: RunPlaces, mark: Callable[[], None]) -> Outcome:
        from pymongo import MongoClient

        from bench.celery_app import LIST_TASK, make_app

        expected = len(workload.expected_paths())
        app = make_app(places.services.redis.url, places.queue)
        client: MongoClient[dict[str, Any]] = MongoClient(places.target.mongo_url, tz_aware=True)
        pages = client[places.target.db]["pages"]
        try:
            mark()
            started, sent_at = time.perf_counter(), dt.datetime.now(dt.UTC)
            app.send_task(LIST_TASK, args=[places.start_url], queue=places.queue)
            stored, last_change, last_count = 0, time.monotonic(), -1
            while stored < expected:
                if time.monotonic() - last_change > STALL_TIMEOUT:
                    raise BenchError(f"the Celery crawl stalled at {stored}/{expected} pages")
                time.sleep(WAIT_POLL_S)
                stored = pages.count_documents({"crawl_id": self.name})
                if stored != last_count:
                    last_count, last_change = stored, time.monotonic()
            observed = time.perf_counter() - started
            last = pages.find_one({"crawl_id": self.name}, sort=[("fetched_at", -1)])
        finally:
            client.close()
            app.close()
        finished_at = last["fetched_at"] if last else dt.datetime.now(dt.UTC)
        return Outcome(crawl_id=self.name, wall_s=(finished_at - sent_at).total_seconds(), wall_observed_s=observed)


@dataclass
class ScrapySubject:
    """The Scrapy baseline (`bench/scrapy_spider.py`): a CrawlSpider at 64 requests in flight over a
    graph workload, writing a JSON line per page and storing nothing. Needs `scrapy`
    (`uv pip install --group scrapy-baseline`)."""

    workers: int = 1
    crunch: str = "fingerprint"  # Scrapy has no CPU stage: the same run stands for both
    settings: tuple[tuple[str, str], ...] = field(init=False, default=())
    name: str = field(init=False, default="scrapy")
    slug: str = field(init=False, default="scrapy")

    def start(self, workload: Workload, places: RunPlaces) -> list[Child]:
        if not workload.walks_graph:
            raise BenchError("the Scrapy baseline crawls graph workloads (a site from its start page)")
        try:
            import scrapy  # noqa: F401
        except ImportError:
            raise BenchError("--baseline scrapy needs: uv pip install --group scrapy-baseline") from None
        spider = Path(__file__).with_name("scrapy_spider.py")
        argv = console_script("scrapy", "runspider", str(spider), "-a", f"start_url={places.start_url}")
        argv += ["-a", f"out={places.logs}", "-s", f"CONCURRENT_REQUESTS={workload.concurrency}"]
        argv += ["-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={workload.concurrency}"]
        child = Child(self.name, argv, child_env({}), places.logs / "scrapy.log")
        start_ready([child], READY)
        return [child]

    def crawl(self, children: list[Child], workload: Workload, places: RunPlaces, mark: Callable[[], None]) -> Outcome:
        spider = children[0]
        mark()
        started = time.perf_counter()
        spider.send("go")
        spider.process.wait(CRAWL_TIMEOUT)
        observed = time.perf_counter() - started
        stats = json.loads((places.logs / "stats.json").read_text())
        urls = [json.loads(line)["url"] for line in (places.logs / "pages.jsonl").read_text().splitlines()]
        return Outcome(
            crawl_id=self.name,
            wall_s=float(stats.get("elapsed_time_seconds", observed)),
            wall_observed_s=observed,
            failed=int(stats.get("downloader/response_status_count/404", 0)),
            extra={"stored_urls": urls, "scrapy_stats": stats},
        )
