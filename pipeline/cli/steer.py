"""`pipeline pause`, `resume`, `cancel`, `retry`: steering a crawl (or a schedule) from the shell.

Each prints the crawl's state and counters right after the action (`--json`: one object). An
unknown id or an action the crawl's state does not allow raises `CrawlNotFound` or
`InvalidTransition`, which `main` reports in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from pipeline.api import Pipeline
from pipeline.cli.progress import Progress, report
from pipeline.cli.runtime import in_process_worker, services
from pipeline.crawl.status import CrawlStatus
from pipeline.settings import Settings

EXIT_FAILURE, EXIT_TIMEOUT = 1, 3


def add_steering_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("pause", "stop workers starting a crawl's queued jobs (running ones finish), or a schedule's ticks"),
        ("resume", "let workers take a paused crawl's jobs again, or a paused schedule tick again"),
    ):
        command = commands.add_parser(name, help=help_text)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("crawl_id", nargs="?")
        target.add_argument("--schedule", metavar="NAME", help="the [[schedule]] of that name instead of a crawl")
        command.add_argument("--json", action="store_true")

    cancel = commands.add_parser(
        "cancel", help="stop a crawl for good: queued and parked URLs are dropped, running jobs finish"
    )
    cancel.add_argument("crawl_id")
    cancel.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="wait this long for running jobs (default 60)"
    )
    cancel.add_argument("--json", action="store_true")

    retry = commands.add_parser("retry", help="queue a finished crawl's failed URLs again as fresh attempts")
    retry.add_argument("crawl_id")
    retry.add_argument("--wait", action="store_true", help="wait until the crawl has finished again")
    retry.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")
    retry.add_argument("--json", action="store_true")


async def run_steering(args: argparse.Namespace, settings: Settings) -> int:
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        if args.command in ("pause", "resume") and args.schedule:
            if args.command == "pause":
                await pipeline.pause_schedule(args.schedule)
            else:
                await pipeline.resume_schedule(args.schedule)
            said = {"schedule": args.schedule, "paused": args.command == "pause"}
            print(json.dumps(said) if args.json else f"schedule {args.schedule}: {args.command}d")
            return 0
        if args.command == "pause":
            status = await pipeline.pause(args.crawl_id)
            running = await pipeline.running_jobs(args.crawl_id)
            _show(status, args.json, f"paused; {running} running job(s) will finish" if running else "paused")
            return 0
        if args.command == "resume":
            _show(await pipeline.resume(args.crawl_id), args.json, "resumed")
            return 0
        if args.command == "cancel":
            status = await pipeline.cancel(args.crawl_id, timeout=args.timeout)
            if status.state != "cancelled":
                _show(status, args.json, f"still cancelling after {args.timeout:g}s: jobs are running")
                return EXIT_TIMEOUT
            _show(status, args.json, "cancelled")
            return 0
        status = await pipeline.retry(args.crawl_id)
        if not args.wait:
            _show(status, args.json, f"{status.pending} failed URL(s) queued again")
            return 0
        # As `crawl --wait` does: with no worker about, one runs in this process meanwhile.
        local = in_process_worker(resolved) if not await pipeline.workers_running() else contextlib.nullcontext()
        async with local:
            try:
                status = await pipeline.wait(args.crawl_id, timeout=args.timeout, on_progress=Progress(sys.stderr))
            except TimeoutError:
                _show(await pipeline.status(args.crawl_id), args.json, f"not finished after {args.timeout:g}s")
                return EXIT_TIMEOUT
        return finished(status, args.json)


def finished(status: CrawlStatus, as_json: bool) -> int:
    """Report a crawl that has finished; 0 when done, 1 when it failed or was cancelled (saying why)."""
    report(status, as_json, sys.stdout)
    if status.done:
        return 0
    reason = status.error or ("it was cancelled" if status.state == "cancelled" else "it did not finish")
    print(f"pipeline: crawl {status.crawl_id} {status.state}: {reason}", file=sys.stderr)
    return EXIT_FAILURE


def _show(status: CrawlStatus, as_json: bool, said: str) -> None:
    report(status, as_json, sys.stdout)
    if not as_json:
        print(f"pipeline: crawl {status.crawl_id} {said}", file=sys.stderr)
