"""`pipeline export CRAWL_ID`: a crawl's stored pages as JSON Lines, CSV or Parquet.

Rows go to stdout (JSON Lines, CSV), to a file written under a temporary name and renamed when
complete, or to an S3 object (`s3://bucket/key`). A progress bar shows on stderr when it is a
terminal. Exit codes: 0 written, 1 the export could not be written (nothing left that looks
complete), 2 bad input (unknown crawl, format or field; Parquet without `--out` or pyarrow).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from pipeline.api import Pipeline
from pipeline.cli.progress import CountProgress
from pipeline.cli.runtime import services
from pipeline.errors import ExportFailed, InvalidExport
from pipeline.export.formats import FORMATS
from pipeline.settings import Settings

EXIT_FAILURE, EXIT_USAGE = 1, 2


def add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser("export", help="write a crawl's stored pages as JSON Lines, CSV or Parquet")
    export.add_argument("crawl_id")
    export.add_argument("--format", choices=FORMATS, default="jsonl", help="default jsonl")
    export.add_argument(
        "--out",
        metavar="PATH|s3://BUCKET/KEY",
        help="where to write (default: stdout for jsonl and csv; parquet needs one)",
    )
    export.add_argument(
        "--fields",
        metavar="A,B",
        help="columns to export, in this order: url, title, fields.NAME, fields (all of them), timings, ...",
    )
    export.add_argument("--with-body", action="store_true", help="add each page's body (text, or base64)")


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    to_stdout = args.out in (None, "-")
    try:
        if args.format == "parquet" and to_stdout:
            raise InvalidExport("parquet is binary: give --out PATH or --out s3://BUCKET/KEY")
        fields = args.fields.split(",") if args.fields is not None else None
        async with services(settings) as resolved, Pipeline(resolved) as pipeline:
            rows = await pipeline.export(
                args.crawl_id,
                sys.stdout.buffer if to_stdout else args.out,
                format=args.format,
                fields=fields,
                with_body=args.with_body,
                on_progress=CountProgress(sys.stderr, "rows"),
            )
    except InvalidExport as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ExportFailed as exc:
        if isinstance(exc.__cause__, BrokenPipeError):
            # The reader went away (`| head`): keep the interpreter's last flush of stdout from failing too.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"pipeline: export failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not to_stdout:
        print(f"pipeline: {rows} rows written to {args.out}", file=sys.stderr)
    return 0
