"""Per-host concurrency that adapts to how each site copes: the asyncio counterpart of Celery's
`--autoscale=max,min`, applied per host rather than per worker.

A fixed per-host limit is either too low for a big CDN-backed site or too high for a small server
that answers 429 or slows to a crawl. Here each host gets AIMD control, as in TCP congestion
avoidance: the limit grows by one after about one window of good results at the current limit,
and halves when the host says it is overloaded (429, 503, timeouts) or its latency jumps well above
its unloaded level. `HostController` is the arithmetic for one host, driven by explicit times so it
can be tested without a clock; `AdaptiveLimiter` is the asyncio side that makes requests wait for a
slot under each host's current limit and a global total.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

from redis.exceptions import RedisError

from pipeline.download import deferral
from pipeline.download.fleet_limits import TICK_S, FleetLimits, HostAsk, HostGrant

__all__ = ["AdaptiveLimiter", "AdaptiveSettings", "HostController", "HostState", "SlotReport"]

log = logging.getLogger("pipeline.host_limits")

# A failed round with the fleet (Redis away) is tried again this much later.
FLEET_RETRY_S = 0.5
# A spaced request woken later than this (plus the lateness its host's next start allows for, see
# `_spaced`) after its reserved start takes a new start instead.
LATE_S = 0.003
MAX_LAG_S = 1.0
# Starts are spaced by the delay plus this: what a request takes from its start here to its
# arrival at the site varies by a few ms, and the site must never see two closer than the delay.
START_MARGIN_S = 0.01

# Latency is judged on the median of this many recent responses: one slow page (a big PDF, a
# cold cache) must not count as a slowdown, while a slowdown of most responses shows within a few.


@dataclass(frozen=True)
class AdaptiveSettings:
    """Bounds and reflexes of the per-host controller.

    `increase_every` is the number of consecutive good results needed before the limit grows by
    one; 0 means "the current limit", i.e. one full window of requests per step, which keeps the
    growth per unit of time about the same whether a host is at 2 or at 30. `cooldown_s` is the
    least time between two decreases, so that one burst of 429s halves the limit once, not once per
    response; during it the limit that caused the decrease is not reached again.
    `max_pause_s` caps a server's `Retry-After`, because waiters block while a host is paused and a
    header saying "come back tomorrow" must not hang them; retrying much later is the job's call.
    """

    min_limit: int = 2
    max_limit: int = 32
    initial_limit: int = 4
    latency_factor: float = 3.0
    increase_every: int = 0
    cooldown_s: float = 1.0
    max_pause_s: float = 60.0
    # Latencies per verdict: enough that one window's median is steady under realistic spread
    # (a lognormal sigma of 0.3), or the lowest median ever seen sinks far below the typical one
    # and ordinary noise reads as a slowdown.
    latency_samples: int = 25

    def __post_init__(self) -> None:
        if self.latency_samples < 3:
            raise ValueError(f"latency_samples must be at least 3, got {self.latency_samples}")
        if self.min_limit < 1:
            raise ValueError(f"min_limit must be at least 1, got {self.min_limit}")
        if self.max_limit < self.min_limit:
            raise ValueError(f"max_limit ({self.max_limit}) must be at least min_limit ({self.min_limit})")
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError(
                f"initial_limit ({self.initial_limit}) must lie between min_limit ({self.min_limit})"
                f" and max_limit ({self.max_limit})"
            )
        if not (math.isfinite(self.latency_factor) and self.latency_factor > 1.0):
            raise ValueError(f"latency_factor must be a finite number above 1, got {self.latency_factor}")
        if self.increase_every < 0:
            raise ValueError(
                f"increase_every must be 0 (one window of the current limit) or positive, got {self.increase_every}"
            )
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be a finite number of seconds, at least 0, got {self.cooldown_s}")
        if not (math.isfinite(self.max_pause_s) and self.max_pause_s >= 0):
            raise ValueError(f"max_pause_s must be a finite number of seconds, at least 0, got {self.max_pause_s}")


class HostController:
    """The adaptive limit of one host, updated from the outcomes of its requests.

    Latency baseline: the lowest median of the last few latencies seen, not an average. A plain
    EWMA follows whatever latency the host shows under the load we put on it, so under sustained
    load it creeps up and "baseline × factor" moves with it: a slowdown is never detected. A
    minimum only moves down under load. Medians rather than raw samples feed the minimum so that
    one unusually fast response (a tiny error page) cannot set a baseline every normal page then
    exceeds. A pure minimum would pin the host at `min_limit` forever if the site became slower
    for good (a different backend, a busier shared server), so the one time the baseline may rise
    is at `min_limit`: there we put the least load on the host we ever will, so what it shows is
    its unloaded latency by definition.

    Evidence is dated: callers pass `started`, the time the request was sent. Responses to requests
    sent before the last decrease describe a limit that no longer applies and are ignored for
    decisions, and only results of requests sent since the last change count towards the next
    increase, which is what "a window of good results at the current limit" means. Successes only
    count towards growth when the host used its whole limit (`saturated`): a host we send one
    request at a time gives no evidence that it could take more.

    Until the host first pushes back, the limit doubles per window (slow start); afterwards it
    grows by one per window. For one cooldown after a decrease the limit that triggered it is off-limits: regrowth stops
    one below it rather than probing a level just shown to be too high, then resumes probing.
    """

    def __init__(self, settings: AdaptiveSettings) -> None:
        self.settings = settings
        self.limit = settings.initial_limit
        self.baseline_s: float | None = None
        self.paused_until = -math.inf
        self.successes = 0
        self.overloads = 0
        self.errors = 0
        self.slowdowns = 0
        self.increases = 0
        self.decreases = 0
        self._samples: deque[float] = deque(maxlen=settings.latency_samples)
        self._streak = 0
        self._changed_at = -math.inf
        self._decreased_at = -math.inf
        self._ceiling: int | None = None

    @property
    def typical_latency_s(self) -> float | None:
        """Median of the recent latencies, once there are enough of them to mean something."""
        if len(self._samples) < self.settings.latency_samples:
            return None
        return statistics.median(self._samples)

    def paused_for(self, now: float) -> float:
        """Seconds until new requests to this host may start (0 when not paused)."""
        return max(0.0, self.paused_until - now)

    def on_success(self, latency_s: float, now: float, *, saturated: bool = True, started: float | None = None) -> None:
        """A response arrived (any status the server chose to send, other than an overload)."""
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s must be a finite number of seconds, at least 0, got {latency_s}")
        self.successes += 1
        if self._stale(started):
            return
        self._samples.append(latency_s)
        typical = self.typical_latency_s
        if typical is None:
            # Too few samples to judge latency by, and growth needs latency known to be acceptable.
            return
        if self.baseline_s is None or typical < self.baseline_s or self.limit <= self.settings.min_limit:
            self.baseline_s = typical
        elif typical > self.baseline_s * self.settings.latency_factor:
            self.slowdowns += 1
            self._back_off(now, sent_at_this_limit=started is not None and started >= self._changed_at)
            return
        if saturated and (started is None or started >= self._changed_at):
            self._streak += 1
            if self._streak >= (self.settings.increase_every or self.limit):
                self._grow(now)

    def on_overload(self, now: float, retry_after: float | None = None, *, started: float | None = None) -> None:
        """The host refused or choked: 429, 503, a timeout. Halve the limit (once per cooldown).

        With `retry_after` (seconds, from the server's header) no new request to the host starts
        until `now + retry_after`, capped at `max_pause_s`; a later, shorter one does not shorten it.
        """
        self.overloads += 1
        if retry_after is not None and retry_after > 0:
            pause = min(retry_after, self.settings.max_pause_s)
            self.paused_until = max(self.paused_until, now + pause)
        if not self._stale(started):
            self._back_off(now, sent_at_this_limit=started is not None and started >= self._changed_at)

    def on_error(self, now: float) -> None:
        """Any other failure: a connection reset, a 500 from a broken page, a DNS error.

        These stop growth (a streak is of *consecutive* good results, and a failing host gains
        nothing from more concurrency) but do not shrink the limit: most of them are about one page
        or one connection, not load, and halving on them would starve sites with a few broken
        links. Failures that do mean load (429, 503, timeouts) belong in `on_overload`. `now` is
        taken so all three outcomes share one shape.
        """
        del now
        self.errors += 1
        self._streak = 0

    def adopt(self, limit: int, now: float) -> None:
        """Take the limit the fleet agreed on (another worker's evidence moved it).

        A lower limit counts as a decrease made now: what was sent before it is stale evidence,
        and a cooldown begins, so this worker does not halve it again for the same burst.
        """
        if limit == self.limit:
            return
        if limit < self.limit:
            self._ceiling = self.limit
            self.decreases += 1
            self._decreased_at = now
            self._samples.clear()
        else:
            self.increases += 1
        self.limit = limit
        self._changed_at = now
        self._streak = 0

    def _stale(self, started: float | None) -> bool:
        return started is not None and started < self._decreased_at

    def _in_cooldown(self, now: float) -> bool:
        return now - self._decreased_at < self.settings.cooldown_s

    def _back_off(self, now: float, sent_at_this_limit: bool) -> None:
        self._streak = 0
        if self._in_cooldown(now):
            # Fresh trouble while the last decrease is still settling: no second halving yet, but
            # this limit too is now known to be too high, so step just below it.
            self._ceiling = self.limit if self._ceiling is None else min(self._ceiling, self.limit)
            if sent_at_this_limit and self.limit > self.settings.min_limit:
                self.limit -= 1
                self._changed_at = now
            return
        self._ceiling = self.limit
        self.limit = max(self.settings.min_limit, self.limit // 2)
        self.decreases += 1
        self._decreased_at = self._changed_at = now
        # The samples describe the old limit; the next verdict on latency needs fresh ones.
        self._samples.clear()

    def _grow(self, now: float) -> None:
        cap = self.settings.max_limit
        if self._ceiling is not None and self._in_cooldown(now):
            cap = min(cap, self._ceiling - 1)
        if self.limit < cap:
            # Slow start, as in TCP: until the host first pushes back, double per window of good
            # results; growing by one per window would take minutes to reach a fast host's real
            # capacity when each round trip takes a second. After that, probe by one.
            self.limit = min(cap, self.limit * 2) if self.decreases == 0 else self.limit + 1
            self.increases += 1
            self._changed_at = now
            self._streak = 0
        # At the cap the streak is kept: once the cooldown ends, the next good result may grow.


class HostState(TypedDict):
    """A host's adaptive state, for status output."""

    limit: int
    baseline_ms: float | None
    in_flight: int
    waiting: int
    paused_for_s: float


class _Gate:
    """Slots counted against a capacity that may change while slots are held, granted in FIFO order.

    A waiter is handed its slot when woken (`held` already counts it), so a newcomer cannot overtake
    it; a waiter cancelled after being woken gives the slot on to the next one. A woken waiter looks
    again when it runs, because the capacity may have shrunk or a pause begun in between, and if so
    it goes back to the head of the queue: no request starts while its gate is full or paused.
    `starved` (if given) is told when waiters remain that the capacity cannot serve: the fleet's
    permits are asked for then. `shed` turns deferrable waiters away with an exception.
    """

    __slots__ = ("_capacity", "_paused_for", "_resume", "deferrable", "held", "starved", "waiters")

    def __init__(
        self,
        capacity: Callable[[], int],
        paused_for: Callable[[], float],
        starved: Callable[[], None] | None = None,
    ) -> None:
        self._capacity = capacity
        self._paused_for = paused_for
        self._resume: asyncio.TimerHandle | None = None
        self.held = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.deferrable: dict[asyncio.Future[None], deferral.Allowance] = {}
        self.starved = starved

    def capacity(self) -> int:
        return self._capacity()

    def admits(self) -> bool:
        """Whether one more slot may be taken now."""
        return self.held < self._capacity() and self._paused_for() <= 0

    def still_admits(self) -> bool:
        """Whether a slot already taken would be admitted now."""
        self.held -= 1
        try:
            return self.admits()
        finally:
            self.held += 1

    def wake(self) -> None:
        """Grant slots to waiters while there is room; during a pause, come back when it ends."""
        if not self.waiters:
            return
        pause = self._paused_for()
        if pause > 0:
            if self._resume is None:
                self._resume = asyncio.get_running_loop().call_later(pause, self._pause_over)
            return
        capacity = self._capacity()
        while self.waiters and self.held < capacity:
            waiter = self.waiters.popleft()
            self.deferrable.pop(waiter, None)
            if not waiter.done():
                self.held += 1
                waiter.set_result(None)
        if self.waiters and self.starved is not None:
            self.starved()

    def shed(self, keep: int, refuse: Callable[[deferral.Allowance], BaseException]) -> None:
        """Turn away waiters whose jobs may still be deferred, from the back, until at most `keep` wait."""
        for waiter in reversed(list(self.waiters)):
            if len(self.waiters) <= keep:
                return
            allowance = self.deferrable.get(waiter)
            if allowance is not None and allowance.open and not waiter.done():
                self.waiters.remove(waiter)
                del self.deferrable[waiter]
                waiter.set_exception(refuse(allowance))

    def _pause_over(self) -> None:
        self._resume = None
        self.wake()

    async def acquire(self, *, front: bool = False, deferrable: deferral.Allowance | None = None) -> None:
        """Take a slot, queueing (at the back, or at the front for a request handing one back) if need be."""
        if (front or not self.waiters) and self.admits():
            self.held += 1
            return
        while True:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if front:
                self.waiters.appendleft(waiter)
            else:
                self.waiters.append(waiter)
            if deferrable is not None:
                self.deferrable[waiter] = deferrable
            self.wake()
            try:
                await waiter
            except BaseException:
                self.deferrable.pop(waiter, None)
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self.held -= 1
                else:
                    # Absent if a grant already skipped it as cancelled, or it was shed.
                    with suppress(ValueError):
                        self.waiters.remove(waiter)
                self.wake()
                raise
            if self.still_admits():
                return
            self.held -= 1
            front = True

    def release(self) -> None:
        self.held -= 1
        self.wake()

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None


class _Start(NamedTuple):
    """A request waiting for the fleet to reserve its start: (start time or None, next free start)."""

    future: asyncio.Future[tuple[float | None, float]]
    must: bool  # reserved however far ahead (it may not be deferred)
    delay: float


class _Host:
    __slots__ = (
        "contended",
        "controller",
        "fleet_held",
        "gate",
        "held",
        "host",
        "lag",
        "last_start",
        "latency_s",
        "pause_to_send",
        "poll",
        "refused",
        "running",
        "starts",
        "synced_limit",
        "users",
    )

    def __init__(self, host: str, controller: HostController, clock: Callable[[], float], fleet: bool) -> None:
        self.host = host
        self.controller = controller
        self.held: int = 0  # permits of the fleet this worker holds for the host
        # With the fleet, a request needs one of the permits this worker holds; alone, the limit.
        capacity = (lambda: min(self.held, controller.limit)) if fleet else (lambda: controller.limit)
        self.gate = _Gate(capacity, lambda: controller.paused_for(clock()))
        self.running = 0
        self.users = 0
        self.fleet_held = 0  # permits the whole fleet holds, as last heard
        self.synced_limit = controller.limit  # the fleet's limit, as last heard
        self.refused = False  # the fleet's last answer gave fewer permits than asked for
        self.contended = False  # another worker was refused a permit lately
        self.pause_to_send = -math.inf  # a Retry-After pause the fleet has not heard of yet
        self.starts: list[_Start] = []
        self.last_start = -math.inf  # without the fleet: the last start this worker reserved
        self.lag = 0.0  # how late this worker's spaced requests woke lately: reserved after each
        self.latency_s: float | None = None
        self.poll: asyncio.TimerHandle | None = None


class SlotReport:
    """How the request holding a slot went, told to the host's controller once.

    Reports are only taken while the slot is held and only once; a slot left without a report (an
    exception escaped, the caller had nothing to say) changes nothing.
    """

    __slots__ = ("_closed", "_host", "_limiter", "_reported", "started")

    def __init__(self, limiter: AdaptiveLimiter, host: _Host, started: float) -> None:
        self._limiter = limiter
        self._host = host
        self.started = started
        self._reported = False
        self._closed = False

    def success(self, latency_s: float | None = None) -> None:
        """The host answered normally; `latency_s` defaults to the time since the slot was granted."""
        now = self._claim()
        latency = now - self.started if latency_s is None else latency_s
        self._limiter._on_success(self._host, latency, now, self.started)

    def overload(self, retry_after: float | None = None) -> None:
        """The host is overloaded (429, 503, a timeout); `retry_after` in seconds if it said so."""
        now = self._claim()
        self._host.controller.on_overload(now, retry_after, started=self.started)
        self._limiter._changed(self._host, paused=retry_after is not None and retry_after > 0)

    def error(self) -> None:
        """Some other failure: stops the host's limit growing, does not shrink it."""
        now = self._claim()
        self._host.controller.on_error(now)

    def _claim(self) -> float:
        if self._closed:
            raise RuntimeError("the slot was already released; report the outcome inside `async with`")
        if self._reported:
            raise RuntimeError("the outcome of this request was already reported")
        self._reported = True
        return self._limiter._clock()


class AdaptiveLimiter:
    """At most `total` requests in flight overall, and to each host at most its current adaptive limit.

    With `fleet` (`pipeline.download.fleet_limits`), the per-host limit, its permits, Retry-After
    pauses and start spacing are the fleet's, kept in Redis: a request needs one of the permits
    this worker holds, asked for in batches and kept while the host has requests here. Without
    it, each worker keeps its own.

    Hosts' states live in an LRU of `max_hosts` entries, so a limit learned for a site survives
    between its requests while a crawl over millions of hosts does not grow a map forever. A host
    with requests in flight or waiting is never evicted, nor one still paused (forgetting the pause
    would let the next request ignore the server's Retry-After) or holding permits, so the map may
    briefly exceed the bound when that many hosts are busy or paused at once.
    """

    def __init__(
        self,
        total: int,
        settings: AdaptiveSettings,
        max_hosts: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        fleet: FleetLimits | None = None,
    ) -> None:
        if total < 1:
            raise ValueError(f"total must be at least 1, got {total}")
        if max_hosts < 1:
            raise ValueError(f"max_hosts must be at least 1, got {max_hosts}")
        self.total = total
        self.settings = settings
        self.max_hosts = max_hosts
        self._clock = clock
        self._global = _Gate(lambda: total, lambda: 0.0)
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0
        self.fleet = fleet
        self._dirty: set[str] = set()
        self._release_idle = False
        self._round: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def slot(self, host: str, *, priority: bool = False, delay: float = 0.0) -> AsyncIterator[SlotReport]:
        """Hold one request slot for `host`; report the request's outcome on the yielded object.

        Waits for the host's pause to end and a slot under its current limit, then for a global
        slot, then for a start at least `delay` seconds after the host's previous one. Host first:
        a request waiting on a busy host must not hold a global slot that requests to idle hosts
        could use. A `priority` request (a list page, which every child behind it waits for) goes
        to the front of the host's queue. A request that would wait long raises `HostBusy`
        instead, if its job may still be deferred (`pipeline.download.deferral`).
        """
        entry = self._enter(host)
        try:
            await self._admit(entry, priority)
            try:
                if delay > 0:
                    await self._spaced(entry, delay)
                deferral.spend()
                report = SlotReport(self, entry, self._clock())
                entry.running += 1
                self.in_flight += 1
                self.requests += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    yield report
                finally:
                    report._closed = True
                    entry.running -= 1
                    self.in_flight -= 1
            finally:
                self._global.release()
                entry.gate.release()
                idle = self.fleet is not None and entry.held > 0 and not entry.gate.waiters
                if idle and (entry.contended or entry.held > entry.controller.limit):
                    self._need_round(entry)  # another worker wants what is idle here
        finally:
            entry.users -= 1

    async def _admit(self, entry: _Host, front: bool) -> None:
        """Take a host slot, then a global slot, ending with both held and the host still open."""
        while True:
            if not entry.gate.admits():
                if deferral.may_defer():
                    wait = self._expected_wait(entry)
                    if wait is not None:
                        raise deferral.busy(deferral.defer_delay(wait), f"{entry.host} is at its limit")
                if self.fleet is not None and entry.gate.capacity() < entry.controller.limit:
                    self._need_round(entry)
            await entry.gate.acquire(front=front, deferrable=deferral.current())
            try:
                await self._global.acquire()
            except BaseException:
                entry.gate.release()
                raise
            if entry.gate.still_admits():
                return
            # The host's limit shrank or a pause began while this request waited for a global slot;
            # it has not started, so it waits again, first in line.
            self._global.release()
            entry.gate.release()
            front = True

    def _expected_wait(self, entry: _Host) -> float | None:
        """How long a new request to a full host would wait, if long enough to defer it; else None.

        Enough requests wait here to take each permit as it comes back (one per permit, at least
        one); beyond those a request would only hold a job slot, so it is deferred for about the
        time the ones ahead of it take.
        """
        controller = entry.controller
        paused = controller.paused_for(self._clock())
        if paused > 0:
            return paused
        if self.fleet is not None and entry.held < controller.limit and not entry.refused:
            return None  # the fleet may have permits: ask first
        ahead = len(entry.gate.waiters)
        if ahead < max(1, entry.gate.capacity()):
            return None
        latency = entry.latency_s or controller.typical_latency_s or 1.0
        return latency * (ahead + 1) / max(1, controller.limit)

    async def _spaced(self, entry: _Host, delay: float) -> None:
        """Wait for a start at least `delay` after the host's previous one (the fleet's, if shared).

        A busy event loop wakes a request late, and a request started late leaves less than the
        delay before the next reserved start. So each reservation also pushes the next start back
        by the lateness this worker showed lately (`lag`); a request later than that takes a new
        start, with the lag raised to what it saw, rather than start late.
        """
        while True:
            allowed = entry.lag
            start_at = await self._reserve_start(entry, delay + START_MARGIN_S + allowed)
            now = self._clock()
            if start_at > now:
                await asyncio.sleep(start_at - now)
                now = self._clock()
            late = now - start_at
            if late <= LATE_S + allowed:
                entry.lag = max(late, 0.9 * entry.lag)
                return
            entry.lag = min(MAX_LAG_S, late)

    async def _reserve_start(self, entry: _Host, delay: float) -> float:
        """A start of this worker's own, or the fleet's; `HostBusy` if far ahead and the job may defer."""
        if self.fleet is None:
            now = self._clock()
            start = max(now, entry.last_start + delay)
            if start - now > deferral.DEFER_AFTER_S and deferral.may_defer():
                raise deferral.busy(
                    deferral.defer_delay(start - now), f"{entry.host}: next start in {start - now:.2f}s"
                )
            entry.last_start = start
            return start
        while True:
            future: asyncio.Future[tuple[float | None, float]] = asyncio.get_running_loop().create_future()
            entry.starts.append(_Start(future, not deferral.may_defer(), delay))
            self._need_round(entry)
            start_at, next_free = await future
            if start_at is not None:
                return start_at
            if deferral.may_defer():
                wait = next_free - self._clock()
                raise deferral.busy(deferral.defer_delay(wait), f"{entry.host}: next start in {wait:.2f}s")
            # Another request of this job was sent meanwhile: this one may no longer defer.

    # --- the fleet's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Begin renewing this worker's leases (with a fleet); call once, inside the event loop."""
        if self.fleet is not None and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(), name="pipeline-host-permits")

    async def close(self) -> None:
        """Stop renewing and give every permit back at once, so the fleet need not wait out the leases."""
        for task in (self._ticker, self._round):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._round = None
        held = {host: HostAsk(held=0) for host, entry in self._hosts.items() if entry.held > 0}
        if self.fleet is not None and held:
            try:
                await self.fleet.exchange(held)
            except (RedisError, OSError) as exc:
                log.warning("could not return host permits (their leases will lapse): %s", exc)
        for entry in self._hosts.values():
            entry.held = 0
            if entry.poll is not None:
                entry.poll.cancel()
            entry.gate.close()

    def _need_round(self, entry: _Host) -> None:
        """Ask the fleet about this host in the next round (requests of this loop turn share it)."""
        if entry.refused and entry.gate.waiters and not entry.starts:
            # Refused a moment ago: ask again when a permit may have come back, not at once.
            if entry.poll is None:
                latency = entry.latency_s or entry.controller.typical_latency_s or 0.1
                wait = min(0.5, max(0.02, latency / max(1, entry.controller.limit)))
                entry.poll = asyncio.get_running_loop().call_later(wait, self._poll_again, entry)
            return
        self._dirty.add(entry.host)
        if self._round is None:
            self._round = asyncio.get_running_loop().create_task(self._rounds())

    def _starved(self, entry: _Host) -> None:
        # Waiters this worker's permits cannot serve: worth asking only below the limit.
        if entry.held < entry.controller.limit:
            self._need_round(entry)

    def _poll_again(self, entry: _Host) -> None:
        entry.poll = None
        entry.refused = False
        if entry.gate.waiters:
            self._need_round(entry)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for host, entry in self._hosts.items():
                if entry.held > 0 or entry.gate.waiters:
                    self._dirty.add(host)
            self._release_idle = True
            if self._dirty and self._round is None:
                self._round = asyncio.get_running_loop().create_task(self._rounds())

    async def _rounds(self) -> None:
        """Rounds with the fleet, one at a time, until nothing is left to ask."""
        try:
            await asyncio.sleep(0)  # the other requests of this loop turn join the round
            while self._dirty:
                hosts, self._dirty = self._dirty, set()
                idle, self._release_idle = self._release_idle, False
                try:
                    await self._exchange(hosts, idle)
                except (RedisError, OSError) as exc:
                    log.warning("per-host limits: Redis round failed (%s); again in %.1fs", exc, FLEET_RETRY_S)
                    self._dirty |= hosts
                    await asyncio.sleep(FLEET_RETRY_S)
        finally:
            self._round = None

    async def _exchange(self, hosts: set[str], release_idle: bool) -> None:
        assert self.fleet is not None
        asks: dict[str, HostAsk] = {}
        starts: dict[str, list[_Start]] = {}
        now = self._clock()
        for host in hosts:
            entry = self._hosts.get(host)
            if entry is not None:
                asks[host], starts[host] = self._ask(entry, now, release_idle)
        try:
            grants = await self.fleet.exchange(asks)
        except BaseException:
            for host, waiting in starts.items():  # not reserved: they ask in the next round
                entry = self._hosts.get(host)
                if entry is not None:
                    entry.starts[:0] = waiting
            raise
        now = self._clock()
        for host, grant in grants.items():
            entry = self._hosts.get(host)
            if entry is not None:
                self._apply(entry, asks[host], grant, starts[host], now)

    def _ask(self, entry: _Host, now: float, release_idle: bool) -> tuple[HostAsk, list[_Start]]:
        controller = entry.controller
        in_use = entry.gate.held
        # Never more than this worker can use at once: a fleet-wide limit above its concurrency
        # is for several workers, and permits it hoarded would starve the others.
        target = min(controller.limit, self.total, in_use + len(entry.gate.waiters))
        keep = max(target, in_use)
        if entry.held > keep and (release_idle or entry.contended or entry.held > controller.limit):
            entry.held = keep
        ask = HostAsk(held=entry.held, want=max(0, target - entry.held))
        waiting = sorted(entry.starts, key=lambda s: not s.must)
        entry.starts = []
        if waiting:
            ask.must = sum(1 for s in waiting if s.must)
            ask.may = len(waiting) - ask.must
            ask.delay_ms = math.ceil(max(s.delay for s in waiting) * 1000)
            ask.tail_ms = math.ceil(entry.lag * 1000)
        if controller.limit != entry.synced_limit:
            ask.seen, ask.proposed = entry.synced_limit, controller.limit
        if entry.pause_to_send > now:
            ask.pause_ms = math.ceil((entry.pause_to_send - now) * 1000)
            entry.pause_to_send = -math.inf
        return ask, waiting

    def _apply(self, entry: _Host, ask: HostAsk, grant: HostGrant, waiting: list[_Start], now: float) -> None:
        controller = entry.controller
        entry.held += grant.granted
        entry.fleet_held = grant.fleet_held
        entry.contended = grant.contended
        entry.refused = grant.granted < ask.want
        controller.adopt(grant.limit, now)
        entry.synced_limit = grant.limit
        if grant.paused_s > 0:
            controller.paused_until = max(controller.paused_until, now + grant.paused_s)
        spacing = ask.delay_ms / 1000
        for index, start in enumerate(waiting):
            if start.future.done():
                continue  # cancelled: its reserved start goes unused, which only spaces the host more
            if index < grant.reserved:
                start.future.set_result((grant.first_start_at + index * spacing, 0.0))
            else:
                start.future.set_result((None, grant.next_free_at))
        entry.gate.wake()
        if entry.gate.waiters and (entry.refused or entry.held >= controller.limit):
            # No permit to be had: keep enough waiting to take each one that comes back, and send
            # the rest of the deferrable ones back to the queue.
            latency = entry.latency_s or controller.typical_latency_s or 1.0
            keep = max(1, entry.gate.capacity())
            wait = latency * (keep + 1) / max(1, controller.limit)
            reason = f"{entry.host} is at its limit"
            entry.gate.shed(keep, lambda allowance: allowance.busy(deferral.defer_delay(wait), reason))
            if entry.gate.waiters:
                self._need_round(entry)

    def _changed(self, entry: _Host, *, paused: bool) -> None:
        """A request's outcome moved the host's limit or paused it: tell the fleet."""
        if self.fleet is None:
            return
        if paused:
            entry.pause_to_send = entry.controller.paused_until
        if paused or entry.controller.limit != entry.synced_limit:
            self._dirty.add(entry.host)
            if self._round is None:
                self._round = asyncio.get_running_loop().create_task(self._rounds())

    # --- reading the state -------------------------------------------------------------------------

    def limits(self) -> dict[str, int]:
        """Current limit of every tracked host."""
        return {host: entry.controller.limit for host, entry in self._hosts.items()}

    def state(self, host: str) -> HostState:
        """One host's limit, baseline, requests in flight and waiting, and remaining pause."""
        entry = self._hosts.get(host)
        controller = entry.controller if entry is not None else HostController(self.settings)
        baseline = controller.baseline_s
        return HostState(
            limit=controller.limit,
            baseline_ms=None if baseline is None else baseline * 1000,
            in_flight=entry.running if entry is not None else 0,
            waiting=entry.users - entry.running if entry is not None else 0,
            paused_for_s=controller.paused_for(self._clock()),
        )

    def hosts_tracked(self) -> int:
        return len(self._hosts)

    def host_rows(self) -> list[tuple[str, int, int, int]]:
        """(host, current limit, requests in flight, requests waiting) of every tracked host."""
        return [
            (host, entry.controller.limit, entry.running, entry.users - entry.running)
            for host, entry in self._hosts.items()
        ]

    def _enter(self, host: str) -> _Host:
        """The host's entry, most recently used and marked in use (so this very call cannot evict it)."""
        entry = self._hosts.get(host)
        if entry is not None:
            self._hosts.move_to_end(host)
            entry.users += 1
            return entry
        entry = self._hosts[host] = _Host(host, HostController(self.settings), self._clock, self.fleet is not None)
        if self.fleet is not None:
            entry.gate.starved = lambda: self._starved(entry)
        entry.users += 1
        self._evict()
        return entry

    def _evict(self) -> None:
        # Hosts that must stay are moved to the back as they are met; each is looked at once per call.
        now = self._clock()
        for _ in range(len(self._hosts)):
            if len(self._hosts) <= self.max_hosts:
                return
            oldest, entry = next(iter(self._hosts.items()))
            if entry.users or entry.controller.paused_until > now or entry.held:
                self._hosts.move_to_end(oldest)
                continue
            del self._hosts[oldest]
            entry.gate.close()
            if entry.poll is not None:
                entry.poll.cancel()

    def _on_success(self, entry: _Host, latency_s: float, now: float, started: float) -> None:
        controller = entry.controller
        entry.latency_s = latency_s if entry.latency_s is None else 0.8 * entry.latency_s + 0.2 * latency_s
        if self.fleet is None:
            saturated = entry.running >= controller.limit
        else:
            # The fleet used the whole limit, or this worker alone did.
            saturated = entry.running >= min(entry.held, controller.limit) and (
                entry.fleet_held >= controller.limit or entry.running >= controller.limit
            )
        controller.on_success(latency_s, now, saturated=saturated, started=started)
        # The limit may have grown: a waiter may now fit, and the fleet must hear of it.
        entry.gate.wake()
        self._changed(entry, paused=False)
