"""Cron expressions: parsing, next/previous run times, and the translation into arq cron jobs."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from arq.cron import next_cron
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cronexpr import (
    ALL_DAYS,
    ALL_HOURS,
    ALL_MINUTES,
    ALL_MONTHS,
    ALL_WEEKDAYS,
    SEARCH_YEARS,
    CronError,
    CronSpec,
    arq_cron_kwargs,
    matches,
    next_run,
    parse_cron,
    previous_run,
)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)  # arq's / Python's weekday numbers


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        ("* * * * *", "minute", ALL_MINUTES),
        ("5 * * * *", "minute", {5}),
        ("05 * * * *", "minute", {5}),
        ("*/20 * * * *", "minute", {0, 20, 40}),
        ("10-15 * * * *", "minute", {10, 11, 12, 13, 14, 15}),
        ("10-20/5 * * * *", "minute", {10, 15, 20}),
        ("50/3 * * * *", "minute", {50, 53, 56, 59}),
        ("1,2,3-4,*/30 * * * *", "minute", {0, 1, 2, 3, 4, 30}),
        ("0 */6 * * *", "hour", {0, 6, 12, 18}),
        ("0 9-17 * * *", "hour", set(range(9, 18))),
        ("0 0 */10 * *", "day", {1, 11, 21, 31}),
        ("0 0 31 * *", "day", {31}),
        ("0 0 1 jan,Jul,DEC *", "month", {1, 7, 12}),
        ("0 0 1 JAN-MAR *", "month", {1, 2, 3}),
        ("0 0 1 */3 *", "month", {1, 4, 7, 10}),
        ("0 0 1 feb-dec/2 *", "month", {2, 4, 6, 8, 10, 12}),
        ("0 0 * * 0", "weekday", {SUN}),
        ("0 0 * * 7", "weekday", {SUN}),
        ("0 0 * * 1", "weekday", {MON}),
        ("0 0 * * 6", "weekday", {SAT}),
        ("0 0 * * MON-FRI", "weekday", {MON, TUE, WED, THU, FRI}),
        ("0 0 * * sat,sun", "weekday", {SAT, SUN}),
        ("0 0 * * 5-7", "weekday", {FRI, SAT, SUN}),
        ("0 0 * * FRI-7", "weekday", {FRI, SAT, SUN}),
        ("0 0 * * 0-7", "weekday", ALL_WEEKDAYS),
        ("0 0 * * */2", "weekday", {SUN, TUE, THU, SAT}),
        ("0 0 * * *", "weekday", ALL_WEEKDAYS),
        ("  0\t0  *  *  *  ", "hour", {0}),
    ],
)
def test_parse_fields(expression: str, field: str, expected: set[int]) -> None:
    assert getattr(parse_cron(expression), field) == expected


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, expanded: str) -> None:
    assert parse_cron(macro) == parse_cron(expanded)


@pytest.mark.parametrize(
    ("expression", "day_restricted", "weekday_restricted"),
    [
        ("0 0 * * *", False, False),
        ("0 0 1 * *", True, False),
        ("0 0 * * MON", False, True),
        ("0 0 1 * MON", True, True),
        ("0 0 */2 * MON", False, True),  # cronie: a field starting with * is not a restriction
        ("0 0 1-31 * 0-6", True, True),
    ],
)
def test_restricted_flags(expression: str, day_restricted: bool, weekday_restricted: bool) -> None:
    spec = parse_cron(expression)
    assert (spec.day_restricted, spec.weekday_restricted) == (day_restricted, weekday_restricted)
    assert spec.day_or_weekday_restricted == (day_restricted and weekday_restricted)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected 5 fields .* got 0"),
        ("   ", "expected 5 fields .* got 0"),
        ("* * * *", "expected 5 fields .* got 4"),
        ("0 * * * * *", "expected 5 fields .* got 6"),
        ("61 * * * *", r"^minute field '61': values must be 0-59$"),
        ("1,61 * * * *", r"minute field '1,61': values must be 0-59, got 61"),
        ("* 24 * * *", r"hour field '24': values must be 0-23"),
        ("* * 0 * *", r"day-of-month field '0': values must be 1-31"),
        ("* * 32 * *", r"day-of-month field '32': values must be 1-31"),
        ("* * * 0 *", r"month field '0': values must be 1-12 or JAN-DEC"),
        ("* * * 13 *", r"month field '13': values must be 1-12 or JAN-DEC"),
        ("* * * * 8", r"day-of-week field '8': values must be 0-7 or SUN-SAT"),
        ("*/0 * * * *", r"minute field '\*/0': step must be 1-59, got 0"),
        ("0 0-23/24 * * *", r"hour field '0-23/24': step must be 1-23, got 24"),
        ("5-2 * * * *", r"minute field '5-2': range '5-2' runs backwards"),
        ("* * * DEC-JAN *", r"month field 'DEC-JAN': range 'DEC-JAN' runs backwards"),
        ("* * * * SAT-SUN", r"range 'SAT-SUN' runs backwards \(use 7 for Sunday"),
        ("1,,2 * * * *", r"minute field '1,,2': empty list item"),
        ("1, * * * *", r"minute field '1,': empty list item"),
        ("x * * * *", r"minute field 'x': 'x' is not a number; values must be 0-59"),
        ("* * * FOO *", r"month field 'FOO': 'FOO' is not a number or name"),
        ("* * * JANUARY *", r"'JANUARY' is not a number or name"),
        ("* * * * MON#2", r"day-of-week field 'MON#2': 'MON#2' is not a value, range or step"),
        ("* * L * *", r"day-of-month field 'L': 'L' is not a number"),
        ("* * ? * *", r"day-of-month field '\?'"),
        ("-1 * * * *", r"minute field '-1'"),
        ("+1 * * * *", r"minute field '\+1'"),
        ("1-2-3 * * * *", r"minute field '1-2-3'"),
        ("*/ * * * *", r"minute field '\*/'"),
        ("*/-1 * * * *", r"minute field '\*/-1'"),
        ("*-5 * * * *", r"minute field '\*-5'"),
        ("MON/2 * * * *", r"minute field 'MON/2': 'MON' is not a number"),
        ("* * * * */MON", r"day-of-week field '\*/MON'"),
        ("١ * * * *", r"minute field '١'"),  # a non-ASCII digit
        ("@reboot", r"unknown macro"),
        ("@daily extra", r"unknown macro"),
        ("@", r"unknown macro"),
    ],
)
def test_parse_errors(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)


def test_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="minute"):
        parse_cron("99 * * * *")


def test_spec_rejects_impossible_sets() -> None:
    with pytest.raises(CronError, match="weekday"):
        CronSpec(ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, frozenset({7}), False, True)
    with pytest.raises(CronError, match="minute"):
        CronSpec(frozenset(), ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, False, False)


# --- matching and run times --------------------------------------------------------------------


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", at(2024, 1, 1, 10, 7, 30), at(2024, 1, 1, 10, 15)),
        ("*/15 * * * *", at(2024, 1, 1, 10, 15), at(2024, 1, 1, 10, 30)),  # strictly after
        ("*/15 * * * *", at(2024, 1, 1, 10, 14, 59, 999999), at(2024, 1, 1, 10, 15)),
        ("* * * * *", at(2024, 1, 1, 10, 0, 0), at(2024, 1, 1, 10, 1)),
        ("0 * * * *", at(2023, 12, 31, 23, 59, 59), at(2024, 1, 1, 0, 0)),
        ("30 2 * * *", at(2024, 3, 10, 2, 30), at(2024, 3, 11, 2, 30)),
        ("0 9-17/4 * * *", at(2024, 5, 5, 13, 0), at(2024, 5, 5, 17, 0)),
        ("0 9-17/4 * * *", at(2024, 5, 5, 17, 0), at(2024, 5, 6, 9, 0)),
        # month ends: months without the day are skipped
        ("0 12 31 * *", at(2024, 4, 1), at(2024, 5, 31, 12, 0)),
        ("0 12 31 * *", at(2024, 7, 31, 12, 0), at(2024, 8, 31, 12, 0)),
        ("0 12 31 * *", at(2024, 8, 31, 12, 0), at(2024, 10, 31, 12, 0)),
        ("0 0 30 * *", at(2024, 1, 30), at(2024, 3, 30)),
        ("59 23 28-31 2 *", at(2023, 2, 28, 23, 59), at(2024, 2, 28, 23, 59)),
        # leap years
        ("0 0 29 2 *", at(2023, 6, 1), at(2024, 2, 29)),
        ("0 0 29 2 *", at(2024, 2, 29), at(2028, 2, 29)),
        ("0 0 29 2 *", at(2024, 3, 1), at(2028, 2, 29)),
        ("0 0 29 2 */7", at(2028, 3, 1), at(2032, 2, 29)),  # Feb 29 AND Sunday
        ("@yearly", at(2024, 6, 1), at(2025, 1, 1)),
        ("@monthly", at(2024, 12, 1), at(2025, 1, 1)),
        ("@weekly", at(2024, 1, 1), at(2024, 1, 7)),  # 2024-01-01 is a Monday
        ("0 0 * * 7", at(2024, 1, 1), at(2024, 1, 7)),
        ("0 9 * * MON-FRI", at(2024, 1, 5, 9, 0), at(2024, 1, 8, 9, 0)),
        ("0 0 1 JAN,JUL *", at(2024, 1, 1), at(2024, 7, 1)),
        # classic cron's OR: the 13th, and every Friday
        ("0 0 13 * FRI", at(2024, 1, 1), at(2024, 1, 5)),
        ("0 0 13 * 5", at(2024, 1, 5), at(2024, 1, 12)),
        ("0 0 13 * FRI", at(2024, 1, 12), at(2024, 1, 13)),  # a Saturday
        ("0 0 13 * FRI", at(2024, 1, 13), at(2024, 1, 19)),
        ("0 0 1 6 MON", at(2024, 5, 1), at(2024, 6, 1)),  # both only within June
        ("0 0 1 6 MON", at(2024, 6, 1), at(2024, 6, 3)),
        # a field starting with * is no restriction, so */2 and MON are ANDed: odd-dated Mondays
        ("0 0 */2 * MON", at(2024, 1, 1), at(2024, 1, 15)),
    ],
)
def test_next_run(expression: str, after: datetime, expected: datetime) -> None:
    assert next_run(parse_cron(expression), after) == expected


@pytest.mark.parametrize(
    ("expression", "before", "expected"),
    [
        ("*/15 * * * *", at(2024, 1, 1, 10, 15), at(2024, 1, 1, 10, 15)),  # at or before
        ("*/15 * * * *", at(2024, 1, 1, 10, 14, 59), at(2024, 1, 1, 10, 0)),
        ("0 * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0)),
        ("30 * * * *", at(2024, 1, 1, 0, 10), at(2023, 12, 31, 23, 30)),
        ("0 0 31 * *", at(2024, 3, 15), at(2024, 1, 31)),
        ("0 0 29 2 *", at(2028, 2, 28, 23, 59), at(2024, 2, 29)),
        ("0 0 13 * FRI", at(2024, 1, 13, 0, 0), at(2024, 1, 13)),
        ("0 0 13 * FRI", at(2024, 1, 12, 23, 59), at(2024, 1, 12)),
        ("0 0 13 * FRI", at(2024, 1, 4), at(2023, 12, 29)),
        ("0 9 * * MON-FRI", at(2024, 1, 8, 8, 59), at(2024, 1, 5, 9, 0)),
    ],
)
def test_previous_run(expression: str, before: datetime, expected: datetime) -> None:
    assert previous_run(parse_cron(expression), before) == expected


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_schedules_that_never_fire(expression: str) -> None:
    spec = parse_cron(expression)
    with pytest.raises(CronError, match=f"never fires within {SEARCH_YEARS} years"):
        next_run(spec, at(2024, 1, 1))
    assert previous_run(spec, at(2024, 1, 1)) is None


def test_rare_schedule_beyond_the_horizon() -> None:
    feb29_sunday = parse_cron("0 0 29 2 */7")  # 2032, then 2060
    with pytest.raises(CronError):
        next_run(feb29_sunday, at(2025, 1, 1))
    assert previous_run(feb29_sunday, at(2036, 1, 1)) == at(2032, 2, 29)
    assert previous_run(feb29_sunday, at(2040, 1, 1)) is None


def test_time_zones_are_kept() -> None:
    plus2 = timezone(timedelta(hours=2))
    result = next_run(parse_cron("0 0 * * *"), datetime(2024, 1, 1, 23, 30, tzinfo=plus2))
    assert result == datetime(2024, 1, 2, 0, 0, tzinfo=plus2)
    assert result.tzinfo is plus2
    berlin = ZoneInfo("Europe/Berlin")
    result = next_run(parse_cron("0 9 * * MON"), datetime(2024, 6, 1, tzinfo=berlin))
    assert (result.tzinfo, result.replace(tzinfo=None)) == (berlin, datetime(2024, 6, 3, 9, 0))
    previous = previous_run(parse_cron("0 9 * * MON"), datetime(2024, 6, 1, tzinfo=berlin))
    assert previous is not None and previous.tzinfo is berlin


def test_naive_datetimes_stay_naive() -> None:
    assert next_run(parse_cron("@hourly"), datetime(2024, 1, 1, 0, 30)) == datetime(2024, 1, 1, 1, 0)


def test_end_of_calendar() -> None:
    spec = parse_cron("* * * * *")
    with pytest.raises(CronError):
        next_run(spec, datetime(9999, 12, 31, 23, 59))
    assert next_run(spec, datetime(9999, 12, 31, 23, 58)) == datetime(9999, 12, 31, 23, 59)
    assert previous_run(parse_cron("0 0 2 * *"), datetime(1, 1, 1, 23, 59)) is None


def test_searching_is_fast() -> None:
    started = time.perf_counter()
    for year in range(2000, 2050):
        next_run(parse_cron("0 0 29 2 *"), at(year, 3, 1))
        previous_run(parse_cron("0 0 29 2 *"), at(year, 3, 1))
    with pytest.raises(CronError):
        next_run(parse_cron("0 0 31 2 *"), at(2024, 1, 1))  # the longest search: the whole horizon
    assert time.perf_counter() - started < 0.5


def test_matches() -> None:
    spec = parse_cron("*/30 9 13 * FRI")
    assert matches(spec, at(2024, 1, 5, 9, 30, 59))  # a Friday; seconds ignored
    assert matches(spec, at(2024, 1, 13, 9, 0))  # the 13th
    assert not matches(spec, at(2024, 1, 6, 9, 0))
    assert not matches(spec, at(2024, 1, 5, 9, 15))
    assert not matches(spec, at(2024, 1, 5, 10, 0))


# --- arq cron kwargs ---------------------------------------------------------------------------


def test_arq_kwargs_single_job() -> None:
    assert arq_cron_kwargs(parse_cron("*/30 9-10 * * MON-FRI")) == [
        {"month": None, "day": None, "weekday": {0, 1, 2, 3, 4}, "hour": {9, 10}, "minute": {0, 30}, "second": {0}}
    ]
    assert arq_cron_kwargs(parse_cron("* * * * *")) == [
        {"month": None, "day": None, "weekday": None, "hour": None, "minute": None, "second": {0}}
    ]
    assert arq_cron_kwargs(parse_cron("0 0 */2 * MON"))[0]["day"] == set(range(1, 32, 2))


def test_arq_kwargs_split_day_or_weekday() -> None:
    by_day, by_weekday = arq_cron_kwargs(parse_cron("0 6 1,15 JAN MON"))
    assert by_day == {"month": {1}, "day": {1, 15}, "weekday": None, "hour": {6}, "minute": {0}, "second": {0}}
    assert by_weekday == {**by_day, "day": set(range(1, 32)) - {1, 15}, "weekday": {0}}


@pytest.mark.parametrize("expression", ["0 0 1-31 * MON", "0 0 1 * 0-6", "0 0 1 * SUN-SAT"])
def test_arq_kwargs_or_with_a_full_field_is_every_day(expression: str) -> None:
    [kwargs] = arq_cron_kwargs(parse_cron(expression))
    assert kwargs["day"] is None and kwargs["weekday"] is None


@pytest.mark.parametrize("expression", ["0 0 1 * MON", "0 0 29 2 *", "*/7 3 13 * FRI", "0 12 31 * *"])
@pytest.mark.parametrize("after", [at(2024, 1, 1), at(2024, 2, 29, 0, 0), at(2025, 6, 15, 12, 0, 30)])
def test_arq_schedules_jobs_at_next_run(expression: str, after: datetime) -> None:
    """arq's own scheduler, given our kwargs, fires first exactly when next_run says."""
    spec = parse_cron(expression)
    arq_next = min(next_cron(after, microsecond=0, **kwargs) for kwargs in arq_cron_kwargs(spec))
    assert arq_next == next_run(spec, after)


# --- properties --------------------------------------------------------------------------------

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


_ITEM_KINDS = ("*", "*/n", "a", "a-b", "a-b/n", "a/n")


def field_items(low: int, high: int, names: tuple[str, ...] = (), first_named: int = 0) -> st.SearchStrategy[str]:
    """One list item of a field: *, */n, a, a-b, a-b/n or a/n, values sometimes spelled as names."""

    def spell(value: int, style: int) -> str:
        index = value - first_named
        if style == 0 or not 0 <= index < len(names):
            return str(value)
        return names[index] if style == 1 else names[index].lower()

    def item(kind: str, first: int, second: int, step: int, style: int) -> str:
        start, end = spell(min(first, second), style), spell(max(first, second), style)
        return {
            "*": "*",
            "*/n": f"*/{step}",
            "a": start,
            "a-b": f"{start}-{end}",
            "a-b/n": f"{start}-{end}/{step}",
            "a/n": f"{start}/{step}",
        }[kind]

    value = st.integers(low, high)
    return st.builds(item, st.sampled_from(_ITEM_KINDS), value, value, st.integers(1, high), st.integers(0, 2))


def fields(low: int, high: int, names: tuple[str, ...] = (), first_named: int = 0) -> st.SearchStrategy[str]:
    return st.lists(field_items(low, high, names, first_named), min_size=1, max_size=3).map(",".join)


def expressions(daily: bool = False) -> st.SearchStrategy[str]:
    """Valid 5-field expressions; `daily` ones leave the day fields as `*`, so fire every day."""
    star = st.just("*")
    return st.tuples(
        fields(0, 59),
        fields(0, 23),
        star if daily else fields(1, 31),
        star if daily else fields(1, 12, _MONTH_NAMES, 1),
        star if daily else fields(0, 7, _DAY_NAMES, 0),
    ).map(" ".join)


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC))
minutes = instants.map(lambda t: t.replace(second=0, microsecond=0))


@settings(max_examples=100, deadline=None)
@given(expression=expressions(daily=True), after=instants)
def test_next_run_is_the_first_match_brute_force(expression: str, after: datetime) -> None:
    spec = parse_cron(expression)
    result = next_run(spec, after)
    assert result > after and result.second == 0 and result.microsecond == 0
    assert result - after <= timedelta(days=1, minutes=1)
    assert matches(spec, result)
    candidate = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while candidate < result:
        assert not matches(spec, candidate), candidate
        candidate += timedelta(minutes=1)


def _reference_next(spec: CronSpec, after: datetime) -> datetime | None:
    """The first matching minute after `after`, found by trying every minute of every matching day."""
    first_time = (min(spec.hour), min(spec.minute))
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(SEARCH_YEARS * 366 + 1):
        if matches(spec, day.replace(hour=first_time[0], minute=first_time[1])):
            for offset in range(24 * 60):
                candidate = day + timedelta(minutes=offset)
                if candidate > after and matches(spec, candidate):
                    return candidate
        day += timedelta(days=1)
    return None


@settings(max_examples=100, deadline=None)
@given(expression=expressions(), after=instants)
def test_next_run_matches_reference(expression: str, after: datetime) -> None:
    spec = parse_cron(expression)
    expected = _reference_next(spec, after)
    if expected is None:
        with pytest.raises(CronError):
            next_run(spec, after)
    else:
        assert next_run(spec, after) == expected


@settings(max_examples=100, deadline=None)
@given(expression=expressions(), when=instants)
def test_previous_run_is_the_last_match(expression: str, when: datetime) -> None:
    spec = parse_cron(expression)
    previous = previous_run(spec, when)
    if previous is None:
        return
    assert previous <= when and matches(spec, previous)
    with contextlib.suppress(CronError):  # raised when the next firing is beyond the horizon: after `when`
        assert next_run(spec, previous) > when  # nothing fires in between


@settings(max_examples=100, deadline=None)
@given(expression=expressions(daily=True), when=instants)
def test_previous_run_undoes_next_run(expression: str, when: datetime) -> None:
    spec = parse_cron(expression)
    upcoming = next_run(spec, when)
    assert previous_run(spec, upcoming) == upcoming
    assert previous_run(spec, upcoming - timedelta(minutes=1)) == previous_run(spec, when)


def _arq_fires(kwargs: dict[str, set[int] | None], when: datetime) -> bool:
    """arq's field check (arq.cron._get_next_dt): every field that is not None must contain the value."""
    actual = {
        "month": when.month,
        "day": when.day,
        "weekday": when.weekday(),
        "hour": when.hour,
        "minute": when.minute,
        "second": when.second,
    }
    return all(allowed is None or actual[name] in allowed for name, allowed in kwargs.items())


@settings(max_examples=200, deadline=None)
@given(expression=expressions(), when=minutes)
def test_arq_kwargs_round_trip(expression: str, when: datetime) -> None:
    spec = parse_cron(expression)
    firing = [kwargs for kwargs in arq_cron_kwargs(spec) if _arq_fires(kwargs, when)]
    assert matches(spec, when) == bool(firing)
    assert len(firing) <= 1  # the jobs of one schedule never fire together


@settings(max_examples=100, deadline=None)
@given(expression=expressions(), data=st.data())
def test_arq_kwargs_round_trip_on_matching_times(expression: str, data: st.DataObject) -> None:
    """Random times rarely hit sparse schedules, so also check times the schedule does fire at."""
    spec = parse_cron(expression)
    try:
        when = next_run(spec, data.draw(instants))
    except CronError:
        return
    assert sum(_arq_fires(kwargs, when) for kwargs in arq_cron_kwargs(spec)) == 1
