"""The benchmark's workloads: which site is served, where a crawl starts and what it must store.

Every page of the synthetic site is a pure function of its `SiteConfig`, so the set of pages a
complete crawl stores is computed here, before the crawl, and the crawl is checked against it.
A static folder (`static_workload`, a real site's HTML) is walked by `bench.static_site` for
the same purpose.

The first workloads (fan-out, latency-bound, latency-chain, link-heavy, smoke) keep their names
and shapes, so figures stay comparable over time; their pages repeat a 74-word vocabulary and
cost the CPU stage little. The realistic ones (docs, docs-fan-out) have pages like a
documentation site's: a Zipf vocabulary, sizes spread like real pages, navigation and
cross-references (`tests.servers.docs_pages`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.static_site import StaticExpectation, expectation
from tests.servers.site import SiteConfig, child_links, expected_child_paths

#: Child links only: on a child page they sit in <ul class=related>, and the nav link to /list is
#: left out, so a link-heavy crawl walks the page graph and nothing else.
RELATED_LINKS = "ul.related a[href]"
#: List pages behind a numbered pager as well as rel=next, as most listing sites paginate.
PAGER_LINKS = "a[rel=next], nav.pager a"


@dataclass(frozen=True)
class Workload:
    """A site, a start page and crawl options, with the concurrency each worker is given."""

    name: str
    site: SiteConfig
    start_path: str
    max_depth: int
    concurrency: int  # fetch.concurrency, fetch.per_host and worker.max_jobs of each worker
    link_selector: str | None = None  # None: the pipeline's default (a[href])
    next_selector: str | None = None  # None: the pipeline's default (a[rel=next])
    description: str = ""
    #: Extra worker settings as `PIPELINE_<SECTION>_<KEY>` values, e.g. {"storage.batch_delay_ms": "50"}.
    settings: tuple[tuple[str, str], ...] = ()
    #: A folder of static files served instead of the synthetic site (`site` then gives only the
    #: latency), crawled from `start_path` at full depth.
    site_dir: Path | None = None

    @property
    def walks_graph(self) -> bool:
        """True when the crawl starts on a page and follows its links (link-heavy, docs, a static site)."""
        return self.site_dir is not None or self.start_path.startswith("/page/")

    def _static(self) -> StaticExpectation:
        assert self.site_dir is not None
        return expectation(self.site_dir, self.start_path, self.link_selector or "a[href]")

    def expected_paths(self) -> set[str]:
        """Paths of the pages a complete crawl stores (a graph crawl's start page among them: a
        crawl that follows links below the children stores its start page)."""
        if self.site_dir is not None:
            return set(self._static().stored)
        if self.walks_graph:
            start = int(self.start_path.rsplit("/", 1)[1])
            return {f"/page/{i}" for i in reachable(self.site, start) | {start}}
        return expected_child_paths(self.site)

    def expected_failures(self) -> set[str]:
        """Paths a complete crawl records as failed: links to files a static site does not have."""
        return set(self._static().failed) if self.site_dir is not None else set()

    def expected_requests(self, robots_reads: int = 0) -> int:
        """Requests a crawl that fetches nothing twice makes: stored and failed pages plus list pages
        (a graph crawl's start page is both, fetched once), plus its reads of /robots.txt (the
        pipeline reads it once per host; the floor and Celery never)."""
        if self.walks_graph:
            return len(self.expected_paths()) + len(self.expected_failures()) + robots_reads
        return len(self.expected_paths()) + self.site.list_pages + robots_reads

    def expected_duplicates(self) -> int:
        """Paths a correct crawl requests twice: none."""
        return 0

    def median_latency_s(self) -> float:
        return self.site.latency_ms / 1000

    def mean_latency_s(self) -> float:
        """Mean of the site's lognormal latency: median x exp(sigma^2 / 2)."""
        return self.median_latency_s() * math.exp(self.site.latency_sigma**2 / 2)


@cache
def reachable(config: SiteConfig, start: int) -> frozenset[int]:
    """Child pages reachable from `start` by one link or more (`start` itself only via a cycle)."""
    seen: set[int] = set()
    queue = deque(child_links(config, start))
    while queue:
        index = queue.popleft()
        if index in seen:
            continue
        seen.add(index)
        queue.extend(j for j in child_links(config, index) if j not in seen)
    return frozenset(seen)


def _fan_out(name: str, latency_ms: float, description: str, pager: int = 0) -> Workload:
    site = SiteConfig(
        pages=2000, per_list_page=100, page_bytes=20_000, latency_ms=latency_ms, latency_sigma=0.3, pager=pager
    )
    next_selector = PAGER_LINKS if pager else None
    return Workload(
        name, site, "/list", max_depth=1, concurrency=1000, next_selector=next_selector, description=description
    )


DOCS_PAGES = {"layout": "docs", "page_bytes": 50_000, "size_sigma": 0.9, "vocabulary": 5000}

WORKLOADS: dict[str, Workload] = {
    "fan-out": _fan_out("fan-out", 100, "2,000 pages of 20 KB behind 20 list pages, 100 ms median latency"),
    # A numbered pager on the first list page links the other 19: chained by rel=next alone, the
    # list pages would arrive one a second and no crawler could keep more than ~100 requests in
    # flight, so the workload would measure the site's pagination, not the concurrency.
    "latency-bound": _fan_out(
        "latency-bound", 1000, "fan-out at 1 s median latency, all list pages linked from the first", pager=20
    ),
    "latency-chain": _fan_out(
        "latency-chain", 1000, "fan-out at 1 s median latency, list pages linked one to the next only"
    ),
    "link-heavy": Workload(
        "link-heavy",
        SiteConfig(pages=5000, per_list_page=100, page_bytes=20_000, latency_ms=100, links_per_page=150),
        "/page/0",
        max_depth=50,  # far deeper than the graph: every page's links are followed
        concurrency=1000,
        link_selector=RELATED_LINKS,
        description="5,000 pages linking 150 others each, crawled from /page/0 to full depth",
    ),
    # Pages like a documentation site's (tests.servers.docs_pages): sizes around 50 KB spread
    # lognormally (mean ~88 KB), ~800 distinct words and ~340 links each, the text a fifth of the
    # bytes: close to what the Python documentation measures (bench/RESULTS.md).
    "docs": Workload(
        "docs",
        SiteConfig(pages=2000, per_list_page=100, latency_ms=100, **DOCS_PAGES),
        "/page/0",
        max_depth=50,
        concurrency=1000,
        description="2,000 documentation-like pages crawled from /page/0 to full depth, 100 ms latency",
    ),
    "docs-fan-out": Workload(
        "docs-fan-out",
        SiteConfig(pages=2000, per_list_page=100, latency_ms=100, pager=20, **DOCS_PAGES),
        "/list",
        max_depth=1,
        concurrency=1000,
        next_selector=PAGER_LINKS,
        description="fan-out over 2,000 documentation-like pages, 100 ms latency",
    ),
    # Scaling where the machine is not the limit: each worker keeps 25 requests in flight at 1 s
    # latency, ~25 pages/s a worker. (The local services spend 7-8 CPU-ms per page themselves, so
    # on 2 cores two workers at 100 in flight each, ~200 pages/s, would need more than the
    # machine; `--concurrency 100` shows it on a larger one.)
    "latency-scaling": Workload(
        "latency-scaling",
        SiteConfig(pages=2000, per_list_page=100, page_bytes=20_000, latency_ms=1000, latency_sigma=0.3, pager=20),
        "/list",
        max_depth=1,
        concurrency=25,
        next_selector=PAGER_LINKS,
        description="2,000 pages at 1 s median latency, 25 requests in flight per worker",
    ),
    # Memory as work grows: 100,000 discovered URLs (most parked in the MongoDB backlog past
    # crawl.max_queued), small pages so the crawl stays short.
    "wide": Workload(
        "wide",
        SiteConfig(pages=100_000, per_list_page=1000, page_bytes=2_000, latency_ms=20, latency_sigma=0.3, pager=100),
        "/list",
        max_depth=1,
        concurrency=1000,
        next_selector=PAGER_LINKS,
        description="100,000 pages of 2 KB behind 100 list pages of 1,000, 20 ms latency",
    ),
    "smoke": Workload(
        "smoke",
        SiteConfig(pages=200, per_list_page=100, page_bytes=20_000, latency_ms=10),
        "/list",
        max_depth=1,
        concurrency=200,
        description="200 pages, 10 ms latency: a quick end-to-end check",
    ),
}


def static_workload(
    site_dir: Path, start: str, *, name: str = "", concurrency: int = 64, latency_ms: float = 0.0
) -> Workload:
    """A crawl of a static HTML folder (a real site) from `start` (a URL path), at full depth.

    64 requests in flight and no added latency by default: the way the field notes ran Scrapy
    against real documentation sites served by nginx on loopback.
    """
    folder = site_dir.resolve()
    if not folder.is_dir():
        raise ValueError(f"--site-dir {site_dir}: not a folder")
    if not start.startswith("/"):
        start = "/" + start
    return Workload(
        "site:" + (name or folder.name),
        SiteConfig(pages=0, latency_ms=latency_ms),
        start,
        max_depth=1000,
        concurrency=concurrency,
        description=f"the static site in {folder}, crawled from {start} to full depth",
        site_dir=folder,
    )
