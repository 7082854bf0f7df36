"""The `pipeline` command's subcommands: crawl, worker, status, schedules, demo.

Exit codes: 0 success, 1 failure, 2 bad input (invalid URL, option or configuration),
3 `--wait` timed out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TextIO

import uvloop
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.api import CrawlNotFound, Pipeline
from pipeline.connections import redact
from pipeline.crawls import CrawlStatus
from pipeline.embedded import needs_embedded, resolve_services
from pipeline.parse import InvalidSelector
from pipeline.schedules import PIPELINES
from pipeline.services import ServiceError
from pipeline.settings import ConfigError, Settings, load_settings
from pipeline.urls import InvalidURL, normalise_url

EXIT_FAILURE, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 130
log = logging.getLogger("pipeline.commands")


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description="Crawl sites with arq workers, MongoDB and S3.")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $PIPELINE_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the workers do")
    commands = parser.add_subparsers(dest="command", required=True)

    crawl = commands.add_parser("crawl", help="start a crawl at a list page")
    crawl.add_argument("url")
    crawl.add_argument("--max-depth", type=int, metavar="N", help="follow links N levels below the list pages")
    crawl.add_argument("--max-pages", type=int, metavar="N", help="store at most N pages")
    crawl.add_argument("--next-selector", metavar="CSS", help="pagination link selector (default a[rel=next])")
    crawl.add_argument("--link-selector", metavar="CSS", help="child link selector (default a[href])")
    crawl.add_argument("--scope", choices=("host", "domain", "any"), help="which hosts to follow (default host)")
    crawl.add_argument(
        "--pipeline",
        choices=("web", "api"),
        default="web",
        help="web: HTML list pages and child pages (default); api: the paginated JSON API collector",
    )
    crawl.add_argument("--wait", action="store_true", help="wait until the crawl is done, showing progress")
    crawl.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")
    crawl.add_argument("--json", action="store_true", help="print the result as one JSON object")

    worker = commands.add_parser("worker", help="run a worker (same as `arq pipeline.WorkerSettings`)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")

    status = commands.add_parser("status", help="show a crawl's state and counters (default: the latest)")
    status.add_argument("crawl_id", nargs="?")
    status.add_argument("--json", action="store_true")

    schedules = commands.add_parser("schedules", help="list the [[schedule]]s with their last and next runs")
    schedules.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="crawl a local demo site end to end on embedded services")
    demo.add_argument("--pages", type=int, default=300, help="child pages on the demo site (default 300)")
    demo.add_argument("--latency-ms", type=float, default=40.0, help="median response time (default 40)")
    demo.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("arq").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        return uvloop.run(_dispatch(args, settings))
    except (ConfigError, UsageError, InvalidURL, InvalidSelector) as exc:
        prefix = "invalid configuration" if isinstance(exc, ConfigError) else "error"
        print(f"pipeline: {prefix}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pipeline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RedisError, PyMongoError, ServiceError, OSError) as exc:
        print(f"pipeline: cannot reach a service: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "crawl":
        return await _crawl(args, settings)
    if args.command == "worker":
        return await _worker(args, settings)
    if args.command == "status":
        return await _status(args, settings)
    if args.command == "schedules":
        return await _schedules(args, settings)
    from pipeline.demo import run_demo

    return await run_demo(settings, pages=args.pages, latency_ms=args.latency_ms, as_json=args.json)


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Settings]:
    """Settings pointing at real services, embedded ones started (and later stopped) if needed."""
    if needs_embedded(settings):
        print(f"pipeline: no Redis/MongoDB configured, using embedded services in {settings.data_dir}", file=sys.stderr)
    resolved, embedded = await asyncio.to_thread(resolve_services, settings)
    try:
        yield resolved
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker running on this event loop for as long as the block runs."""
    from pipeline.worker import build_worker

    worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        # Jobs claimed as the block ended (a completion job, say) get the usual grace to finish.
        worker.allow_pick_jobs = False
        running = [job for job in worker.tasks.values() if not job.done()]
        if running:
            await asyncio.wait(running, timeout=settings.worker.shutdown_grace)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _check_options(args: argparse.Namespace) -> None:
    if args.max_depth is not None and args.max_depth < 0:
        raise UsageError(f"--max-depth must be 0 or more, got {args.max_depth}")
    if args.max_pages is not None and args.max_pages < 1:
        raise UsageError(f"--max-pages must be at least 1, got {args.max_pages}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")


async def _crawl(args: argparse.Namespace, settings: Settings) -> int:
    _check_options(args)
    normalise_url(args.url)  # refuse a bad URL before starting anything
    list_job, item_job, on_complete = PIPELINES[args.pipeline]
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        try:
            crawl_id = await pipeline.crawl(
                args.url,
                max_depth=args.max_depth,
                max_pages=args.max_pages,
                next_selector=args.next_selector,
                link_selector=args.link_selector,
                scope=args.scope,
                list_job=list_job,
                item_job=item_job,
                on_complete=list(on_complete) if on_complete is not None else None,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not args.wait:
            status = await pipeline.status(crawl_id)
            _report(status, args.json, sys.stdout)
            return 0
        local_worker = not await pipeline.workers_running()
        if local_worker and not needs_embedded(settings):
            print("pipeline: no worker is running; running one in this process", file=sys.stderr)
        context = in_process_worker(resolved) if local_worker else contextlib.nullcontext()
        async with context:
            try:
                status = await pipeline.wait(crawl_id, timeout=args.timeout, on_progress=Progress(sys.stderr))
            except TimeoutError:
                status = await pipeline.status(crawl_id)
                _report(status, args.json, sys.stdout)
                print(f"pipeline: crawl {crawl_id} not done after {args.timeout:g}s", file=sys.stderr)
                return EXIT_TIMEOUT
        _report(status, args.json, sys.stdout)
        return 0


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.worker import build_worker

    async with services(settings) as resolved:
        worker = build_worker(resolved, burst=args.burst)
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            pass
        finally:
            await worker.close()
    return 0


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        try:
            status = await pipeline.status(args.crawl_id)
        except CrawlNotFound as exc:
            print(f"pipeline: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        _report(status, args.json, sys.stdout)
        return 0


async def _schedules(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.schedules:
        print("pipeline: no [[schedule]] in the configuration", file=sys.stderr)
        return 0
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        rows = await pipeline.schedules()
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        last = row["last_run_at"].isoformat(timespec="seconds") if row["last_run_at"] else "never"
        state = f" ({row['last_crawl_state']}: {row['last_crawl_id']})" if row["last_crawl_id"] else ""
        print(f"{row['name']}: {row['cron']}  {row['start_url']}")
        print(f"  last run  {last}{state}")
        print(f"  next run  {row['next_run'].isoformat(timespec='seconds')}")
        print(
            f"  runs {row['runs']}, skipped {row['skipped']}"
            + (f" ({row['last_skip_reason']})" if row["skipped"] else "")
        )
    return 0


def _report(status: CrawlStatus, as_json: bool, out: TextIO) -> None:
    data = status.to_dict()
    if as_json:
        out.write(json.dumps(data) + "\n")
        return
    out.write(f"crawl {status.crawl_id}: {status.state}  ({status.start_url})\n")
    for key in (
        "discovered",
        "fetched",
        "stored",
        "unchanged",
        "failed",
        "retries",
        "pending",
        "lists",
        "lists_failed",
    ):
        out.write(f"  {key:<13}{data[key]:>8}\n")
    skipped = data["skipped_invalid"] + data["skipped_scope"] + data["capped"]
    if skipped:
        out.write(
            f"  {'skipped':<13}{skipped:>8}  (invalid {data['skipped_invalid']}, "
            f"out of scope {data['skipped_scope']}, over max-pages {data['capped']})\n"
        )
    out.write(f"  {'duration':<13}{data['duration_s']:>8.1f}s\n")
    for host, limit in status.host_limits.items():
        out.write(f"  concurrency limit for {host}: {limit} requests in flight per worker\n")


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._enabled = stream.isatty()
        self._started = time.monotonic()

    def __call__(self, status: CrawlStatus) -> None:
        if not self._enabled:
            return
        settled = status.stored + status.failed
        total = max(status.discovered, 1)
        filled = int(self._width * min(settled / total, 1.0))
        rate = settled / max(time.monotonic() - self._started, 1e-6)
        bar = "#" * filled + "." * (self._width - filled)
        line = f"\r[{bar}] {settled}/{status.discovered} settled, {status.failed} failed, {rate:.0f} pages/s"
        self._stream.write(line + ("\n" if status.done else ""))
        self._stream.flush()
