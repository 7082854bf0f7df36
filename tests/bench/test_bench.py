"""The benchmark runs end to end: `python -m bench.run --workload smoke` crawls, measures and verifies.

No timing is asserted (this machine's speed is not the code's), only that every run produced a
complete, verified result line, so the benchmark cannot rot unnoticed between measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "workload",
    "subject",
    "workers",
    "pages",
    "expected_pages",
    "verified",
    "wall_s",
    "pages_per_s",
    "pipeline_cpu_s",
    "cpu_ms_per_page",
    "services_cpu_s",
    "peak_rss_mb",
    "peak_pss_mb",
    "site_requests",
    "site_duplicates",
    "site_max_in_flight",
    "site_mean_in_flight",
    "in_flight_estimate",
    "configured_concurrency",
    "machine_busy",
    "event_loop_busy",
    "machine",
    "versions",
}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_smoke_workload_runs_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "bench.run", "--workload", "smoke", "--out", str(out), "--logs", str(tmp_path)]
    command += ["--floor", "bulk", "--variant", "cpu.batch_delay_ms=0,storage.batch_size=10"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-4000:]

    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(line["subject"], line["workers"]) for line in lines] == [
        ("floor-bulk", 1),
        ("pipeline worker", 1),
        ("arq pipeline.WorkerSettings", 1),
        ("pipeline worker [cpu.batch_delay_ms=0,storage.batch_size=10]", 1),
    ]
    assert out.read_text().splitlines() == result.stdout.splitlines()
    for line in lines:
        assert not FIELDS - line.keys(), FIELDS - line.keys()
        assert line["verified"] is True, line
        assert line["pages"] == line["expected_pages"] == 200
        assert line["site_requests"] == line["expected_requests"]
        assert line["site_duplicates"] == 0
        assert line["pipeline_cpu_s"] > 0 and line["peak_rss_mb"] > 0
        assert set(line["services_cpu_s"]) == {"redis", "mongo", "s3", "site"}
        assert 0 < line["event_loop_busy"] <= 1.05 and 0 < line["machine_busy"] <= 1.05
    pipeline, arq, variant = lines[-3:]
    assert pipeline["settings"] == {} and arq["settings"] == {}
    assert arq["cpu_ratio_to_pipeline_worker"] is not None and arq["rss_ratio_to_pipeline_worker"] is not None
    assert variant["settings"] == {"cpu.batch_delay_ms": "0", "storage.batch_size": "10"}
    assert variant["cpu_ratio_to_floor"] is not None
    assert pipeline["cpu_ratio_to_floor"] is not None
    assert pipeline["crawl_counters"]["stored"] == 200


def _static_site(root: Path) -> None:
    """A small documentation-like folder: relative links, anchors, a folder index, a text file,
    links back to the start page, a link off the site and one to a file that is not there."""
    pages = {
        "index.html": '<a href="guide.html#intro">Guide</a> <a href="api/">API</a> <a href="#top">Top</a>'
        ' <a href="http://example.com/">Elsewhere</a> <a href="missing.html">Gone</a>',
        "guide.html": '<a href="index.html">Home</a> <a href="api/calls.html">Calls</a> <a href="notes.txt">Notes</a>',
        "api/index.html": '<a href="../guide.html">Guide</a> <a href="calls.html#f">Calls</a>',
        "api/calls.html": '<a href="../index.html">Home</a> <a href="./">API</a>',
    }
    for name, links in pages.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><head><title>{name}</title></head><body><p>{links}</p></body></html>")
    (root / "notes.txt").write_text("plain text, stored unparsed")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_static_site_crawled_without_a_cpu_stage_verifies(tmp_path: Path) -> None:
    """`--site-dir` serves a folder and checks the crawl against the folder's own links;
    `--crunch none` runs the seed's job (no CPU stage) on the floor and on `arq pipeline.WorkerSettings`."""
    site = tmp_path / "site"
    _static_site(site)
    command = [sys.executable, "-m", "bench.run", "--site-dir", str(site), "--start", "/index.html"]
    command += ["--crunch", "none", "--floor", "bulk", "--launcher", "arq", "--logs", str(tmp_path / "logs")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-4000:]

    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(line["subject"], line["crunch"]) for line in lines] == [
        ("floor-bulk", "none"),
        ("arq pipeline.WorkerSettings", "none"),
    ]
    for line in lines:
        assert line["workload"] == "site:site" and line["verified"] is True, line
        # The start page (stored from the fetch that walks it), guide, api/, api/calls and
        # notes.txt; missing.html fails. Nothing is fetched twice.
        assert line["pages"] == line["expected_pages"] == 5
        assert line["failed"] == line["expected_failed"] == 1
        assert line["site_duplicates"] == 0
    assert lines[1]["processes"] == 1  # no pool processes: the worker alone
    assert lines[1]["redis_seen_bytes_per_url"] > 0


def test_profile_samples_go_to_the_stage_of_their_deepest_named_frame() -> None:
    from bench.profile import LOOP_STAGE, summarise

    worker = 'process 1:"pipeline worker";run (uvloop/__init__.py:92);run_job (arq/worker.py:595)'
    page = f"{worker};work (pipeline/jobs/fetch_page.py:43)"
    pool = 'process 2:"python -B -c from multiprocessing.forkserver import main";worker (x.py:1)'
    lines = [
        # Redis called while settling a page: queue work, though the job runs inside arq.
        f"{worker};settle (pipeline/settle/retries.py:90);finish (pipeline/schedule/frontier.py:330)"
        ";execute (redis/client.py:1) 3",
        # aiohttp called by the S3 put is S3 work; called by the fetcher, the GET's.
        f"{page};S3BlobStore.put (pipeline/store/blobs.py:150);_request (aiohttp/client.py:900) 2",
        f"{page};Fetcher._exchange (pipeline/download/fetcher.py:90);_request (aiohttp/client.py:900) 1",
        'process 1:"pipeline worker";run (uvloop/__init__.py:92) 4',
        f"{pool};simhash (pipeline/crunch/fingerprint.py:60) 5",
    ]
    stages = summarise(lines).stages
    assert stages == {
        "queue: claim, run, settle, leases (arq, Redis)": 3,
        "S3 put": 2,
        "HTTP GET": 1,
        LOOP_STAGE: 4,
        "fingerprint (pool process)": 5,
    }


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_export_memory_measures_every_export() -> None:
    """`python -m bench.export_memory` stores pages, exports them per format and checks each
    export has a row per page (it exits non-zero otherwise)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.export_memory", "--pages", "20,40", "--formats", "jsonl,parquet",
         "--bodies", "yes", "--page-bytes", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["pages"], line["format"]) for line in lines] == [
        (20, "jsonl"), (20, "parquet"), (40, "jsonl"), (40, "parquet")
    ]  # fmt: skip
    assert all(line["rows"] == line["pages"] and line["peak_rss_mb"] > 0 for line in lines)
    assert "RSS growth MB" in result.stderr
