"""Run the benchmark: `python -m bench.run [--workload W] [--workers N[,M]] [--out FILE]`.

For each workload it serves a fresh synthetic site, runs the floor (`bench.floor`) and then the
pipeline with each requested number of workers, verifies every crawl in MongoDB and S3, and
prints one JSON line per run on stdout (a Markdown summary goes to stderr). The services
(Redis, SecantusDB, moto's S3) are started once and shared; each run gets its own queue,
database and bucket. Exit status 0 only if every run's crawl verified.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.cluster import BenchError, Child, Services, site_stats, start_services, start_site
from bench.procstat import MB, Sampler, TreeMeter
from bench.profiler import Profiler, ProfileRequest
from bench.report import machine, source, table, versions
from bench.servercounters import ServerCounters
from bench.subjects import (
    LAUNCHERS,
    CelerySubject,
    FloorSubject,
    Outcome,
    PipelineSubject,
    RunPlaces,
    ScrapySubject,
    Subject,
)
from bench.verify import Target, drop, verify, verify_listed
from bench.workloads import WORKLOADS, Workload, static_workload

ALL = ("fan-out", "latency-bound", "link-heavy")
SERVICE_NAMES = ("redis", "mongo", "s3", "site")


@dataclass
class Measured:
    """What the meters saw during one crawl."""

    cpu_s: float
    peak_rss_mb: float
    peak_pss_mb: float
    start_rss_mb: float
    peak_loop_rss_mb: float
    processes: int
    services_cpu_s: dict[str, float]
    runner_cpu_s: float
    counters: ServerCounters
    other_cpu_s: float  # everything else the machine ran meanwhile: noise if large
    root_cpu_s: float  # the subject's root processes alone: each worker's event loop
    machine_cpu_s: float  # the whole machine over the window
    window_s: float  # how long the window lasted


def site_args(workload: Workload) -> list[str]:
    """`bench.site` options: the static folder and its latency, or one per field of the `SiteConfig`."""
    if workload.site_dir is not None:
        site = workload.site
        return ["--static-dir", str(workload.site_dir), "--latency-ms", str(site.latency_ms),
                "--latency-sigma", str(site.latency_sigma)]  # fmt: skip
    args: list[str] = []
    for name, value in asdict(workload.site).items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


def _meters(children: list[Child], services: Services, site: Child) -> dict[str, TreeMeter]:
    meters = {"subject": TreeMeter("subject", [child.pid for child in children], memory=True)}
    for name, pid in {**services.pids(), "site": site.pid}.items():
        meters[name] = TreeMeter(name, [pid])
    return meters


@dataclass(frozen=True)
class Bench:
    """What every run of one invocation shares."""

    services: Services
    logs: Path
    out: Path | None = None
    profile: ProfileRequest | None = None
    journal: bool = True  # every subject writes to MongoDB with j: true (the pipeline's default)


def _crawl_measured(
    subject: Subject, children: list[Child], workload: Workload, places: RunPlaces, bench: Bench, site: Child
) -> tuple[Outcome, Measured]:
    """The crawl, with the meters' window (and the profiler, if asked for) open exactly around it."""
    services = bench.services
    meters = _meters(children, services, site)
    counters = ServerCounters(services.redis.url, services.mongo.url)
    profilers: list[Profiler] = []
    with Sampler(list(meters.values())) as sampler:

        def mark() -> None:
            counters.start()
            sampler.mark()
            if bench.profile is not None:
                path = bench.profile.path_for(workload.name, subject.slug, subject.workers)
                profilers.append(Profiler(children[0].pid, path, bench.profile.options))

        try:
            outcome = subject.crawl(children, workload, places, mark)
        finally:
            for profiler in profilers:
                profiler.stop()
        sampler.sample()
        counters.stop()
        # Read inside the block: leaving it takes one more sample, past the crawl's end.
        machine_cpu_s, window_s = sampler.machine_cpu_seconds(), sampler.window_seconds()
    subject_meter = meters["subject"]
    ours = sum(meter.cpu_seconds() for meter in meters.values()) + sampler.own_cpu_seconds()
    measured = Measured(
        cpu_s=subject_meter.cpu_seconds(),
        peak_rss_mb=subject_meter.peak_rss_bytes / MB,
        peak_pss_mb=subject_meter.peak_pss_bytes / MB,
        start_rss_mb=subject_meter.start_rss_bytes / MB,
        peak_loop_rss_mb=subject_meter.peak_root_rss_bytes / MB,
        processes=subject_meter.peak_processes,
        services_cpu_s={name: meters[name].cpu_seconds() for name in SERVICE_NAMES},
        runner_cpu_s=sampler.own_cpu_seconds(),
        counters=counters,
        other_cpu_s=max(0.0, machine_cpu_s - ours),
        root_cpu_s=subject_meter.root_cpu_seconds(),
        machine_cpu_s=machine_cpu_s,
        window_s=window_s,
    )
    return outcome, measured


def run_one(subject: Subject, workload: Workload, bench: Bench) -> dict[str, Any]:
    """One crawl of a fresh site by one subject, measured and verified; returns its result line."""
    services = bench.services
    # Fit for a database and a bucket name: lower case, digits and dashes, 63 characters at most.
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{workload.name}-{subject.slug}-{subject.crunch}".lower())
    tag = f"{slug[:44]}-{subject.workers}-{uuid.uuid4().hex[:6]}"
    run_logs = bench.logs / tag
    run_logs.mkdir(parents=True)
    target = Target(services.mongo.url, "bench_" + tag.replace("-", "_"), services.s3.url, "bench-" + tag)
    site, base_url = start_site(site_args(workload), run_logs / "site.log")
    try:
        start_url = base_url + workload.start_path
        places = RunPlaces(services, target, f"bench:{tag}:queue", run_logs, start_url, bench.journal)
        children = subject.start(workload, places)
        try:
            outcome, measured = _crawl_measured(subject, children, workload, places, bench, site)
        finally:
            for child in children:
                child.stop()
        outcome.extra.update(host_limit_round_trips(children))
        stats = site_stats(base_url)
    finally:
        site.stop()
    expected = {base_url + path for path in workload.expected_paths()}
    if "stored_urls" in outcome.extra:  # a baseline that stores nothing but a list of pages
        checked = verify_listed(outcome.extra.pop("stored_urls"), expected, start_url)
    else:
        checked = asyncio.run(verify(target, outcome.crawl_id, expected, workload.max_depth))
    asyncio.run(drop(target))
    memory = seen_set_bytes(services.redis.url, outcome.crawl_id) if isinstance(subject, PipelineSubject) else None
    variant = dict(subject.settings).get("mongo.journal")
    journal = bench.journal if variant is None else variant.strip().lower() in ("1", "true", "yes", "on")
    return _result(subject, workload, outcome, measured, stats, checked, len(expected), journal, memory)


def seen_set_bytes(redis_url: str, crawl_id: str) -> int:
    """What a crawl's seen-set holds in Redis (`MEMORY USAGE` of its buckets), read after the crawl."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"pipeline:crawl:{crawl_id}:seen:*", count=1000))
        return sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)  # type: ignore[arg-type]
    finally:
        client.close()


_ROUND_TRIPS = re.compile(r"per-host limits: (\d+) requests, (\d+) Redis round trips")


def host_limit_round_trips(children: list[Child]) -> dict[str, Any]:
    """The Redis round trips the shared per-host limits cost, from what each worker logs as it stops."""
    requests = round_trips = 0
    for child in children:
        for match in _ROUND_TRIPS.finditer(child.log_path.read_text(errors="replace")):
            requests += int(match[1])
            round_trips += int(match[2])
    if not requests:
        return {}
    return {
        "host_limit_requests": requests,
        "host_limit_round_trips": round_trips,
        "host_limit_round_trips_per_request": round(round_trips / requests, 3),
    }


def _share(used: float, available: float) -> float | None:
    return round(used / available, 3) if available > 0 else None


def _per_page(seconds: float, pages: int) -> float | None:
    return round(seconds * 1000 / pages, 3) if pages else None


def _result(
    subject: Subject,
    workload: Workload,
    outcome: Outcome,
    measured: Measured,
    stats: dict[str, Any],
    checked: dict[str, Any],
    expected_pages: int,
    journal: bool,
    seen_bytes: int | None = None,
) -> dict[str, Any]:
    """The run's JSON line: every figure per run and per page, and what it was measured on."""
    pages, wall, links = checked["stored"], outcome.wall_s, checked["links"]
    expected_failed = len(workload.expected_failures())
    checks = {
        **checked["checks"],
        "no_page_fetched_twice": stats["duplicates"] <= workload.expected_duplicates(),
        "failures_as_expected": outcome.failed == expected_failed,
        "pages_as_expected": checked["verified"],
    }
    discovered = (outcome.extra.get("crawl_counters") or {}).get("discovered") or 0
    total_concurrency = workload.concurrency * subject.workers
    services_ms = {name: _per_page(cpu, pages) for name, cpu in measured.services_cpu_s.items()}
    return {
        "workload": workload.name,
        "subject": subject.name,
        "workers": subject.workers,
        "crunch": subject.crunch,
        "journal": journal,
        "pages": pages,
        "expected_pages": expected_pages,
        "verified": all(checks.values()),
        "wall_s": round(wall, 3),
        "wall_observed_s": round(outcome.wall_observed_s, 3),
        "pages_per_s": round(pages / wall, 1) if wall else None,
        "pipeline_cpu_s": round(measured.cpu_s, 3),
        "cpu_ms_per_page": _per_page(measured.cpu_s, pages),
        "links": links,
        "cpu_us_per_link": round(measured.cpu_s * 1e6 / links, 2) if links else None,
        "services_cpu_s": {name: round(cpu, 3) for name, cpu in measured.services_cpu_s.items()},
        "services_cpu_ms_per_page": services_ms,
        "services_cpu_ms_per_page_total": round(sum(v for v in services_ms.values() if v), 3),
        "runner_cpu_s": round(measured.runner_cpu_s, 3),
        "other_cpu_s": round(measured.other_cpu_s, 3),
        # How busy the cores were: near 1.0 the machine, not the subject, is the limit. And the
        # share of one core each worker's event-loop process used (1.0: that loop is the limit).
        "machine_busy": _share(measured.machine_cpu_s, (os.cpu_count() or 1) * measured.window_s),
        "event_loop_busy": _share(measured.root_cpu_s, subject.workers * outcome.wall_observed_s),
        "peak_rss_mb": round(measured.peak_rss_mb, 1),
        "peak_pss_mb": round(measured.peak_pss_mb, 1),
        # RSS when the crawl began (what start-up left), and the peak of the event-loop processes
        # alone: the rest of the peak is pool, fork server and resource tracker.
        "start_rss_mb": round(measured.start_rss_mb, 1),
        "peak_loop_rss_mb": round(measured.peak_loop_rss_mb, 1),
        "processes": measured.processes,
        "site_requests": stats["requests"],
        "expected_requests": workload.expected_requests(_robots_reads(subject, workload)),
        "site_duplicates": stats["duplicates"],
        "expected_duplicates": workload.expected_duplicates(),
        "site_max_in_flight": stats["max_in_flight"],
        "site_mean_in_flight": stats["mean_in_flight"],
        "in_flight_estimate": round(pages * workload.median_latency_s() / wall, 1) if wall else None,
        "configured_concurrency": workload.concurrency,
        "configured_concurrency_total": total_concurrency,
        "latency_ms": workload.site.latency_ms,
        # What concurrency alone allows, and what pagination alone forces: list pages fetched one
        # after another before the last is known, then at least one more round for its children.
        "expected_wall_s": round(expected_pages * workload.median_latency_s() / total_concurrency, 3),
        "list_hops": None if workload.walks_graph else workload.site.list_hops,
        "list_hops_s": None
        if workload.walks_graph
        else round((workload.site.list_hops + 1) * workload.mean_latency_s(), 3),
        **measured.counters.per_page(pages),
        "retries": outcome.retries,
        "failed": outcome.failed,
        "host_limit_round_trips_per_request": outcome.extra.get("host_limit_round_trips_per_request"),
        "host_limit_round_trips": outcome.extra.get("host_limit_round_trips"),
        "expected_failed": expected_failed,
        # Redis: the crawl's seen-set after the crawl, and the server's memory growth over the crawl.
        "discovered": discovered or None,
        "redis_seen_bytes_per_url": round(seen_bytes / discovered, 1) if seen_bytes and discovered else None,
        "redis_used_bytes_per_url": round(measured.counters.redis_memory_growth / discovered, 1)
        if discovered
        else None,
        "checks": checks,
        "problems": _problems(checked, stats, outcome, workload),
        "crawl_id": outcome.crawl_id,
        "crawl_counters": outcome.extra.get("crawl_counters"),
        "settings": dict((*workload.settings, *subject.settings)),
        "site_dir": str(workload.site_dir) if workload.site_dir is not None else None,
        "source": source(),
        "machine": machine(),
        "versions": versions(),
    }


def _robots_reads(subject: Subject, workload: Workload) -> int:
    """A pipeline worker reads the site's /robots.txt once (the site has one host), unless told not to."""
    if not isinstance(subject, PipelineSubject):
        return 0
    settings = dict((*workload.settings, *subject.settings))
    return 0 if settings.get("fetch.obey_robots", "true").lower() in ("false", "0", "no", "off") else 1


def _problems(checked: dict[str, Any], stats: dict[str, Any], outcome: Outcome, workload: Workload) -> dict[str, Any]:
    """Whatever went wrong, with examples; empty for a clean run."""
    problems = {key: checked[key] for key in ("missing_urls", "unexpected_urls", "missing_blobs") if checked[key]}
    if stats["duplicates"] > workload.expected_duplicates():
        problems["duplicate_paths"] = stats["duplicate_paths"]
    if outcome.extra.get("floor_failures"):
        problems["floor_failures"] = outcome.extra["floor_failures"]
    return problems


def _with_ratios(result: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pipeline CPU per page over the floor's (bulk writes, the fair floor, and single upserts),
    and CPU per page and pages/s over Celery's when the baseline ran in the same invocation."""
    mine = result.get("cpu_ms_per_page")
    for writes, key in (("bulk", "cpu_ratio_to_floor"), ("single", "cpu_ratio_to_floor_single")):
        floor = baselines.get(f"floor-{writes}", {}).get("cpu_ms_per_page")
        result[key] = round(mine / floor, 2) if mine and floor else None
    scrapy = baselines.get(ScrapySubject.name, {})
    if scrapy.get("verified") and mine:
        result["cpu_ratio_to_scrapy"] = round(mine / scrapy["cpu_ms_per_page"], 3)
        speed = result.get("pages_per_s")
        result["pages_per_s_ratio_to_scrapy"] = round(speed / scrapy["pages_per_s"], 2) if speed else None
    celery = baselines.get(CelerySubject.name, {})
    if celery.get("verified"):
        result["cpu_ratio_to_celery"] = round(mine / celery["cpu_ms_per_page"], 2) if mine else None
        speed = result.get("pages_per_s")
        result["pages_per_s_ratio_to_celery"] = round(speed / celery["pages_per_s"], 2) if speed else None
        rss = result.get("peak_rss_mb")
        result["rss_ratio_to_celery"] = round(rss / celery["peak_rss_mb"], 2) if rss else None
    return result


def _launcher_ratios(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """CPU per page and peak memory of this worker over the first one started (`pipeline worker`)."""
    for key, name in (
        ("cpu_ms_per_page", "cpu_ratio_to_pipeline_worker"),
        ("peak_rss_mb", "rss_ratio_to_pipeline_worker"),
    ):
        mine, theirs = result.get(key), reference.get(key) if reference.get("verified") else None
        result[name] = round(mine / theirs, 3) if mine and theirs else None
    return result


def _subjects(
    workers: Sequence[int],
    floors: Sequence[str],
    variants: Sequence[tuple[tuple[str, str], ...]] = (),
    baselines: Sequence[str] = (),
    launchers: Sequence[str] = ("pipeline",),
    crunch: str = "fingerprint",
) -> list[Subject]:
    """Every subject of one CPU stage: floors and Celery first (their lines give the ratios), then
    the pipeline started each way, then its variants."""
    subjects: list[Subject] = [FloorSubject(writes, crunch=crunch) for writes in floors]
    subjects += [CelerySubject(crunch=crunch)] if "celery" in baselines else []
    subjects += [ScrapySubject(crunch=crunch)] if "scrapy" in baselines else []
    subjects += [PipelineSubject(n, launcher=launcher, crunch=crunch) for launcher in launchers for n in workers]
    subjects += [PipelineSubject(n, variant, launchers[0], crunch) for variant in variants for n in workers]
    return subjects


def _emit(result: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as handle:
            handle.write(line + "\n")


def run_workload(workload: Workload, subjects: list[Subject], bench: Bench) -> list[dict[str, Any]]:
    """Every subject on the workload in turn, baselines first so the pipeline's lines carry the ratios.

    A run that fails is reported as a line with `verified: false` and the error, and the next
    subject still runs: one broken run should not cost the others' measurements.
    """
    results: list[dict[str, Any]] = []
    baselines: dict[str, dict[str, Any]] = {}  # the floors' and Celery's lines, for the ratios
    for subject in subjects:
        print(
            f"bench: {workload.name}: {subject.name} x{subject.workers}, crunch {subject.crunch}...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        try:
            result = run_one(subject, workload, bench)
        except (BenchError, OSError, TimeoutError, RuntimeError) as exc:
            traceback.print_exc(file=sys.stderr)
            result = {"workload": workload.name, "subject": subject.name, "workers": subject.workers}
            result |= {"crunch": subject.crunch, "verified": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        if not isinstance(subject, PipelineSubject):
            baselines[subject.name] = result
        else:
            result = _with_ratios(result, baselines)
            reference = baselines.setdefault(f"pipeline-{subject.workers}", result)
            if reference is not result:
                result = _launcher_ratios(result, reference)
        _emit(result, bench.out)
        results.append(result)
        print(f"bench: ...done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    return results


def _workers(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--workers takes whole numbers >= 1, e.g. 1 or 1,2")
    return counts


def _launchers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in LAUNCHERS for name in names):
        raise argparse.ArgumentTypeError(f"--launcher takes {' and/or '.join(LAUNCHERS)}, e.g. pipeline,arq")
    return names


def _floors(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip() and part.strip() != "none"]
    if any(part not in ("bulk", "single") for part in chosen):
        raise argparse.ArgumentTypeError("--floor takes bulk, single, bulk,single or none")
    return chosen


def _baselines(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip() and part.strip() != "none"]
    if any(part not in ("celery", "scrapy") for part in chosen):
        raise argparse.ArgumentTypeError("--baseline takes celery, scrapy, celery,scrapy or none")
    return chosen


def _crunches(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(part not in ("fingerprint", "none") for part in chosen):
        raise argparse.ArgumentTypeError("--crunch takes fingerprint, none or fingerprint,none")
    return chosen


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError("--set takes SECTION.KEY=VALUE, e.g. storage.batch_delay_ms=50")
    return key.strip(), value.strip()


def _variant(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(_setting(part) for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload",
        choices=(*WORKLOADS, "all", "site"),
        help="fan-out unless --site-dir is given; site: the --site-dir folder; all: " + ", ".join(ALL),
    )
    parser.add_argument("--site-dir", type=Path, help="serve this folder of static HTML and crawl it (workload site)")
    parser.add_argument("--start", default="/index.html", help="with --site-dir: the start page's path")
    parser.add_argument("--site-name", default="", help="with --site-dir: the workload's name (default: the folder's)")
    parser.add_argument("--site-latency-ms", type=float, default=0.0, help="with --site-dir: median response time")
    parser.add_argument(
        "--crunch",
        type=_crunches,
        default=["fingerprint"],
        help="CPU stage of every subject: fingerprint, none (the seed's job) or fingerprint,none (both in turn)",
    )
    parser.add_argument(
        "--journal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="every subject writes to MongoDB with j: true, the pipeline's default (--no-journal: none does)",
    )
    parser.add_argument("--workers", type=_workers, default=[1], help="pipeline worker processes; 1,2 runs both")
    parser.add_argument("--floor", type=_floors, default=["bulk", "single"], help="floor runs: bulk,single or none")
    parser.add_argument("--concurrency", type=int, help="override the workload's concurrency per worker")
    parser.add_argument("--repeat", type=int, default=1, help="run every subject this many times (machines are noisy)")
    parser.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a worker setting, repeatable: --set storage.batch_delay_ms=50 (the floor ignores it)",
    )
    parser.add_argument(
        "--baseline",
        type=_baselines,
        default=[],
        help="celery: also a Celery gevent worker (fan-out shapes; uv pip install --group celery-baseline); "
        "scrapy: also a Scrapy CrawlSpider (graph shapes; uv pip install --group scrapy-baseline); or celery,scrapy",
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE[,...]",
        help="also run the pipeline with these settings, in the same invocation: --variant cpu.batch_delay_ms=0",
    )
    parser.add_argument(
        "--launcher",
        type=_launchers,
        default=["pipeline", "arq"],
        help="how workers are started: pipeline (`pipeline worker`), arq (`arq pipeline.WorkerSettings`), or both",
    )
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each run's first process into FILE-<run> (.svg, .json, else raw)"
    )
    parser.add_argument(
        "--profile-option",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra py-spy flag, repeatable, with =: --profile-option=--gil (GIL holders only), =--nonblocking",
    )
    parser.add_argument("--logs", type=Path, help="keep the processes' logs here (default: a temporary folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    workload_name = args.workload or ("site" if args.site_dir else "fan-out")
    if workload_name == "site":
        if args.site_dir is None:
            parser.error("--workload site needs --site-dir PATH")
        try:
            workloads = [
                static_workload(
                    args.site_dir,
                    args.start,
                    name=args.site_name,
                    concurrency=args.concurrency or 64,
                    latency_ms=args.site_latency_ms,
                )
            ]
        except ValueError as exc:
            parser.error(str(exc))
        if not workloads[0].expected_paths():
            parser.error(f"--start {args.start}: no page of {args.site_dir} is reachable from it")
    else:
        names = ALL if workload_name == "all" else (workload_name,)
        workloads = [WORKLOADS[name] for name in names]
    if args.concurrency or args.set:
        changes: dict[str, Any] = {"settings": tuple(args.set)}
        if args.concurrency:
            changes["concurrency"] = args.concurrency
        workloads = [replace(workload, **changes) for workload in workloads]
    logs = args.logs or Path(tempfile.mkdtemp(prefix="bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    services = start_services(logs / "services")
    profile = ProfileRequest(args.profile, tuple(args.profile_option)) if args.profile else None
    bench = Bench(services, logs, args.out, profile, args.journal)
    results: list[dict[str, Any]] = []
    try:
        for workload in workloads:
            for _ in range(max(1, args.repeat)):
                for crunch in args.crunch:
                    subjects = _subjects(args.workers, args.floor, args.variant, args.baseline, args.launcher, crunch)
                    results += run_workload(workload, subjects, bench)
    finally:
        services.stop()
    ok = all(result.get("verified") for result in results)
    print("\n" + table(results), file=sys.stderr)
    if ok and args.logs is None:
        shutil.rmtree(logs, ignore_errors=True)
    elif not ok:
        print(f"bench: some runs failed; logs in {logs}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
