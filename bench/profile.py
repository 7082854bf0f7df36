"""Summarise a py-spy raw profile: `python -m bench.profile FILE [--top N]`.

`python -m bench.run --profile FILE.txt` records the first worker and its pool processes with
py-spy in raw (collapsed-stack) format. A flame graph shows the shape; this prints the numbers to
act on: the share of samples per process and thread, per pipeline call site (the deepest
`pipeline/` or `jobs/` frame, so "where in our code is the time spent, whatever library spends
it"), per library (inclusive) and per function (self time).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_OURS = ("pipeline/", "jobs/")


@dataclass
class Summary:
    total: int = 0
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
        summary.places[_place(processes, frames)] += count
        summary.sites[_site(frames)] += count
        for package in {_package(file) for _, file in frames}:
            summary.packages[package] += count
        if frames:
            function, file = frames[-1]
            summary.functions[f"{function} ({file})"] += count
    return summary


def render(summary: Summary, top: int) -> str:
    out = [f"{summary.total} samples"]
    for title, counts in (
        ("process and thread", summary.places),
        ("pipeline call site (deepest pipeline/ or jobs/ frame)", summary.sites),
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
    args = parser.parse_args(argv)
    print(render(summarise(args.file.read_text().splitlines()), args.top))


if __name__ == "__main__":
    main()
