"""The CPU stage: text fingerprints computed in worker processes, never on the event loop.

`fingerprint` is a pure function of the page text: a 64-bit simhash (near-duplicate pages have
hashes a few bits apart) and the most frequent words. It runs in `CpuPool`, a process pool owned
by the worker: bounded in flight so memory stays flat, with a timeout that kills a runaway child
(arq can only cancel the awaiting coroutine, the child would keep burning a core) and a pool
that rebuilds itself when a child dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import string
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

_PUNCTUATION = string.punctuation + "\u00ab\u00bb\u201c\u201d\u2018\u2019\u2026\u2013\u2014"
_STOPWORDS = frozenset(
    """
    the and for are but not you all any can had her was one our out has him his how its may new now old see
    two way who did get let put say she too use that with have this will your from they been were what when
    which their there would about into than them then these some could other more only also over such most
    very just like des les une est pas que qui dans pour sur der die das und ist nicht mit
    """.split()
)
TOP_WORDS = 10
T = TypeVar("T")


class CpuTimeout(Exception):
    """A CPU task ran past its timeout; its process was killed."""


class CpuPoolBroken(Exception):
    """A pool process died under the task; the pool was rebuilt and the task may be retried."""


# Bit-sliced counters: `_SPREAD[byte]` holds the byte's 8 bits in 8 lanes of `_LANE` bits, so
# one integer multiply-add counts a weight into all 8 bit positions at once. Exact while a
# text's total weight (its word count) stays below 2**_LANE.
_LANE = 32
_LANE_MASK = (1 << _LANE) - 1
_SPREAD = [sum(((byte >> bit) & 1) << (_LANE * bit) for bit in range(8)) for byte in range(256)]


def simhash(weights: Counter[str]) -> int:
    """64-bit simhash of weighted features.

    Bit `8 * i + b` is set when the features whose hash has that bit outweigh those without it.
    The weights are first summed per value of each hash byte (8 table updates per feature
    instead of 64 bit tests), then each table is folded into 8 bit counters at once through
    `_SPREAD`: cheap enough to run on every page, even one with thousands of distinct words.
    """
    tables: list[dict[int, int]] = [{} for _ in range(8)]
    for feature, weight in weights.items():
        digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        for table, byte in zip(tables, digest, strict=True):
            table[byte] = table.get(byte, 0) + weight
    total = sum(weights.values())
    result = 0
    for byte_index, table in enumerate(tables):
        counters = sum(weight * _SPREAD[byte] for byte, weight in table.items())
        for bit in range(8):
            if 2 * ((counters >> (_LANE * bit)) & _LANE_MASK) > total:
                result |= 1 << (byte_index * 8 + bit)
    return result


def word_counts(tokens: Counter[str]) -> Counter[str]:
    """Words of two letters or more among lower-cased whitespace `tokens`, stop words left out.

    Counting whitespace tokens first and cleaning only the distinct ones is several times
    faster than a Unicode-aware regex over the whole text.
    """
    words: Counter[str] = Counter()
    for token, count in tokens.items():
        word = token.strip(_PUNCTUATION)
        if len(word) >= 2 and word.isalpha() and word not in _STOPWORDS:
            words[word] += count
    return words


def fingerprint(text: str) -> dict[str, Any]:
    """Word count, simhash (16 hex digits: MongoDB has no unsigned 64-bit integer) and top words."""
    tokens = Counter(text.lower().split())
    words = word_counts(tokens)
    return {
        "word_count": tokens.total(),
        "simhash": f"{simhash(words):016x}",
        "top_words": [[word, count] for word, count in words.most_common(TOP_WORDS)],
    }


class CpuPool:
    """A process pool for CPU-bound stages, owned by one worker."""

    def __init__(self, processes: int, max_in_flight: int, timeout: float) -> None:
        self.processes = processes
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        # forkserver: forking a process that runs an event loop copies the loop's state and
        # threads into the child; the fork server is a clean, single-threaded parent.
        self._context = multiprocessing.get_context("forkserver")
        self._executor = self._new_executor()
        self.rebuilds = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=self._context,
            initializer=_exit_with_worker,
            initargs=(os.getpid(),),
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a child process; kill and rebuild on timeout or a dead child."""
        async with self._slots:
            executor = self._executor
            loop = asyncio.get_running_loop()
            try:
                # Inside the try: submitting to a pool whose child just died raises at once.
                future = loop.run_in_executor(executor, fn, *args)
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                self._rebuild(executor)
                name = getattr(fn, "__name__", fn)
                raise CpuTimeout(f"{name} ran past {self.timeout:g}s; its process was killed") from None
            except BrokenProcessPool:
                self._rebuild(executor)
                raise CpuPoolBroken(f"a pool process died while running {getattr(fn, '__name__', fn)}") from None

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        if broken is not self._executor:
            return  # another task already replaced it
        self.rebuilds += 1
        self._executor = self._new_executor()
        _kill(broken)

    def pids(self) -> list[int]:
        return [p.pid for p in (getattr(self._executor, "_processes", None) or {}).values() if p.pid]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _exit_with_worker(worker_pid: int) -> None:
    """Make a pool process exit when the worker that owns the pool is gone.

    A pool process waits on a queue whose write end it holds itself, so it never sees the end
    of a worker that was `kill -9`'d, and would idle forever. Its parent is the fork server,
    not the worker, so this watches the worker's pid instead.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass  # the pid exists (someone else's): keep watching

    threading.Thread(target=watch, name="pipeline-worker-watch", daemon=True).start()


def _kill(executor: ProcessPoolExecutor) -> None:
    # The executor has no public way to stop a running task; terminating its processes is the
    # only way to get the core back. Other tasks in that pool fail with BrokenProcessPool and
    # are retried by their jobs.
    processes = dict(getattr(executor, "_processes", None) or {})
    for process in processes.values():
        if process.is_alive():
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
