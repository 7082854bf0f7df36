"""What runs inside a pool process, kept apart so that pool processes import little.

A pool process imports this module and the module of the function it runs, nothing of the
worker's: no asyncio (which alone maps several MB of OpenSSL into every process), no clients.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

#: What a batch sends back per call: (True, result, "") or (False, exception, remote traceback).
Outcome = tuple[bool, Any, str]


def run_batch(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Outcome]:
    """In a pool process: each call's result, or its exception, without stopping at the first."""
    outcomes: list[Outcome] = []
    for args in calls:
        try:
            outcomes.append((True, fn(*args), ""))
        except Exception as exc:  # noqa: BLE001 - one call's error is that call's result
            outcomes.append((False, exc, traceback.format_exc()))
    return outcomes


def exit_with_worker(worker_pid: int) -> None:
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
