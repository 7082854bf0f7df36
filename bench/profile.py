"""Summarise a py-spy raw profile: `python -m bench.profile FILE [--top N] [--cpu-ms-per-page X]`.

`python -m bench.run --profile FILE.txt` records the first worker and its pool processes with
py-spy in raw (collapsed-stack) format. A flame graph shows the shape; this prints the numbers to
act on: the share of samples per stage of a page's work (floor and pipeline alike, so their
profiles compare line by line; with `--cpu-ms-per-page`, in CPU-ms per page), per process and
thread, per pipeline call site (the deepest `pipeline/` frame, so "where in our code
is the time spent, whatever library spends it"), per library (inclusive) and per function (self
time).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_OURS = ("pipeline/",)


# A sample belongs to the stage of its deepest frame that names one (a Redis call made while
# settling a page is queue work, an aiohttp call made by the S3 put is S3 work); samples that
# name none are the event loop's own work and protocol callbacks.
_STAGES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (stage, file prefixes, function prefixes)
    ("S3 put", ("aiobotocore/", "botocore/", "pipeline/store/blobs.py"), ("S3BlobStore.",)),
    ("MongoDB write", ("pymongo/", "bson/", "pipeline/store/mongo.py", "pipeline/store/group_commit.py"), ()),
    (
        "queue: claim, run, settle, leases (arq, Redis)",
        (
            "arq/",
            "redis/",
            "pipeline/worker/",
            "pipeline/schedule/frontier.py",
            "pipeline/schedule/backlog.py",
            "pipeline/settle/",
        ),
        (),
    ),
    ("HTTP GET", ("pipeline/download/",), ("Floor._get",)),
    ("parse (selectolax)", ("pipeline/parse/", "selectolax/"), ()),
    (
        "links: resolve, dedup, scope",
        ("pipeline/urls.py", "pipeline/schedule/discover.py"),
        ("Floor._follow", "Floor._visit"),
    ),
    ("process pool, worker side", ("multiprocessing/", "concurrent/", "threading.py"), ("CpuPool.",)),
)
_CRUNCH = ("fingerprint", "simhash", "word_counts")
STAGE_NAMES = ("fingerprint (pool process)", "pool process: queue, pickling", *(s for s, _, _ in _STAGES))
LOOP_STAGE = "event loop, aiohttp callbacks, other"


def _stage(place: str, frames: list[tuple[str, str]]) -> str:
    if place.startswith("pool process"):
        if any(function.startswith(_CRUNCH) for function, _ in frames):
            return STAGE_NAMES[0]
        return STAGE_NAMES[1]
    for function, file in reversed(frames):
        for stage, files, functions in _STAGES:
            if file.startswith(files) or function.startswith(functions):
                return stage
    return LOOP_STAGE


@dataclass
class Summary:
    total: int = 0
    stages: Counter[str] = field(default_factory=Counter)
    places: Counter[str] = field(default_factory=Counter)  # process / thread
    sites: Counter[str] = field(default_factory=Counter)  # pipeline call site
    packages: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text)
    return (match["function"], match["file"]) if match else (text, "?")


def _package(file: str) -> str:
    """py-spy shortens paths to `package/module.py`; a bare `module.py` is a standard-library module."""
    return file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")


def _place(processes: list[str], frames: list[tuple[str, str]]) -> str:
    process = "pool process" if "forkserver" in processes[-1] else "worker"
    thread = "other threads" if frames and frames[0][0] == "Thread._bootstrap" else "main thread"
    return f"{process}, {thread}"


def _site(frames: list[tuple[str, str]]) -> str:
    """The deepest frame of our own code, or else the library the sample is in."""
    for function, file in reversed(frames):
        if file.startswith(_OURS):
            return f"{function} ({file})"
    return f"[no pipeline frame] {_package(frames[-1][1])}" if frames else "?"


def summarise(lines: Sequence[str]) -> Summary:
    summary = Summary()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        processes = [part for part in parts if part.startswith("process ")] or ["?"]
        frames = [_frame(part) for part in parts if not part.startswith(("process ", "thread "))]
        summary.total += count
        place = _place(processes, frames)
        summary.places[place] += count
        summary.stages[_stage(place, frames)] += count
        summary.sites[_site(frames)] += count
        for package in {_package(file) for _, file in frames}:
            summary.packages[package] += count
        if frames:
            function, file = frames[-1]
            summary.functions[f"{function} ({file})"] += count
    return summary


def render(summary: Summary, top: int, cpu_ms_per_page: float | None = None) -> str:
    out = [f"{summary.total} samples", "", "stage:"]
    for stage in (*STAGE_NAMES, LOOP_STAGE):
        share = summary.stages[stage] / max(summary.total, 1)
        per_page = f"  {share * cpu_ms_per_page:5.2f} ms/page" if cpu_ms_per_page is not None else ""
        out.append(f"  {100 * share:5.1f}%{per_page}  {stage}")
    for title, counts in (
        ("process and thread", summary.places),
        ("pipeline call site (deepest pipeline/ frame)", summary.sites),
        ("package (inclusive)", summary.packages),
        ("function (self)", summary.functions),
    ):
        out.append(f"\n{title}:")
        for name, count in counts.most_common(top):
            out.append(f"  {100 * count / max(summary.total, 1):5.1f}%  {name}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu-ms-per-page", type=float, help="the run's measured CPU per page, to apportion")
    args = parser.parse_args(argv)
    print(render(summarise(args.file.read_text().splitlines()), args.top, args.cpu_ms_per_page))


if __name__ == "__main__":
    main()
