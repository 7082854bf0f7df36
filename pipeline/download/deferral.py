"""Host-aware scheduling: a job whose host is busy gives its slot back instead of waiting in it.

A worker runs at most `worker.max_jobs` jobs. Were a job that waits for a host at its limit to
sit in its slot, one slow or throttled host would fill every slot while other hosts' jobs wait
in the queue. So a request that would wait long for its host (no permit left in the fleet and
enough requests of this worker already waiting for one, a start reserved far ahead, a
Retry-After pause, an unread robots.txt) raises `HostBusy` instead, and the settle stage sends
the job back to the queue for about that long without counting a try (`Deferred`).

Only a job that has sent nothing yet may be deferred: its work so far is lost by running it
again. The job marks its start with `deferrable()`; the first request it sends spends the
allowance, and from then on its requests wait (a redirect hop, an object's second call). The
first decision wins: once one request of a job is deferred, its other requests (sent at the
same time, an object and its details) are deferred too rather than sent, since the job runs
again anyway. Requests made outside any job (robots.txt itself) always wait.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pipeline.errors import HostBusy

__all__ = ["DEFER_AFTER_S", "Allowance", "busy", "current", "defer_delay", "deferrable", "may_defer", "spend"]

# A request that would wait longer than this for its start is deferred instead (when it may be).
DEFER_AFTER_S = 1.0
DEFER_MIN_S = 0.2
DEFER_MAX_S = 60.0


class Allowance:
    """One attempt's right to be deferred: spent by its first request, or used by a deferral."""

    __slots__ = ("delay", "reason", "spent")

    def __init__(self) -> None:
        self.spent = False
        self.delay: float | None = None  # set once the attempt is being deferred
        self.reason = ""

    @property
    def open(self) -> bool:
        return not self.spent

    def busy(self, delay: float, reason: str) -> HostBusy:
        """Defer the attempt (the first deferral decides the delay); the exception to raise."""
        if self.delay is None:
            self.delay, self.reason = delay, reason
        return HostBusy(self.delay, self.reason)


# The allowance is a mutable object, so the tasks a job starts (asyncio.gather copies the
# context) share it with the job.
_ALLOWANCE: ContextVar[Allowance | None] = ContextVar("pipeline_defer_allowance", default=None)


@contextmanager
def deferrable() -> Iterator[None]:
    """Within this block (one attempt of a job), the first request may be deferred."""
    token = _ALLOWANCE.set(Allowance())
    try:
        yield
    finally:
        _ALLOWANCE.reset(token)


def current() -> Allowance | None:
    """The running attempt's allowance, if it still has one to use."""
    allowance = _ALLOWANCE.get()
    return allowance if allowance is not None and allowance.open else None


def may_defer() -> bool:
    return current() is not None


def busy(delay: float, reason: str) -> HostBusy:
    """`HostBusy` for the running attempt, which may defer (check `may_defer` first)."""
    allowance = current()
    return allowance.busy(delay, reason) if allowance is not None else HostBusy(delay, reason)


def spend() -> None:
    """A request is about to be sent: from now on this job's requests wait rather than defer.

    Raises `HostBusy` instead if another request of the same attempt was deferred meanwhile:
    the job runs again, so this one is not sent now.
    """
    allowance = _ALLOWANCE.get()
    if allowance is None or allowance.spent:
        return
    if allowance.delay is not None:
        raise HostBusy(allowance.delay, allowance.reason)
    allowance.spent = True


def defer_delay(expected_wait_s: float) -> float:
    """How long a deferred job stays away: about the expected wait, spread so deferred jobs do not
    all come back at once."""
    return min(DEFER_MAX_S, max(DEFER_MIN_S, expected_wait_s) * random.uniform(1.0, 1.5))
