"""The processes of a benchmark run: services, the site, pipeline workers and the floor.

Everything runs as its own process so that each one's CPU and memory can be read from /proc
apart from the others, and so that no server shares an event loop or a GIL with the code it
serves. Children talk back through one line on stdout (`ready`, or the site's URL); their
stderr goes to a log file whose tail is shown when one of them fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.embedded.processes import ServiceProcess, start_mongo, start_redis
from tests.servers.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, start_s3

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_TAIL_CHARS = 3000


class BenchError(RuntimeError):
    """A process of the benchmark did not start, answer or finish as expected."""


@dataclass
class Services:
    """Redis, SecantusDB (MongoDB wire protocol) and moto's S3, shared by every run of one invocation."""

    redis: ServiceProcess
    mongo: ServiceProcess
    s3: ServiceProcess

    def pids(self) -> dict[str, int]:
        return {"redis": self.redis.pid, "mongo": self.mongo.pid, "s3": self.s3.pid}

    def stop(self) -> None:
        for service in (self.redis, self.mongo, self.s3):
            with contextlib.suppress(Exception):
                service.stop()


def start_services(root: Path) -> Services:
    """Start the three services side by side: SecantusDB and moto each take over a second to boot."""
    with ThreadPoolExecutor(3) as pool:
        redis = pool.submit(start_redis, root / "redis", persistent=False)
        mongo = pool.submit(start_mongo, root / "mongo")
        s3 = pool.submit(start_s3, log_dir=root)
        futures = (redis, mongo, s3)
        started = [future.exception() or future.result() for future in futures]
    failures = [item for item in started if isinstance(item, BaseException)]
    if failures:
        for item in started:
            if isinstance(item, ServiceProcess):
                item.stop()
        raise BenchError(f"could not start the services: {failures[0]}") from failures[0]
    redis_service, mongo_service, s3_service = (item for item in started if isinstance(item, ServiceProcess))
    return Services(redis_service, mongo_service, s3_service)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any PIPELINE_* variable of the caller's, plus `extra` and S3 credentials.

    A stray PIPELINE_FETCH_CONCURRENCY in the shell must not change what is measured.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")}
    env.update(
        AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY,
        AWS_DEFAULT_REGION=S3_REGION,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Child:
    """A child process that reports on stdout line by line; stderr goes to `log_path`."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(env),
            text=True,
            start_new_session=True,  # a Ctrl-C reaches the runner only, which then stops us in order
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def read_line(self, timeout: float) -> str:
        """The next line the child prints; raises with its log's tail if it exits or stays silent."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"{self.name} printed nothing for {timeout:g}s\n{self.log_tail()}") from None
        if line is None:
            self.process.wait(5)
            raise BenchError(f"{self.name} exited with code {self.process.returncode}\n{self.log_tail()}")
        return line

    def wait_for(self, expected: str, timeout: float = START_TIMEOUT) -> None:
        line = self.read_line(timeout)
        if line != expected:
            raise BenchError(f"{self.name} printed {line!r}, expected {expected!r}\n{self.log_tail()}")

    def wait_for_log(self, expected: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until the child's log (its stderr) holds `expected`."""
        deadline = time.monotonic() + timeout
        while expected not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.process.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not log {expected!r} within {timeout:g}s\n{self.log_tail()}")
            time.sleep(0.05)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def log_tail(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return f"--- {self.log_path} ---\n{text[-_TAIL_CHARS:]}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (a worker finishes its jobs and flushes its writes), SIGKILL the group after `timeout`."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self.process.wait(timeout)
            return self.process.returncode
        finally:
            # The pool processes of a killed worker outlive it in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self._log.close()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def console_script(name: str, *args: str) -> list[str]:
    """A console script installed beside this Python (`pipeline`, `arq`), as users run it."""
    return [str(Path(sys.executable).parent / name), *args]


def start_site(site_args: Sequence[str], log_path: Path) -> tuple[Child, str]:
    """The synthetic site in its own process (`bench.site`); returns it and its base URL."""
    child = Child("site", python_module("bench.site", "--port", "0", *site_args), child_env({}), log_path)
    try:
        url = str(json.loads(child.read_line(START_TIMEOUT))["url"])
    except BaseException:
        child.stop()
        raise
    return child, url


def site_stats(base_url: str) -> dict[str, Any]:
    """The site's counters from its `/_stats` endpoint."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


def start_ready(children: Sequence[Child], ready: str, timeout: float = START_TIMEOUT) -> None:
    """Wait until every child printed `ready`; stop them all if one fails."""
    try:
        for child in children:
            child.wait_for(ready, timeout)
    except BaseException:
        for child in children:
            child.stop(5)
        raise
