"""Cron expressions of `[[schedule]]`: what cronsim accepts, when a schedule fires, and how the
worker's cron jobs compute their ticks from them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crawl.cron import MACROS, check_cron, expand, next_tick, previous_tick
from pipeline.settings import ScheduleSpec, Settings
from pipeline.worker.cron import ScheduleCronJob, cron_jobs


def at(*parts: int) -> datetime:
    return datetime(*parts)  # type: ignore[arg-type]


@pytest.mark.parametrize(("macro", "fields"), sorted(MACROS.items()))
def test_macros(macro: str, fields: str) -> None:
    assert expand(macro) == fields
    assert expand(macro.upper()) == fields
    check_cron(macro)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("@fortnightly", "unknown macro"),
        ("* * * *", "expected 5 fields"),
        ("61 * * * *", "bad minute"),
        ("* 24 * * *", "bad hour"),
        ("* * 0 * *", "bad day-of-month"),
        ("* * * 13 *", "bad month"),
        ("* * * * 8", "bad day-of-week"),
        ("0 0 31 2 *", "bad day-of-month"),  # never fires
        ("*/0 * * * *", "bad minute"),
        ("a b c d e", "bad minute"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_cron(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", at(2026, 11, 29, 12, 7), at(2026, 11, 29, 12, 15)),
        ("*/15 * * * *", at(2026, 11, 29, 12, 15), at(2026, 11, 29, 12, 30)),  # strictly after
        ("30 2 * * *", at(2026, 11, 29, 3, 0), at(2026, 11, 30, 2, 30)),
        ("@monthly", at(2026, 12, 31, 23, 59), at(2027, 1, 1)),
        ("0 0 29 2 *", at(2026, 3, 1), at(2028, 2, 29)),
        ("0 9 * * MON-FRI", at(2026, 11, 28, 10), at(2026, 11, 30, 9)),  # Saturday -> Monday
        # Both day fields restricted: either matches (Debian cron), so the 1st and every Monday.
        ("0 0 1 * MON", at(2026, 11, 29), at(2026, 11, 30)),
        ("0 0 1 * MON", at(2026, 11, 30), at(2026, 12, 1)),
        # A day field starting with * leaves the other alone: Mondays that are odd days.
        ("0 0 */2 * MON", at(2026, 11, 29), at(2026, 12, 7)),
        ("*/3 * * * * *", at(2026, 11, 29, 12, 0, 1), at(2026, 11, 29, 12, 0, 3)),  # seconds first
    ],
)
def test_next_tick(expression: str, after: datetime, expected: datetime) -> None:
    assert next_tick(expression, after) == expected


def test_previous_tick_is_strictly_before() -> None:
    assert previous_tick("30 2 * * *", at(2026, 11, 29, 2, 30)) == at(2026, 11, 28, 2, 30)
    assert previous_tick("30 2 * * *", at(2026, 11, 29, 2, 30, 1)) == at(2026, 11, 29, 2, 30)


def test_wall_clock_and_time_zone_are_kept() -> None:
    """arq hands its cron jobs `datetime.now(tz=worker.timezone)`; a tick is in that wall clock."""
    plus_two = timezone(timedelta(hours=2))
    tick = next_tick("30 2 * * *", datetime(2026, 11, 29, 2, 31, tzinfo=plus_two))
    assert tick == datetime(2026, 11, 30, 2, 30, tzinfo=plus_two)
    assert next_tick("30 2 * * *", at(2026, 11, 29)).tzinfo is None


@given(
    expression=st.sampled_from(["*/7 * * * *", "0 */5 * * *", "15 3 1,15 * *", "0 0 * * SUN", "0 0 1 * MON"]),
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
)
def test_previous_tick_undoes_next_tick(expression: str, after: datetime) -> None:
    after = after.replace(second=0, microsecond=0)
    tick = next_tick(expression, after)
    assert tick > after
    assert previous_tick(expression, tick) <= after


def test_worker_cron_job_ticks_like_the_expression() -> None:
    settings = Settings().replace(redis={"url": "redis://127.0.0.1:1/0"})
    spec = ScheduleSpec(name="nightly", cron="30 2 * * *", start_url="https://example.com/list")
    (job,) = cron_jobs(_with_schedules(settings, spec))
    assert isinstance(job, ScheduleCronJob) and job.name == "schedule:nightly" and job.unique
    job.calculate_next(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    assert job.next_run == datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
    assert asyncio.iscoroutinefunction(job.coroutine)


def _with_schedules(settings: Settings, *specs: ScheduleSpec) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, schedules=specs)
