"""Adaptive per-host concurrency: the controller's arithmetic on a fake clock, the limiter's
guarantees under real asyncio scheduling, and a simulated server that overloads above six."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from typing import Any

import pytest

from pipeline.download.host_limits import AdaptiveLimiter, AdaptiveSettings, HostController

# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_limit": 0, "initial_limit": 1}, "min_limit must be at least 1"),
        ({"min_limit": 4, "max_limit": 3, "initial_limit": 4}, r"max_limit \(3\) must be at least min_limit \(4\)"),
        ({"initial_limit": 1}, r"initial_limit \(1\) must lie between"),
        ({"initial_limit": 33}, r"initial_limit \(33\) must lie between"),
        ({"latency_factor": 1.0}, "latency_factor must be a finite number above 1"),
        ({"latency_factor": math.nan}, "latency_factor"),
        ({"increase_every": -1}, "increase_every must be 0"),
        ({"cooldown_s": -0.5}, "cooldown_s must be"),
        ({"max_pause_s": math.inf}, "max_pause_s must be"),
        ({"latency_samples": 2}, "latency_samples must be at least 3"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveSettings(**kwargs)


# --- HostController, on explicit times ------------------------------------------------------


def feed(
    ctl: HostController, count: int, latency: float, now: float, step: float = 0.001, saturated: bool = True
) -> float:
    """`count` successes of `latency` each, sent and answered at increasing times."""
    for _ in range(count):
        ctl.on_success(latency, now + latency, started=now, saturated=saturated)
        now += step
    return now


def test_slow_start_doubles_per_window_until_the_host_pushes_back() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, max_limit=40, cooldown_s=0.5))
    feed(ctl, 8, 0.05, 0.0)
    assert ctl.limit == 4 and ctl.baseline_s is None  # no baseline yet, no growth
    feed(ctl, 1, 0.05, 1.0)
    assert ctl.baseline_s == pytest.approx(0.05)
    feed(ctl, 3, 0.05, 2.0)
    assert ctl.limit == 8  # four good results at limit 4: doubled
    feed(ctl, 8, 0.05, 3.0)
    assert ctl.limit == 16
    feed(ctl, 16, 0.05, 4.0)
    assert ctl.limit == 32
    feed(ctl, 32, 0.05, 5.0)
    assert ctl.limit == 40  # capped at max_limit

    ctl.on_overload(now=7.0)
    assert ctl.limit == 20
    now = feed(ctl, 9, 0.05, 8.0)  # fresh samples after the decrease
    seen = [ctl.limit]
    for _ in range(200):
        now = feed(ctl, 1, 0.05, now)
        seen.append(ctl.limit)
    # After the first push-back, growth is one per window.
    assert seen == sorted(seen) and all(b - a <= 1 for a, b in itertools.pairwise(seen))
    assert seen[-1] > 20


def test_fixed_increase_every() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, increase_every=2, max_limit=100))
    feed(ctl, 9, 0.05, 0.0)
    feed(ctl, 1, 0.05, 1.0)
    assert ctl.limit == 8
    feed(ctl, 2, 0.05, 2.0)
    assert ctl.limit == 16


def test_only_saturated_fresh_successes_grow_the_limit() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    for i in range(100):
        ctl.on_success(0.05, float(i), saturated=False)
    assert ctl.limit == 4 and ctl.baseline_s == pytest.approx(0.05)

    ctl.on_success(0.05, 200.0, started=199.0)
    for _ in range(3):
        ctl.on_success(0.05, 200.0, started=199.0)
    assert ctl.limit == 8  # slow start: a window of good results doubles the limit
    # Results of requests sent before the limit last changed are evidence about the old limit.
    for _ in range(10):
        ctl.on_success(0.05, 201.0, started=199.5)
    assert ctl.limit == 8


def test_overload_halves_once_per_cooldown_and_respects_min() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, initial_limit=16, cooldown_s=1.0))
    ctl.on_overload(10.0)
    assert ctl.limit == 8
    for i in range(1, 10):  # the rest of the burst
        ctl.on_overload(10.0 + i / 10)
    assert ctl.limit == 8 and ctl.decreases == 1 and ctl.overloads == 10
    ctl.on_overload(11.0)
    assert ctl.limit == 4
    ctl.on_overload(12.0)
    ctl.on_overload(13.0)
    ctl.on_overload(14.0)
    assert ctl.limit == 2  # min_limit


def test_overloads_of_requests_sent_before_the_decrease_are_ignored() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, initial_limit=16, cooldown_s=1.0))
    ctl.on_overload(10.0, started=9.0)
    assert ctl.limit == 8
    # A slow host's burst of 429s keeps arriving after the cooldown; it was sent at limit 16.
    ctl.on_overload(15.0, started=9.5)
    assert ctl.limit == 8
    ctl.on_overload(15.0, started=10.5)
    assert ctl.limit == 4


def test_limit_that_overloaded_is_off_limits_during_cooldown() -> None:
    ctl = HostController(
        AdaptiveSettings(
            latency_samples=9, latency_factor=2.0, initial_limit=8, max_limit=8, increase_every=1, cooldown_s=1.0
        )
    )
    feed(ctl, 9, 0.01, 0.0)
    ctl.on_overload(10.0)
    assert ctl.limit == 4
    feed(ctl, 100, 0.01, 10.01, step=0.001)  # fresh, good, within the cooldown
    assert ctl.limit == 7
    feed(ctl, 1, 0.01, 11.0)
    assert ctl.limit == 8


def test_latency_jump_halves_once_per_cooldown_then_steps_down() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, initial_limit=8, cooldown_s=1.0))
    feed(ctl, 9, 0.010, 0.0)
    assert ctl.baseline_s == pytest.approx(0.010)
    feed(ctl, 4, 0.030, 1.0)
    assert ctl.limit == 8  # a few slow pages are not a slowdown
    feed(ctl, 1, 0.030, 1.1)
    assert ctl.limit == 4 and ctl.slowdowns == 1  # most recent ones are
    feed(ctl, 9, 0.030, 1.2)
    # Still slow at the new limit, within the cooldown: no second halving, one step down.
    assert ctl.limit == 3 and ctl.slowdowns == 2
    feed(ctl, 9, 0.030, 2.5)
    assert ctl.limit == 2


def test_baseline_does_not_ratchet_up_under_load() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, initial_limit=8, max_limit=8))
    feed(ctl, 9, 0.010, 0.0)
    ewma = 0.010
    now = 1.0
    # Load creeps latency up to 1.9× the baseline: never a slowdown on its own...
    for i in range(2000):
        latency = 0.010 + 0.009 * i / 1999
        now = feed(ctl, 1, latency, now)
        ewma += 0.05 * (latency - ewma)
    assert ctl.limit == 8 and ctl.slowdowns == 0
    assert ctl.baseline_s == pytest.approx(0.010)
    assert ewma > 0.018  # where an average would have taken the baseline
    # ...so 2.5× the unloaded latency is seen as the slowdown it is (1.3× a drifted average).
    feed(ctl, 9, 0.025, now)
    assert ctl.limit == 4


def test_baseline_follows_faster_responses_down() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    feed(ctl, 9, 0.050, 0.0)
    feed(ctl, 1, 0.001, 1.0)  # one tiny error page does not move it
    assert ctl.baseline_s == pytest.approx(0.050)
    feed(ctl, 9, 0.020, 2.0)
    assert ctl.baseline_s == pytest.approx(0.020)


def test_baseline_rises_only_at_min_limit() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=2, initial_limit=2))
    feed(ctl, 9, 0.010, 0.0, saturated=False)
    feed(ctl, 9, 0.050, 1.0, saturated=False)  # the site got slower for good; at min_limit that is its normal
    assert ctl.baseline_s == pytest.approx(0.050) and ctl.limit == 2 and ctl.slowdowns == 0
    feed(ctl, 20, 0.050, 2.0)
    assert ctl.limit > 2  # and it grows again from there


def test_retry_after_pauses_the_host() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0, max_pause_s=10.0))
    ctl.on_overload(5.0, retry_after=3.0)
    assert ctl.paused_until == 8.0 and ctl.paused_for(6.0) == 2.0 and ctl.paused_for(9.0) == 0.0
    ctl.on_overload(5.5, retry_after=1.0)  # does not shorten the pause
    assert ctl.paused_until == 8.0
    ctl.on_overload(6.0, retry_after=86_400.0)
    assert ctl.paused_until == 16.0  # capped
    ctl.on_overload(7.0)
    assert ctl.paused_until == 16.0


def test_errors_stop_growth_but_do_not_shrink() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    feed(ctl, 9, 0.01, 0.0)
    now = 1.0
    for _ in range(50):
        now = feed(ctl, 2, 0.01, now)
        ctl.on_error(now)
    assert ctl.limit == 4 and ctl.errors == 50


def test_latency_must_be_a_duration() -> None:
    ctl = HostController(AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    with pytest.raises(ValueError, match="latency_s"):
        ctl.on_success(-1.0, 0.0)
    with pytest.raises(ValueError, match="latency_s"):
        ctl.on_success(math.nan, 0.0)


# --- AdaptiveLimiter ------------------------------------------------------------------------


async def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_never_exceeds_host_limits_or_total() -> None:
    settings = AdaptiveSettings(
        latency_samples=9,
        latency_factor=2.0,
        min_limit=1,
        max_limit=6,
        initial_limit=3,
        increase_every=2,
        cooldown_s=0.0,
    )
    limiter = AdaptiveLimiter(total=8, settings=settings)
    rng = random.Random(7)
    running: Counter[str] = Counter()
    peaks: Counter[str] = Counter()
    total = 0
    outcomes: Counter[str] = Counter()

    async def client(i: int) -> None:
        nonlocal total
        for _ in range(6):
            host = f"h{rng.randrange(4)}"
            async with limiter.slot(host) as report:
                running[host] += 1
                total += 1
                # Checked at the start, before any await: a shrink only binds requests not yet started.
                assert running[host] <= limiter.limits()[host]
                assert total <= 8 and limiter.in_flight == total
                peaks[host] = max(peaks[host], running[host])
                try:
                    await asyncio.sleep(rng.uniform(0, 0.003))
                    roll = rng.random()
                    if roll < 0.1:
                        report.overload(0.005 if roll < 0.02 else None)
                        outcomes["overload"] += 1
                    elif roll < 0.15:
                        report.error()
                    elif roll < 0.95:
                        report.success(0.002 if roll < 0.9 else 0.02)
                finally:
                    running[host] -= 1
                    total -= 1

    await asyncio.gather(*(client(i) for i in range(120)))
    assert limiter.in_flight == 0 and limiter.peak_in_flight == 8
    assert outcomes["overload"] > 20 and max(peaks.values()) >= 3
    for host in limiter.limits():
        assert limiter.state(host)["in_flight"] == 0 and limiter.state(host)["waiting"] == 0


async def test_shrunk_limit_binds_new_requests_only() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=1, initial_limit=4))
    release = [asyncio.Event() for _ in range(4)]
    shrink = asyncio.Event()
    holding = 0

    async def hold(i: int) -> None:
        nonlocal holding
        async with limiter.slot("h") as report:
            holding += 1
            if i == 0:
                await shrink.wait()
                report.overload()
            await release[i].wait()
            holding -= 1

    holders = [asyncio.create_task(hold(i)) for i in range(4)]
    await wait_until(lambda: holding == 4)
    shrink.set()
    await wait_until(lambda: limiter.limits()["h"] == 2)
    assert holding == 4  # those running keep running

    entered = asyncio.Event()

    async def newcomer() -> None:
        async with limiter.slot("h"):
            entered.set()

    task = asyncio.create_task(newcomer())
    release[0].set()
    release[1].set()
    await wait_until(lambda: holding == 2)
    await asyncio.sleep(0.02)
    assert not entered.is_set()  # two running, limit two
    release[2].set()
    await asyncio.wait_for(entered.wait(), 1)
    release[3].set()
    await asyncio.gather(task, *holders)


async def test_shrink_while_waiting_for_a_global_slot() -> None:
    limiter = AdaptiveLimiter(2, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=1, initial_limit=2))
    events = {name: asyncio.Event() for name in ("a1", "b", "a1 in", "b in")}
    entered = asyncio.Event()

    async def hold(host: str, name: str, overload_on: asyncio.Event | None = None) -> None:
        async with limiter.slot(host) as report:
            events[f"{name} in"].set()
            if overload_on is not None:
                await overload_on.wait()
                report.overload()
            await events[name].wait()

    shrink = asyncio.Event()
    a1 = asyncio.create_task(hold("a", "a1", shrink))
    b = asyncio.create_task(hold("b", "b"))
    await events["a1 in"].wait()
    await events["b in"].wait()

    async def a2() -> None:
        async with limiter.slot("a"):
            entered.set()

    late = asyncio.create_task(a2())
    await wait_until(lambda: limiter.state("a")["waiting"] == 1)  # host slot taken, global pool full
    shrink.set()
    await wait_until(lambda: limiter.limits()["a"] == 1)
    events["b"].set()  # a global slot frees, but host a is now at its limit
    await b
    await asyncio.sleep(0.02)
    assert not entered.is_set()
    events["a1"].set()
    await asyncio.wait_for(entered.wait(), 1)
    await asyncio.gather(a1, late)


async def test_pause_blocks_new_and_queued_requests_until_it_ends() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=2, initial_limit=2))
    go = asyncio.Event()
    started_at: list[float] = []

    async def holder(pause: bool) -> None:
        async with limiter.slot("h") as report:
            await go.wait()
            if pause:
                report.overload(retry_after=0.2)

    async def request(host: str) -> None:
        async with limiter.slot(host):
            started_at.append(time.monotonic())

    holders = [asyncio.create_task(holder(i == 0)) for i in range(2)]
    await wait_until(lambda: limiter.state("h")["in_flight"] == 2)
    queued = asyncio.create_task(request("h"))  # waiting for a slot when the pause begins
    await asyncio.sleep(0.01)
    t0 = time.monotonic()
    go.set()
    await asyncio.gather(*holders)
    assert 0 < limiter.state("h")["paused_for_s"] <= 0.2
    await request("h")
    await queued
    await request("other")  # other hosts are not paused
    assert all(0.2 <= t - t0 < 0.5 for t in started_at[:2])
    assert started_at[2] - started_at[1] < 0.05
    assert limiter.state("h")["paused_for_s"] == 0.0


async def test_cancelled_waiters_leak_nothing() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=2, initial_limit=2))
    go = asyncio.Event()
    served = 0

    async def request() -> None:
        nonlocal served
        async with limiter.slot("h"):
            await go.wait()
            served += 1

    holders = [asyncio.create_task(request()) for _ in range(2)]
    await wait_until(lambda: limiter.state("h")["in_flight"] == 2)
    waiters = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0.01)
    for task in waiters[::2]:
        task.cancel()
    await asyncio.sleep(0.01)
    assert limiter.state("h")["waiting"] == 3
    go.set()
    await asyncio.gather(*holders, *waiters[1::2])
    assert served == 5
    for task in waiters[::2]:
        assert task.cancelled()
    assert limiter.state("h") | {"baseline_ms": None} == {
        "limit": 2,
        "baseline_ms": None,
        "in_flight": 0,
        "waiting": 0,
        "paused_for_s": 0.0,
    }
    # Both slots are free again.
    async with limiter.slot("h"), limiter.slot("h"):
        assert limiter.state("h")["in_flight"] == 2


async def test_waiter_cancelled_after_wakeup_passes_it_on() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=1, initial_limit=1))
    entered: list[str] = []

    async def request(name: str) -> None:
        async with limiter.slot("h"):
            entered.append(name)

    holder = limiter.slot("h")
    await holder.__aenter__()
    first = asyncio.create_task(request("first"))
    second = asyncio.create_task(request("second"))
    await asyncio.sleep(0.01)
    await holder.__aexit__(None, None, None)  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it gets to run
    await asyncio.wait_for(second, 1)
    assert entered == ["second"] and first.cancelled()
    assert limiter.state("h")["in_flight"] == 0 and limiter.state("h")["waiting"] == 0


async def test_cancelled_while_waiting_for_global_slot_frees_host_slot() -> None:
    limiter = AdaptiveLimiter(1, AdaptiveSettings(latency_samples=9, latency_factor=2.0, min_limit=1, initial_limit=1))
    other = limiter.slot("other")
    await other.__aenter__()
    waiting = asyncio.create_task(limiter.slot("h").__aenter__())
    await wait_until(lambda: limiter.state("h")["waiting"] == 1)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert limiter.state("h")["waiting"] == 0
    await other.__aexit__(None, None, None)
    async with asyncio.timeout(1), limiter.slot("h"):
        pass


async def test_unreported_or_failed_requests_are_neutral() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    with pytest.raises(RuntimeError, match="boom"):
        async with limiter.slot("h"):
            raise RuntimeError("boom")
    async with limiter.slot("h"):
        pass
    assert limiter.state("h")["limit"] == 4 and limiter.in_flight == 0


async def test_reports_are_taken_once_and_inside_the_slot() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0))
    async with limiter.slot("h") as report:
        report.success(0.01)
        with pytest.raises(RuntimeError, match="already reported"):
            report.overload()
    async with limiter.slot("h") as report:
        pass
    with pytest.raises(RuntimeError, match="already released"):
        report.error()


async def test_host_states_are_a_bounded_lru() -> None:
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0, initial_limit=4), max_hosts=3)
    async with limiter.slot("busy"):
        for i in range(10):
            async with limiter.slot(f"h{i}") as report:
                report.overload()
        assert limiter.hosts_tracked() == 3
        assert set(limiter.limits()) == {"busy", "h8", "h9"}
    async with limiter.slot("h9"):
        pass
    assert limiter.limits()["h9"] == 2  # learned limits survive between requests
    async with limiter.slot("new"):
        pass
    assert limiter.hosts_tracked() == 3 and {"h9", "new"} <= set(limiter.limits())

    # Hosts in use are never evicted, even past the bound; it is restored once they are idle.
    limiter = AdaptiveLimiter(10, AdaptiveSettings(latency_samples=9, latency_factor=2.0), max_hosts=2)
    async with limiter.slot("a"), limiter.slot("b"), limiter.slot("c"):
        assert limiter.hosts_tracked() == 3
    async with limiter.slot("d"):
        pass
    assert limiter.hosts_tracked() == 2

    # Nor are paused ones: the next request must still honour the server's Retry-After.
    async with limiter.slot("paused") as report:
        report.overload(retry_after=30)
    async with limiter.slot("e"):
        pass
    async with limiter.slot("f"):
        pass
    assert set(limiter.limits()) == {"paused", "f"} and limiter.state("paused")["paused_for_s"] > 29


# --- simulation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cooldown_s", "least_mean"),
    [
        (1.0, 4.5),  # one halving, then held just below the level that overloaded
        (0.2, 3.5),  # a sawtooth between 3 and 7, probing every cooldown
    ],
)
async def test_limit_settles_near_what_the_server_takes(cooldown_s: float, least_mean: float) -> None:
    capacity = 6
    limiter = AdaptiveLimiter(100, AdaptiveSettings(latency_samples=9, latency_factor=2.0, cooldown_s=cooldown_s))
    at_server = 0
    overloads = 0
    remaining = 600
    limits: list[int] = []
    rng = random.Random(1)

    async def server() -> bool:
        nonlocal at_server
        at_server += 1
        try:
            if at_server > capacity:
                await asyncio.sleep(0.001)  # a 429 is cheap, not free
                return False
            await asyncio.sleep(rng.uniform(0.008, 0.012))
            return True
        finally:
            at_server -= 1

    async def client() -> None:
        nonlocal remaining, overloads
        loop = asyncio.get_running_loop()
        while remaining > 0:
            remaining -= 1
            async with limiter.slot("site") as report:
                sent = loop.time()
                if await server():
                    report.success(loop.time() - sent)
                else:
                    overloads += 1
                    report.overload()
                limits.append(limiter.limits()["site"])

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(50)))
    elapsed = time.monotonic() - started
    second_half = limits[len(limits) // 2 :]
    print(
        f"cooldown {cooldown_s}s: {elapsed:.2f}s, final limit {limits[-1]}, "
        f"mean limit over the second half {sum(second_half) / len(second_half):.2f}, "
        f"overloads {overloads}/600, limits {Counter(limits)}"
    )
    assert capacity // 2 <= limits[-1] <= capacity + 2
    assert overloads / 600 < 0.05
    assert least_mean <= sum(second_half) / len(second_half) <= capacity + 1
