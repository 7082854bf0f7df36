"""`pipeline history URL`: the versions of a stored page, newest first, the stored one marked.

A page whose content never changed has one version, the stored one. A URL that no crawl stored
is bad input (exit code 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from pipeline.api import Pipeline
from pipeline.cli.runtime import services
from pipeline.errors import PageNotFound
from pipeline.settings import Settings

EXIT_USAGE = 2


def add_history_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser("history", help="list the versions of a stored page, newest first")
    history.add_argument("url")
    history.add_argument("--json", action="store_true", help="one JSON array of versions")


async def run_history(args: argparse.Namespace, settings: Settings) -> int:
    async with services(settings) as resolved, Pipeline(resolved) as pipeline:
        try:
            versions = await pipeline.history(args.url)
        except PageNotFound as exc:
            print(f"pipeline: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print(
            json.dumps(versions, default=lambda value: value.isoformat() if isinstance(value, dt.datetime) else value)
        )
        return 0
    count = len(versions)
    print(f"{versions[0]['url']}: {count} version{'s' if count != 1 else ''}, newest first (* stored now)")
    for version in versions:
        mark = "*" if version["current"] else " "
        print(
            f"{mark} {_when(version['fetched_at'])}  sha256 {version['sha256']}  "
            f"crawl {version['crawl_id']}  blob {version['blob_key']}"
        )
    return 0


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, dt.datetime) else str(value)
