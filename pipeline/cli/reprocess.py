"""`pipeline reprocess CRAWL_ID`: parse and crunch a crawl's stored pages again, from their bodies.

Nothing is requested from the site: workers read each page's body from the blob store, run the
parse stage, the crawl's fields and its CPU stage in their process pools, and update the page's
document. `--field` (repeatable, replacing the crawl's fields) and `--crunch` change what is
extracted. The replay is a crawl of its own, with its own id: `--wait` shows its progress,
`pipeline status ID` its counters. A bad field or crunch, an unknown crawl, or one still
running or with no stored page, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from pipeline.api import Pipeline
from pipeline.cli.crawl_flags import flag
from pipeline.cli.progress import Progress, report
from pipeline.cli.runtime import in_process_worker, services
from pipeline.cli.steer import finished
from pipeline.crawl.options import CrawlOptions
from pipeline.errors import ConfigError
from pipeline.settings import CRAWL_OPTIONS, Settings

EXIT_USAGE, EXIT_TIMEOUT = 2, 3


def add_reprocess_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "reprocess", help="parse and crunch a crawl's stored pages again from their bodies, without fetching"
    )
    command.add_argument("crawl_id")
    for name in ("fields", "crunch"):
        spec = CRAWL_OPTIONS[name]
        command.add_argument(
            flag(name),
            dest=name,
            action="append" if spec.metadata.get("table") else "store",
            default=None,
            metavar=spec.metadata.get("metavar") or None,
            help=f"{spec.metadata['help']} (default: the crawl's own)",
        )
    command.add_argument("--wait", action="store_true", help="wait until every page is reprocessed, showing progress")
    command.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)"
    )
    command.add_argument("--json", action="store_true", help="print the result as one JSON object")


async def run_reprocess(args: argparse.Namespace, settings: Settings) -> int:
    try:  # a bad selector is refused before anything starts
        values = CrawlOptions.replay_values(settings, fields=args.fields, crunch=args.crunch)
    except ConfigError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout is not None and args.timeout <= 0:
        print("pipeline: error: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        replay_id = await pipeline.reprocess(args.crawl_id, fields=values.get("fields"), crunch=values.get("crunch"))
        if not args.wait:
            report(await pipeline.status(replay_id), args.json, sys.stdout)
            if not args.json:
                print(f"pipeline: reprocessing crawl {args.crawl_id} as {replay_id}", file=sys.stderr)
            return 0
        # As `crawl --wait` does: with no worker about, one runs in this process meanwhile.
        local = in_process_worker(resolved) if not await pipeline.workers_running() else contextlib.nullcontext()
        async with local:
            try:
                status = await pipeline.wait(replay_id, timeout=args.timeout, on_progress=Progress(sys.stderr))
            except TimeoutError:
                report(await pipeline.status(replay_id), args.json, sys.stdout)
                print(f"pipeline: reprocess {replay_id} not done after {args.timeout:g}s", file=sys.stderr)
                return EXIT_TIMEOUT
        return finished(status, args.json)
