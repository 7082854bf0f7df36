"""The `pipeline` command: crawl, worker, status, schedules, pause, resume, cancel, retry,
reprocess, export, history, dashboard, demo.

Exit codes: 0 success, 1 failure (a crawl that failed or was cancelled), 2 bad input (invalid
URL, option or configuration; an unknown crawl; an action the crawl's state does not allow),
3 `--wait` timed out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence

import uvloop
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.api import Pipeline
from pipeline.cli.crawl_flags import add_crawl_options, given_crawl_options
from pipeline.cli.demo import run_demo
from pipeline.cli.export import add_export_command, run_export
from pipeline.cli.history import add_history_command, run_history
from pipeline.cli.progress import Progress, report
from pipeline.cli.reprocess import add_reprocess_command, run_reprocess
from pipeline.cli.runtime import in_process_worker, services
from pipeline.cli.steer import add_steering_commands, finished, run_steering
from pipeline.connections import redact
from pipeline.crawl.options import CrawlOptions
from pipeline.embedded.services import needs_embedded
from pipeline.errors import ConfigError, CrawlNotFound, InvalidSelector, InvalidTransition, InvalidURL, ServiceError
from pipeline.observe.json_logs import JsonFormatter
from pipeline.settings import Settings, load_settings
from pipeline.worker.settings import build_worker

EXIT_FAILURE, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 130
log = logging.getLogger("pipeline.cli")


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description="Crawl sites with arq workers, MongoDB and S3.")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $PIPELINE_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the workers do")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="json: one JSON object per log line"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    crawl = commands.add_parser("crawl", help="start a crawl at a list page")
    crawl.add_argument("url")
    crawl.add_argument("--wait", action="store_true", help="wait until the crawl is done, showing progress")
    crawl.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")
    crawl.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_crawl_options(crawl)

    worker = commands.add_parser("worker", help="run a worker (same as `arq pipeline.WorkerSettings`)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")

    status = commands.add_parser("status", help="show a crawl's state and counters (default: the latest)")
    status.add_argument("crawl_id", nargs="?")
    status.add_argument("--json", action="store_true")

    schedules = commands.add_parser("schedules", help="list the [[schedule]]s with their last and next runs")
    schedules.add_argument("--json", action="store_true")

    add_steering_commands(commands)
    add_reprocess_command(commands)
    add_export_command(commands)
    add_history_command(commands)

    dashboard = commands.add_parser("dashboard", help="serve a live web dashboard of crawls, workers and schedules")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port)")
    dashboard.add_argument(
        "--token",
        default=None,
        help="token the page must present (default: $PIPELINE_DASHBOARD_TOKEN); required off loopback",
    )

    demo = commands.add_parser("demo", help="crawl a local demo site end to end on embedded services")
    demo.add_argument("--pages", type=int, default=300, help="child pages on the demo site (default 300)")
    demo.add_argument("--latency-ms", type=float, default=40.0, help="median response time (default 40)")
    demo.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    if not args.verbose:
        logging.getLogger("arq").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        return uvloop.run(_dispatch(args, settings))
    except (ConfigError, UsageError, InvalidURL, InvalidSelector, CrawlNotFound, InvalidTransition) as exc:
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
    if args.command in ("pause", "resume", "cancel", "retry"):
        return await run_steering(args, settings)
    if args.command == "reprocess":
        return await run_reprocess(args, settings)
    if args.command == "export":
        return await run_export(args, settings)
    if args.command == "history":
        return await run_history(args, settings)
    if args.command == "dashboard":
        from pipeline.dashboard.server import run_dashboard

        return await run_dashboard(settings, host=args.host, port=args.port, token=args.token)
    return await run_demo(settings, pages=args.pages, latency_ms=args.latency_ms, as_json=args.json)


def _check_options(args: argparse.Namespace) -> None:
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")


async def _crawl(args: argparse.Namespace, settings: Settings) -> int:
    _check_options(args)
    options = given_crawl_options(args)
    try:  # refuse a bad URL or option before starting anything
        CrawlOptions.build(args.url, settings, **options)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        crawl_id = await pipeline.crawl(args.url, **options)
        if not args.wait:
            status = await pipeline.status(crawl_id)
            report(status, args.json, sys.stdout)
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
                report(status, args.json, sys.stdout)
                print(f"pipeline: crawl {crawl_id} not done after {args.timeout:g}s", file=sys.stderr)
                return EXIT_TIMEOUT
        return finished(status, args.json)


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("pipeline.worker").setLevel(logging.INFO)  # say when it is ready, as arq's CLI does
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
        status = await pipeline.status(args.crawl_id)
        report(status, args.json, sys.stdout)
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
        print(f"{row['name']}: {row['cron']}  {row['start_url']}" + ("  (paused)" if row["paused"] else ""))
        print(f"  last run  {last}{state}")
        print(f"  next run  {row['next_run'].isoformat(timespec='seconds')}")
        print(
            f"  runs {row['runs']}, skipped {row['skipped']}"
            + (f" ({row['last_skip_reason']})" if row["skipped"] else "")
        )
    return 0
