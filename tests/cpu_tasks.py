"""Functions the CPU-pool tests run in child processes (they must be importable there)."""

from __future__ import annotations

import os
import signal
import time


def square(value: int) -> int:
    return value * value


def die() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def spin(seconds: float) -> int:
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return count


def pid() -> int:
    return os.getpid()


def troubled_square(value: int) -> int:
    """`value` squared; -1 kills its own process, -2 spins for a minute, other negatives raise."""
    if value == -1:
        return die()
    if value == -2:
        return spin(60.0)
    if value < 0:
        raise ValueError(f"no good: {value}")
    return value * value


def page_stats(text: str) -> dict[str, object]:
    """A user's CPU stage: what a crawl with `crunch = "tests.cpu_tasks:page_stats"` stores."""
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len) if words else "", "pid": os.getpid()}


def refuse(text: str) -> int:
    raise ValueError("this page is not for me")


def unstorable(text: str) -> object:
    return {"too big": 2**70}


def make_nested() -> object:
    def inner(text: str) -> int:
        return 0

    return inner


nested = make_nested()
not_callable = 42
