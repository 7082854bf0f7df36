"""Cron expressions of `[[schedule]]`, read by cronsim.

A schedule is a five-field crontab line (`minute hour day-of-month month day-of-week`), or a
macro such as `@daily`; a six-field line (seconds first) is accepted too. cronsim follows
Debian's cron, including its rule that a day matches when either day field does if both are
restricted (`0 0 1 * MON`: the 1st of each month, and every Monday).

Times are wall-clock times: cronsim works on the fields of the datetime it is given, naive or
not, which is what arq hands its cron jobs (`datetime.now(tz=worker.timezone)`).
"""

from __future__ import annotations

from datetime import datetime

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(expression: str) -> str:
    """The crontab fields of `expression`, macros replaced."""
    text = " ".join(expression.split())
    return MACROS.get(text.lower(), text)


def check_cron(expression: str) -> None:
    """Raise `ValueError` saying what is wrong unless `expression` is a cron line that ever fires."""
    fields = expand(expression)
    if not fields:
        raise ValueError("empty cron expression")
    if fields.startswith("@"):
        raise ValueError(f"unknown macro {expression!r}; known: {', '.join(MACROS)}")
    if len(fields.split()) not in (5, 6):
        raise ValueError(f"{expression!r}: expected 5 fields (minute hour day month weekday), or a macro")
    try:
        next(CronSim(fields, datetime(2000, 1, 1)))
    except CronSimError as exc:
        raise ValueError(f"{expression!r}: {str(exc).lower() or 'invalid'}") from None
    except StopIteration:
        raise ValueError(f"{expression!r} never fires") from None


def next_tick(expression: str, after: datetime) -> datetime:
    """The first time strictly after `after` that the schedule fires, in `after`'s wall clock."""
    return next(CronSim(expand(expression), after))


def previous_tick(expression: str, before: datetime) -> datetime:
    """The last time strictly before `before` that the schedule fired."""
    return next(CronSim(expand(expression), before, reverse=True))
