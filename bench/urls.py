"""Per-link and per-sitemap costs of the schedule stage, in one process.

    python -m bench.urls                                   # this tree's pipeline.urls
    python -m bench.urls --against OTHER/pipeline/urls.py  # and another tree's, same process

Prints, per link, `normalise_url` and `LinkResolver` (cold: a new resolver per link; warm: one
resolver for all) on a mix of 12,000 links against one page, best of 5; then the CPU of reading
a 50,000-URL sitemap (plain and gzipped) and of resolving and scope-checking its URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import random
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import pipeline.urls
from pipeline.schedule.discover import Found
from pipeline.schedule.scope import Scope
from pipeline.schedule.sitemaps import read_sitemap

BASE = "https://docs.example.com/guide/section/page.html"
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def _links() -> list[str]:
    links = (
        [f"/page/{i}" for i in range(3000)]
        + [f"../topic/{i}.html" for i in range(3000)]
        + [f"https://docs.example.com/api/{i}?v=2" for i in range(3000)]
        + [f"item-{i}.html#frag" for i in range(3000)]
    )
    random.Random(1).shuffle(links)
    return links


def _per_link_us(resolve: Callable[[str, str], Any], links: Sequence[str]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for href in links:
            resolve(href, BASE)
        best = min(best, (time.perf_counter() - started) / len(links) * 1e6)
    return best


def links_report(module: ModuleType, label: str) -> None:
    links = _links()
    warm = module.LinkResolver()
    print(
        f"{label}: normalise_url {_per_link_us(module.normalise_url, links):.2f} us/link, "
        f"LinkResolver cold {_per_link_us(lambda h, b: module.LinkResolver().resolve(h, b), links):.2f}, "
        f"warm {_per_link_us(warm.resolve, links):.2f}"
    )


async def sitemap_report() -> None:
    locations = [f"https://docs.example.com/section-{i % 50}/page-{i}.html" for i in range(50_000)]
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>2026-01-01</lastmod></url>" for loc in locations)
    document = f'<?xml version="1.0"?><urlset xmlns="{NS}">{entries}</urlset>'.encode()
    for name, body in (("plain", document), ("gzipped", gzip.compress(document))):
        started = time.process_time()
        sitemap = await read_sitemap(body, 100_000_000)
        read_ms = (time.process_time() - started) * 1000
        started = time.process_time()
        found = Found(Scope("https://docs.example.com/"))
        for location in sitemap.locations:
            found.add(location, "https://docs.example.com/sitemap.xml", "page", 1)
        resolve_us = (time.process_time() - started) / len(locations) * 1e6
        print(
            f"sitemap {name}: {len(body) / 1e6:.2f} MB, {len(sitemap.locations)} URLs: "
            f"read {read_ms:.0f} ms CPU, resolve + scope {resolve_us:.1f} us/URL"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.urls", description=__doc__.split("\n")[0])
    parser.add_argument("--against", metavar="PATH", help="another tree's pipeline/urls.py, measured alongside")
    args = parser.parse_args(argv)
    if args.against:
        spec = importlib.util.spec_from_file_location("other_urls", args.against)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        links_report(other, f"other ({args.against})")
    links_report(pipeline.urls, "this tree")
    asyncio.run(sitemap_report())


if __name__ == "__main__":
    main()
