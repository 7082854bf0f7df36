"""py-spy attached to a subject's first process (and its pool processes) for the crawl's duration.

Sampling profiles say where the CPU goes inside the worker: which library, which call site.
py-spy runs outside the target, so the worker needs no change; its own CPU is not in the
subject's tree. Summarise a raw profile with `python -m bench.profile`.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProfileRequest:
    """Profile every run into `path`, its name suffixed with the workload and subject."""

    path: Path
    options: tuple[str, ...] = ()

    def path_for(self, workload: str, subject: str, workers: int) -> Path:
        name = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{workload}-{subject}")
        return self.path.with_stem(f"{self.path.stem}-{name}-{workers}w")


class Profiler:
    """py-spy sampling one process tree (a worker and its pool) while the crawl runs."""

    def __init__(self, pid: int, output: Path, options: Sequence[str] = ()) -> None:
        kind = {".svg": "flamegraph", ".json": "speedscope"}.get(output.suffix, "raw")
        beside = Path(sys.executable).parent / "py-spy"  # in the benchmark's virtualenv, if installed there
        argv = [
            str(beside) if beside.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--subprocesses",
            *options,
        ]
        argv += ["--format", kind, "--output", str(output)]
        self.output = output
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        """py-spy writes its output when interrupted."""
        self._process.send_signal(signal.SIGINT)
        try:
            _, err = self._process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            err = "(killed)"
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile to {self.output}: {err.strip()[-500:]}")
