"""The flags of `pipeline crawl`, one per crawl option, made from their one declaration.

Each option of `CrawlSettings` becomes `--name-with-dashes`, or the flag it declares (a list
option or a table's `NAME=VALUE` is repeated, a yes/no option has a `--no-` form) with the declared help. Values stay as
typed: `CrawlOptions.build` checks them exactly as it checks the API's keywords and
`[[schedule]]` keys.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.settings import CRAWL_OPTIONS


def flag(name: str) -> str:
    """The flag of a crawl option: `--max-pages` for `max_pages`, or the one it declares."""
    spec = CRAWL_OPTIONS.get(name)
    declared = spec.metadata.get("flag") if spec is not None else ""
    return "--" + (declared or name).replace("_", "-")


def add_crawl_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("crawl options (defaults from [crawl] in the configuration)")
    for name, spec in CRAWL_OPTIONS.items():
        table = bool(spec.metadata.get("table"))
        declared: Any = spec.default_factory() if table else spec.default  # type: ignore[operator]
        kind = type(declared)
        if table:
            default = ", ".join(f"{k}={v}" for k, v in declared.items()) or "none"
        elif kind is tuple:
            default = ", ".join(declared) or "none"
        elif kind is bool:
            default = "yes" if declared else "no"
        else:
            default = declared if declared != "" else "none"
        help_text = f"{spec.metadata['help']} (default: {default})"
        metavar = spec.metadata.get("metavar") or None
        if kind is bool:
            group.add_argument(
                flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif kind is tuple or table:
            group.add_argument(flag(name), dest=name, action="append", default=None, metavar=metavar, help=help_text)
        elif spec.metadata.get("choices"):
            group.add_argument(flag(name), dest=name, choices=spec.metadata["choices"], default=None, help=help_text)
        else:
            group.add_argument(flag(name), dest=name, default=None, metavar=metavar, help=help_text)


def given_crawl_options(args: argparse.Namespace) -> dict[str, Any]:
    """The crawl options the command line set, by option name."""
    return {name: getattr(args, name) for name in CRAWL_OPTIONS if getattr(args, name, None) is not None}
