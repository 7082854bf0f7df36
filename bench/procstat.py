"""CPU time and memory of process trees, read from /proc.

The pipeline's cost is not one process: a worker forks a fork server, which forks the CPU pool's
processes, and multiprocessing adds a resource tracker. Each tree (a root and all its
descendants) is sampled periodically and every process's last seen utime+stime is kept, keyed by
pid and start time, so a child that exits between samples still counts (minus at most one
interval) and a reused pid is never mistaken for an old process. Reading /proc needs no
dependency and works for processes we did not start.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this module needs."""

    pid: int
    ppid: int
    start: int  # start time in clock ticks since boot: tells a reused pid apart
    cpu_ticks: int  # utime + stime
    rss_bytes: int


def read_stat(pid: int) -> ProcStat | None:
    """One process's stat, or None if it is gone (or a zombie, whose memory is already freed)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may hold spaces: split after its end.
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        start=int(fields[19]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        rss_bytes=int(fields[21]) * PAGE_BYTES,
    )


def all_stats() -> dict[int, ProcStat]:
    """Every live process on the machine, by pid."""
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def descendants(roots: Iterable[int], stats: dict[int, ProcStat]) -> list[ProcStat]:
    """The live processes among `roots` and everything they forked, however deep."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[ProcStat] = []
    stack = [pid for pid in roots if pid in stats]
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found.append(stats[pid])
        stack.extend(children.get(pid, ()))
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (forked children, libraries) are split between sharers.

    Summing RSS over a worker and its pool processes counts copy-on-write pages once per
    process; PSS sums to what the tree really costs the machine.
    """
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy_ticks() -> int:
    """CPU time all processes on the machine spent, from the first line of /proc/stat (idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return user + nice + system + irq + softirq + steal


@dataclass
class TreeMeter:
    """CPU seconds and peak memory of one or more process trees since the last `mark`."""

    name: str
    roots: list[int]
    memory: bool = False  # also read PSS (costs a page-table walk per process per sample)
    peak_rss_bytes: int = 0
    peak_pss_bytes: int = 0
    peak_processes: int = 0
    last_rss_bytes: int = 0
    start_rss_bytes: int = 0  # all the trees' RSS when the window opened: what start-up left
    peak_root_rss_bytes: int = 0  # the roots alone (the workers' own processes, without their pools)
    _cpu: dict[tuple[int, int], int] = field(default_factory=dict)
    _base: dict[tuple[int, int], int] = field(default_factory=dict)

    def observe(self, stats: dict[int, ProcStat]) -> None:
        members = descendants(self.roots, stats)
        for stat in members:
            self._cpu[(stat.pid, stat.start)] = stat.cpu_ticks
        self.last_rss_bytes = sum(stat.rss_bytes for stat in members)
        self.peak_rss_bytes = max(self.peak_rss_bytes, self.last_rss_bytes)
        roots = set(self.roots)
        self.peak_root_rss_bytes = max(
            self.peak_root_rss_bytes, sum(stat.rss_bytes for stat in members if stat.pid in roots)
        )
        self.peak_processes = max(self.peak_processes, len(members))
        if self.memory:
            self.peak_pss_bytes = max(self.peak_pss_bytes, sum(pss_bytes(stat.pid) for stat in members))

    def mark(self) -> None:
        """Start a new window: CPU counts from here, peaks restart."""
        self._base = dict(self._cpu)
        self.start_rss_bytes = self.last_rss_bytes
        self.peak_rss_bytes = self.peak_pss_bytes = self.peak_processes = self.peak_root_rss_bytes = 0

    def cpu_seconds(self) -> float:
        """CPU used since `mark` by every process seen in the trees, exited ones included."""
        ticks = sum(now - self._base.get(key, 0) for key, now in self._cpu.items())
        return ticks / CLOCK_TICKS

    def root_cpu_seconds(self) -> float:
        """CPU used since `mark` by the root processes alone (a worker's event-loop process)."""
        roots = set(self.roots)
        ticks = sum(now - self._base.get(key, 0) for key, now in self._cpu.items() if key[0] in roots)
        return ticks / CLOCK_TICKS


def _own_ticks() -> int:
    stat = read_stat(os.getpid())
    return stat.cpu_ticks if stat is not None else 0


class Sampler:
    """Samples a set of meters every `interval` seconds on a daemon thread.

    A thread rather than a task keeps the sampling period steady while the benchmark's own event
    loop is busy, and the lock makes `mark` and `sample` consistent with the periodic samples.
    """

    def __init__(self, meters: Sequence[TreeMeter], interval: float = 0.2) -> None:
        self.meters = list(meters)
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._machine_base = self._machine_last = machine_busy_ticks()
        self._self_base = self._self_last = _own_ticks()
        self._base_time = self._last_time = time.monotonic()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        stats = all_stats()
        with self._lock:
            for meter in self.meters:
                meter.observe(stats)
            self._machine_last = machine_busy_ticks()
            self._self_last = _own_ticks()
            self._last_time = time.monotonic()

    def window_seconds(self) -> float:
        """How long the window the CPU figures cover lasted: from `mark` to the latest sample."""
        return self._last_time - self._base_time

    def machine_cpu_seconds(self) -> float:
        """CPU the whole machine spent since `mark`: compared with the meters, it shows other load."""
        return (self._machine_last - self._machine_base) / CLOCK_TICKS

    def own_cpu_seconds(self) -> float:
        """CPU this process (the runner: sampling, the crawl API, polling) spent since `mark`."""
        return (self._self_last - self._self_base) / CLOCK_TICKS

    def mark(self) -> None:
        """A fresh sample, then every meter's window starts."""
        self.sample()
        with self._lock:
            for meter in self.meters:
                meter.mark()
            self._machine_base, self._self_base = self._machine_last, self._self_last
            self._base_time = self._last_time
        self.sample()  # peaks of the new window start from the current footprint

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
