"""Cron expressions for periodic crawls: parsing, matching, and translation into arq cron jobs.

Crawl schedules are written the way operators already know them, as standard 5-field crontab
lines (`minute hour day-of-month month day-of-week`) or macros such as `@daily`. arq's own
`cron()` takes keyword sets instead and differs from crontab in two ways this module bridges:

* Weekdays. Crontab counts 0 (or 7) = Sunday, 1 = Monday .. 6 = Saturday; arq, like Python's
  `datetime.weekday()`, counts 0 = Monday .. 6 = Sunday. `CronSpec.weekday` is stored in arq's
  convention, so it can be handed over unchanged.
* Day-of-month versus day-of-week. Classic cron (Vixie cron, cronie) fires on a day when EITHER
  field matches if both are restricted, so `0 0 1 * MON` means "the 1st of the month, and every
  Monday". arq ANDs all of its fields, so a single arq job would mean "a Monday that is the 1st".
  `arq_cron_kwargs` therefore splits such a schedule into two arq jobs that never fire together.

A field counts as restricted unless its text starts with `*`, which is cronie's rule: `*/2` in the
day-of-month field leaves it "unrestricted", so `0 0 */2 * MON` fires on odd days that are Mondays.

Times are wall-clock times: `next_run` and `previous_run` work on the naive fields of the datetime
they are given and attach its `tzinfo` to the answer, as arq does when it evaluates its cron jobs
in the worker's timezone. Around a DST change this can name a wall time that is skipped or repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo

# How far next_run/previous_run look before concluding a schedule never fires; long enough to
# reach the next Feb 29 from any date except across a skipped century leap year such as 2100.
SEARCH_YEARS = 5
_SEARCH_DAYS = SEARCH_YEARS * 366
_MINUTES_PER_DAY = 24 * 60
_MAX_ORDINAL = date.max.toordinal()

ALL_MINUTES = frozenset(range(60))
ALL_HOURS = frozenset(range(24))
ALL_DAYS = frozenset(range(1, 32))
ALL_MONTHS = frozenset(range(1, 13))
ALL_WEEKDAYS = frozenset(range(7))

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_ITEM = re.compile(r"(?P<base>\*|(?P<start>[0-9]+|[A-Za-z]+)(?:-(?P<end>[0-9]+|[A-Za-z]+))?)(?:/(?P<step>[0-9]+))?")


class CronError(ValueError):
    """A cron expression that cannot be parsed, or a schedule that never fires.

    A `ValueError` so that configuration loaders which already report bad values report these too.
    """


@dataclass(frozen=True)
class _FieldSyntax:
    """How one crontab field is written: its name in messages, its numeric range and its names."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_named: int = 0

    def allowed(self) -> str:
        """The accepted values, for error messages."""
        numbers = f"{self.low}-{self.high}"
        return f"{numbers} or {self.names[0]}-{self.names[-1]}" if self.names else numbers


_MINUTE = _FieldSyntax("minute", 0, 59)
_HOUR = _FieldSyntax("hour", 0, 23)
_DAY = _FieldSyntax("day-of-month", 1, 31)
_MONTH = _FieldSyntax(
    "month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
)
# 7 is a second spelling of Sunday, so that ranges such as FRI-7 can run to the end of the week.
_WEEKDAY = _FieldSyntax("day-of-week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 0)


@dataclass(frozen=True)
class CronSpec:
    """A parsed schedule: the set of allowed values of each field.

    `weekday` uses arq's and Python's convention (0 = Monday .. 6 = Sunday), not crontab's.
    `day_restricted` and `weekday_restricted` record whether those fields were written as
    restrictions (not starting with `*`); when both are, a day matches if either field matches.
    """

    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    weekday: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    def __post_init__(self) -> None:
        """Reject sets that could not come from a crontab line, so every spec can be scheduled."""
        for name, values, allowed in (
            ("minute", self.minute, ALL_MINUTES),
            ("hour", self.hour, ALL_HOURS),
            ("day", self.day, ALL_DAYS),
            ("month", self.month, ALL_MONTHS),
            ("weekday", self.weekday, ALL_WEEKDAYS),
        ):
            if not values or not values <= allowed:
                raise CronError(
                    f"{name} values {sorted(values)}: must be a non-empty subset of {min(allowed)}-{max(allowed)}"
                )

    @property
    def day_or_weekday_restricted(self) -> bool:
        """True when both day fields are restricted, so classic cron ORs them rather than ANDs."""
        return self.day_restricted and self.weekday_restricted


def parse_cron(expression: str) -> CronSpec:
    """Parse a 5-field crontab expression or an `@hourly`-style macro.

    Supports `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from a to the field's
    end), lists `a,b,c`, and month (JAN-DEC) and weekday (SUN-SAT) names in any case. Raises
    `CronError` naming the offending field and what it allows.
    """
    fields = _expand_macro(expression).split()
    if len(fields) != 5:
        raise CronError(
            f"cron expression {expression.strip()!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week) or a macro such as @daily, got {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    return CronSpec(
        minute=_parse_field(minute, _MINUTE),
        hour=_parse_field(hour, _HOUR),
        day=_parse_field(day, _DAY),
        month=_parse_field(month, _MONTH),
        weekday=frozenset((value - 1) % 7 for value in _parse_field(weekday, _WEEKDAY)),
        day_restricted=not day.startswith("*"),
        weekday_restricted=not weekday.startswith("*"),
    )


def _expand_macro(expression: str) -> str:
    """Replace a macro by its 5-field form; anything not starting with `@` is returned as is."""
    text = expression.strip()
    if not text.startswith("@"):
        return text
    try:
        return _MACROS[text.lower()]
    except KeyError:
        known = ", ".join(_MACROS)
        raise CronError(f"cron expression {text!r}: unknown macro, expected one of {known}") from None


def _parse_field(text: str, syntax: _FieldSyntax) -> frozenset[int]:
    """The values one field allows, in crontab's numbering, from a comma-separated list."""
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, text, syntax))
    return frozenset(values)


def _parse_item(item: str, text: str, syntax: _FieldSyntax) -> range:
    """The values of one list item: `*`, `a`, `a-b`, each optionally followed by `/step`."""
    match = _ITEM.fullmatch(item)
    if match is None:
        problem = "empty list item" if not item else f"{item!r} is not a value, range or step"
        raise _field_error(syntax, text, f"{problem}; values must be {syntax.allowed()}")
    step = _parse_step(match["step"], text, syntax)
    if match["base"] == "*":
        return range(syntax.low, syntax.high + 1, step)
    start = _parse_value(match["start"], text, syntax)
    if match["end"] is not None:
        end = _parse_value(match["end"], text, syntax)
    else:
        end = syntax.high if match["step"] is not None else start
    if start > end:
        hint = " (use 7 for Sunday at the end of a range)" if syntax is _WEEKDAY and end == 0 else ""
        raise _field_error(syntax, text, f"range {item!r} runs backwards{hint}")
    return range(start, end + 1, step)


def _parse_step(step: str | None, text: str, syntax: _FieldSyntax) -> int:
    """The step of a `/n` suffix (1 without one); 0 and steps longer than the field are rejected."""
    if step is None:
        return 1
    value = int(step)
    if not 1 <= value <= syntax.high:
        raise _field_error(syntax, text, f"step must be 1-{syntax.high}, got {value}")
    return value


def _parse_value(token: str, text: str, syntax: _FieldSyntax) -> int:
    """One number or name, checked against the field's range."""
    if token.isdigit():
        value = int(token)
    elif token.upper() in syntax.names:
        return syntax.names.index(token.upper()) + syntax.first_named
    else:
        kind = "number or name" if syntax.names else "number"
        raise _field_error(syntax, text, f"{token!r} is not a {kind}; values must be {syntax.allowed()}")
    if not syntax.low <= value <= syntax.high:
        got = "" if token == text else f", got {value}"
        raise _field_error(syntax, text, f"values must be {syntax.allowed()}{got}")
    return value


def _field_error(syntax: _FieldSyntax, text: str, problem: str) -> CronError:
    """An error that quotes the whole field, so it can be found in the expression."""
    return CronError(f"{syntax.name} field {text!r}: {problem}")


def matches(spec: CronSpec, when: datetime) -> bool:
    """Whether the minute containing `when` is one the schedule fires at (seconds are ignored)."""
    return when.minute in spec.minute and when.hour in spec.hour and _day_matches(spec, when.date())


def _day_matches(spec: CronSpec, day: date) -> bool:
    """Whether the schedule fires on `day` at all, with classic cron's day-of-month/weekday OR."""
    if day.month not in spec.month:
        return False
    by_day = day.day in spec.day
    by_weekday = day.weekday() in spec.weekday
    if spec.day_or_weekday_restricted:
        return by_day or by_weekday
    return by_day and by_weekday


def next_run(spec: CronSpec, after: datetime) -> datetime:
    """The first minute strictly after `after` at which the schedule fires.

    Scans day by day, skipping whole months the schedule excludes, and only looks at the times
    of day on days that match, so even a Feb 29 schedule costs a few hundred cheap steps. Raises
    `CronError` when nothing matches within `SEARCH_YEARS` years (for example `0 0 31 2 *`).
    """
    ordinal = after.toordinal()
    earliest = after.hour * 60 + after.minute + 1
    limit = min(ordinal + _SEARCH_DAYS, _MAX_ORDINAL)
    while ordinal <= limit:
        day = date.fromordinal(ordinal)
        if day.month not in spec.month:
            ordinal, earliest = _first_of_next_month(day), 0
            continue
        found = _first_time_from(spec, earliest) if _day_matches(spec, day) else None
        if found is not None:
            return _at(day, found, after.tzinfo)
        ordinal, earliest = ordinal + 1, 0
    raise CronError(f"schedule never fires within {SEARCH_YEARS} years after {after.isoformat()}")


def previous_run(spec: CronSpec, before: datetime) -> datetime | None:
    """The last minute at or before `before` at which the schedule fired, or None.

    The mirror image of `next_run`, for showing when a periodic crawl was last due. Returns None
    rather than raising when nothing matched within `SEARCH_YEARS` years, since "never" is a
    normal answer for a schedule that has not come round yet.
    """
    ordinal = before.toordinal()
    latest = before.hour * 60 + before.minute
    limit = max(ordinal - _SEARCH_DAYS, 1)
    while ordinal >= limit:
        day = date.fromordinal(ordinal)
        if day.month not in spec.month:
            ordinal, latest = date(day.year, day.month, 1).toordinal() - 1, _MINUTES_PER_DAY - 1
            continue
        found = _last_time_until(spec, latest) if _day_matches(spec, day) else None
        if found is not None:
            return _at(day, found, before.tzinfo)
        ordinal, latest = ordinal - 1, _MINUTES_PER_DAY - 1
    return None


def _first_of_next_month(day: date) -> int:
    """The ordinal of the 1st of the month after `day`; past `date.max` when there is none."""
    if day.month < 12:
        return date(day.year, day.month + 1, 1).toordinal()
    if day.year < date.max.year:
        return date(day.year + 1, 1, 1).toordinal()
    return _MAX_ORDINAL + 1


def _first_time_from(spec: CronSpec, earliest: int) -> int | None:
    """The first minute of the day (counted from midnight) not before `earliest` that matches."""
    for hour in sorted(spec.hour):
        for minute in sorted(spec.minute):
            if hour * 60 + minute >= earliest:
                return hour * 60 + minute
    return None


def _last_time_until(spec: CronSpec, latest: int) -> int | None:
    """The last minute of the day (counted from midnight) not after `latest` that matches."""
    for hour in sorted(spec.hour, reverse=True):
        for minute in sorted(spec.minute, reverse=True):
            if hour * 60 + minute <= latest:
                return hour * 60 + minute
    return None


def _at(day: date, minute_of_day: int, zone: tzinfo | None) -> datetime:
    """The wall-clock datetime of a minute of `day`, in the caller's timezone."""
    return datetime.combine(day, time(*divmod(minute_of_day, 60)), tzinfo=zone)


def arq_cron_kwargs(spec: CronSpec) -> list[dict[str, set[int] | None]]:
    """Keyword arguments for `arq.cron()`, one dict per arq cron job the schedule needs.

    Each dict has `month`, `day`, `weekday`, `hour`, `minute` (None where the field allows every
    value) and `second={0}`. arq ANDs its fields, so a schedule using classic cron's
    day-of-month OR weekday rule needs two jobs: one for the listed days of the month, and one
    for the listed weekdays on the remaining days of the month. Keeping the second off the days
    the first covers means the two never fire at the same minute, so a crawl due on "the 1st and
    every Monday" runs once, not twice, on a Monday the 1st. Give each job its own arq name.
    """
    common: dict[str, set[int] | None] = {"month": _option(spec.month, ALL_MONTHS)}
    times: dict[str, set[int] | None] = {
        "hour": _option(spec.hour, ALL_HOURS),
        "minute": _option(spec.minute, ALL_MINUTES),
        "second": {0},
    }
    if not spec.day_or_weekday_restricted:
        days = [(spec.day, spec.weekday)]
    else:
        days = _either_day_split(spec.day, spec.weekday)
    return [
        {**common, "day": _option(day, ALL_DAYS), "weekday": _option(weekday, ALL_WEEKDAYS), **times}
        for day, weekday in days
    ]


def _either_day_split(days: frozenset[int], weekdays: frozenset[int]) -> list[tuple[frozenset[int], frozenset[int]]]:
    """Disjoint (day, weekday) pairs whose AND-ed union is "day in days OR weekday in weekdays"."""
    if weekdays == ALL_WEEKDAYS or days == ALL_DAYS:
        return [(ALL_DAYS, ALL_WEEKDAYS)]
    return [(days, ALL_WEEKDAYS), (ALL_DAYS - days, weekdays)]


def _option(values: frozenset[int], every: frozenset[int]) -> set[int] | None:
    """arq's spelling of a field: None for "any value", else a (mutable) set."""
    return None if values == every else set(values)
