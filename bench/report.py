"""What a result line says about where it was measured, and the summary table.

Figures from a 2-core laptop and a 32-core server are not comparable, nor are figures taken with
different library versions: every result line carries both.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.embedded.processes import find_redis_server

PACKAGES = (
    "pipeline",
    "aiohttp",
    "arq",
    "redis",
    "pymongo",
    "aioboto3",
    "aiobotocore",
    "botocore",
    "selectolax",
    "uvloop",
    "msgpack",
    "moto",
    "secantusdb",
    # The Celery baseline's (`--baseline celery`); "not installed" otherwise.
    "celery",
    "kombu",
    "gevent",
    "requests",
    "boto3",
)

#: Celery 5.7 with gevent, concurrency 1,000, fan-out workload on this kind of machine (NOTES.md).
CELERY_GEVENT = {"pages_per_s": 125.0, "cpu_ms_per_page": 6.0, "peak_rss_mb": 166.0}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _redis_server_version() -> str:
    try:
        out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return "unknown"
    version = next((part for part in out.split() if part.startswith("v=")), "v=unknown")
    return version[2:]


@cache
def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def source() -> dict[str, Any]:
    """The commit measured, and whether the pipeline's code differed from it (uncommitted edits)."""
    return {
        "commit": _git("rev-parse", "--short=12", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--", "pipeline")),
    }


@cache
def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["redis-server"] = _redis_server_version()
    return found


_COLUMNS = (
    ("workload", "workload", "{}"),
    ("subject", "subject", "{}"),
    ("workers", "workers", "{}"),
    ("crunch", "crunch", "{}"),
    ("ok", "verified", "{}"),
    ("pages/s", "pages_per_s", "{:.0f}"),
    ("CPU-ms/page", "cpu_ms_per_page", "{:.2f}"),
    ("x floor", "cpu_ratio_to_floor", "{:.2f}"),
    ("x celery", "cpu_ratio_to_celery", "{:.2f}"),
    ("limit RTs/req", "host_limit_round_trips_per_request", "{:.3f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("PSS MB", "peak_pss_mb", "{:.0f}"),
    ("services ms/page", "services_cpu_ms_per_page_total", "{:.2f}"),
    ("machine busy", "machine_busy", "{:.0%}"),
    ("loop busy", "event_loop_busy", "{:.0%}"),
    ("other load CPU-s", "other_cpu_s", "{:.1f}"),
)


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of the runs, with the Celery gevent figures for the fan-out workload."""
    rows = [[title for title, _, _ in _COLUMNS]]
    for result in results:
        rows.append([_cell(result.get(key), fmt) for _, key, fmt in _COLUMNS])
    if any(result["workload"] == "fan-out" for result in results):
        celery = {"workload": "fan-out", "subject": "celery-gevent (NOTES.md)", "workers": 1, **CELERY_GEVENT}
        rows.append([_cell(celery.get(key), fmt) for _, key, fmt in _COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)
