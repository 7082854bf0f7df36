"""A worker's Prometheus metrics (prometheus-client), in a registry of its own.

Counters move on the hot path, so each update is one bound child's `inc` or `observe`; anything
that is state rather than an event (requests in flight per host, CPU pool load, queue depth) is
read only when Prometheus scrapes (`LiveCollector`, `QueueGauges`). Label values come from small
fixed sets: status classes, failure kinds (`failure_kind`), crawl states, and the busiest few
hosts with the rest summed up as `other`, so a crawl over a million hosts cannot blow up the
number of series.

`Recorder` is the interface the stages call and does nothing: a worker with
`worker.metrics_port = 0` uses it and pays nothing. `Metrics` is the real thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

BUSIEST_HOSTS = 10
OTHER_HOSTS = "other"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

# Failure reasons are free text (they name addresses, exceptions, sizes); as labels they are
# reduced to these kinds, first match wins.
_FAILURE_KINDS = (
    ("invalid sitemap", "invalid_sitemap"),
    ("refused to connect", "blocked_address"),
    ("redirect", "redirects"),
    ("timed out", "timeout"),
    ("job ran past", "timeout"),
    ("truncated", "truncated_body"),
    ("connection error", "connection"),
    ("not html", "not_html"),
    ("internal error", "internal"),
)
FAILURE_KINDS = ("http_4xx", "http_5xx", *dict.fromkeys(kind for _, kind in _FAILURE_KINDS), "other")


def failure_kind(reason: str, status: int | None) -> str:
    """The label of a failure: one of `FAILURE_KINDS`, never the reason's own text."""
    text = reason.lower()
    for needle, kind in _FAILURE_KINDS:
        if needle in text:
            return kind
    if status is not None and 400 <= status < 600:
        return f"http_{status // 100}xx"
    return "other"


class Recorder:
    """What the stages report, as calls that do nothing (metrics turned off)."""

    def response(self, status: int, seconds: float) -> None:
        """An HTTP response arrived `seconds` after the request was sent."""

    def page_stored(self, unchanged: bool) -> None:
        """A child page settled as stored (or as unchanged, after a 304)."""

    def bytes_stored(self, size: int) -> None:
        """A page's body went to the blob store."""

    def retry(self) -> None:
        """An attempt failed and will be tried again."""

    def failure(self, reason: str, status: int | None) -> None:
        """A URL failed for good."""

    def loop_lag(self, seconds: float) -> None:
        """How late the event loop ran a timer, lately."""


class Metrics(Recorder):
    """The instruments of one worker, registered in `registry` (never the library's global one)."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self._pages = Counter("pipeline_pages_stored", "Child pages stored", ["outcome"], registry=registry)
        self._stored = self._pages.labels("stored")
        self._unchanged = self._pages.labels("unchanged")
        self._bytes = Counter("pipeline_stored_bytes", "Bytes of page bodies stored", registry=registry)
        responses = Counter("pipeline_responses", "HTTP responses by status class", ["status_class"], registry=registry)
        self._responses = {name: responses.labels(name) for name in STATUS_CLASSES}
        self._latency = Histogram(
            "pipeline_fetch_seconds",
            "Time from sending a request to its response's headers",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._retries = Counter("pipeline_retries", "Attempts that failed and will be tried again", registry=registry)
        failures = Counter(
            "pipeline_failures", "URLs that failed for good, by kind of reason", ["reason"], registry=registry
        )
        self._failures = {kind: failures.labels(kind) for kind in FAILURE_KINDS}
        self._lag = Gauge(
            "pipeline_event_loop_lag_seconds",
            "How late the event loop ran a timer, worst of the last few seconds",
            registry=registry,
        )

    def response(self, status: int, seconds: float) -> None:
        child = self._responses.get(f"{status // 100}xx")
        if child is not None:
            child.inc()
        self._latency.observe(seconds)

    def page_stored(self, unchanged: bool) -> None:
        (self._unchanged if unchanged else self._stored).inc()

    def bytes_stored(self, size: int) -> None:
        self._bytes.inc(size)

    def retry(self) -> None:
        self._retries.inc()

    def failure(self, reason: str, status: int | None) -> None:
        self._failures[failure_kind(reason, status)].inc()

    def loop_lag(self, seconds: float) -> None:
        self._lag.set(seconds)


# (host, limit, in flight, waiting) of each host a worker's limiter tracks.
HostRow = tuple[str, int, int, int]


def busiest_hosts(rows: Iterable[HostRow], keep: int = BUSIEST_HOSTS) -> list[HostRow]:
    """The `keep` busiest hosts (requests in flight, then waiting), and the rest summed as `other`."""
    ordered = sorted(rows, key=lambda row: (row[2] + row[3], row[2]), reverse=True)
    top, rest = ordered[:keep], ordered[keep:]
    if rest:
        top.append(
            (
                OTHER_HOSTS,
                sum(row[1] for row in rest),
                sum(row[2] for row in rest),
                sum(row[3] for row in rest),
            )
        )
    return top


class LiveCollector(Collector):
    """State read at scrape time: per-host requests and limits, the CPU pool, queue depth."""

    def __init__(
        self,
        hosts: Callable[[], Iterable[HostRow]],
        cpu_busy: Callable[[], tuple[int, int]] | None,
        queue: Callable[[], dict[str, tuple[int, int]]],
    ) -> None:
        self._hosts = hosts
        self._cpu_busy = cpu_busy
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("pipeline_host_in_flight", "Requests in flight per host", labels=["host"])
        waiting = GaugeMetricFamily("pipeline_host_waiting", "Requests waiting for a slot per host", labels=["host"])
        limit = GaugeMetricFamily("pipeline_host_limit", "Current adaptive concurrency limit per host", labels=["host"])
        for host, host_limit, running, queued in busiest_hosts(self._hosts()):
            in_flight.add_metric([host], running)
            waiting.add_metric([host], queued)
            limit.add_metric([host], host_limit)
        yield from (in_flight, waiting, limit)
        if self._cpu_busy is not None:
            busy, processes = self._cpu_busy()
            yield GaugeMetricFamily("pipeline_cpu_pool_busy", "CPU tasks running in the process pool", value=busy)
            yield GaugeMetricFamily("pipeline_cpu_pool_processes", "Processes in the CPU pool", value=processes)
        jobs = GaugeMetricFamily(
            "pipeline_queue_jobs", "Jobs in Redis of the crawls in each state", labels=["crawl_state"]
        )
        backlog = GaugeMetricFamily(
            "pipeline_backlog_urls",
            "URLs waiting in the MongoDB backlog of the crawls in each state",
            labels=["crawl_state"],
        )
        for state, (queued_jobs, parked) in sorted(self._queue().items()):
            jobs.add_metric([state], queued_jobs)
            backlog.add_metric([state], parked)
        yield jobs
        yield backlog
