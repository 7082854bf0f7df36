"""Periodic crawls (Celery: beat), as arq cron jobs in the workers themselves.

Every worker registers the cron jobs of `[[schedule]]`; arq gives each tick a job id derived
from the schedule and the time, so a tick runs once however many workers there are, and there
is no separate scheduler process to keep single. A tick whose previous crawl of the same
schedule is still running is skipped and recorded, never stacked: the backlog a periodic poll
piles up on Celery cannot build here.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from arq.cron import CronJob, cron

from pipeline.crawls import CrawlOptions, start_crawl
from pipeline.cronexpr import arq_cron_kwargs, next_run, parse_cron, previous_run
from pipeline.resources import Resources
from pipeline.settings import ScheduleSpec, Settings
from pipeline.storage import Document, MongoStore, utcnow

log = logging.getLogger("pipeline.schedules")

# Each pipeline's list job, item job and completion jobs (None: `crawl.on_complete`).
PIPELINES: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "web": ("crawl", "fetch_page", None),
    "api": ("collect_list", "collect_object", ("collect_summary",)),
}
SCHEDULED_CRAWL = "scheduled_crawl"
CRON_TIMEOUT_S = 120


def find_schedule(settings: Settings, name: str) -> ScheduleSpec:
    for spec in settings.schedules:
        if spec.name == name:
            return spec
    raise LookupError(f"no schedule named {name!r} in the configuration")


async def run_schedule(res: Resources, spec: ScheduleSpec) -> str | None:
    """Start the schedule's crawl, unless its previous crawl is still running; returns the crawl id."""
    schedules = res.store.db["schedules"]
    events = res.store.db["schedule_events"]
    state = await schedules.find_one({"_id": spec.name}) or {}
    previous = state.get("last_crawl_id")
    if previous:
        record = await res.store.get_crawl(previous)
        if record is not None and record.get("state") == "running":
            reason = f"crawl {previous} of this schedule is still running"
            await schedules.update_one(
                {"_id": spec.name},
                {"$inc": {"skipped": 1}, "$set": {"last_skipped_at": utcnow(), "last_skip_reason": reason}},
                upsert=True,
            )
            await events.insert_one({"schedule": spec.name, "at": utcnow(), "action": "skipped", "reason": reason})
            log.warning("schedule %s: tick skipped, %s", spec.name, reason)
            return None
    list_job, item_job, on_complete = PIPELINES[spec.pipeline]
    options = CrawlOptions.build(
        spec.start_url,
        res.settings.crawl,
        max_depth=spec.max_depth,
        max_pages=spec.max_pages,
        next_selector=spec.next_selector,
        link_selector=spec.link_selector,
        scope=spec.scope,
        list_job=list_job,
        item_job=item_job,
        on_complete=on_complete,
        schedule=spec.name,
        conditional=spec.conditional,
    )
    crawl_id = await start_crawl(res.store, res.frontier, options)
    await schedules.update_one(
        {"_id": spec.name},
        {"$set": {"last_crawl_id": crawl_id, "last_run_at": utcnow()}, "$inc": {"runs": 1}},
        upsert=True,
    )
    await events.insert_one({"schedule": spec.name, "at": utcnow(), "action": "started", "crawl_id": crawl_id})
    log.info("schedule %s: started crawl %s", spec.name, crawl_id)
    return crawl_id


def cron_jobs(settings: Settings, second: set[int] | None = None) -> list[CronJob]:
    """arq cron jobs for every schedule (two for a cron using the day-of-month OR weekday rule).

    `second` overrides the second of the minute the ticks fire at; cron's own resolution is one
    minute.
    """
    from jobs.scheduled import scheduled_crawl

    jobs: list[CronJob] = []
    for spec in settings.schedules:
        for index, fields in enumerate(arq_cron_kwargs(parse_cron(spec.cron))):
            if second is not None:
                fields = {**fields, "second": second}

            async def tick(ctx: dict[str, Any], _name: str = spec.name) -> None:
                await scheduled_crawl(ctx, _name)

            tick.__qualname__ = tick.__name__ = f"schedule_{spec.name}"
            jobs.append(
                cron(
                    tick,
                    name=f"schedule:{spec.name}" + (f":{index}" if index else ""),
                    unique=True,
                    run_at_startup=False,
                    timeout=CRON_TIMEOUT_S,
                    keep_result=0,
                    max_tries=3,
                    **fields,  # type: ignore[arg-type]
                )
            )
    return jobs


async def schedule_overview(store: MongoStore, settings: Settings, now: dt.datetime | None = None) -> list[Document]:
    """Each schedule with its last run (and state of that crawl), skips and next run."""
    now = now or utcnow()
    rows: list[Document] = []
    for spec in settings.schedules:
        state = await store.db["schedules"].find_one({"_id": spec.name}) or {}
        last_crawl = await store.get_crawl(state["last_crawl_id"]) if state.get("last_crawl_id") else None
        parsed = parse_cron(spec.cron)
        rows.append(
            {
                "name": spec.name,
                "cron": spec.cron,
                "start_url": spec.start_url,
                "pipeline": spec.pipeline,
                "runs": int(state.get("runs", 0)),
                "skipped": int(state.get("skipped", 0)),
                "last_run_at": state.get("last_run_at"),
                "last_crawl_id": state.get("last_crawl_id"),
                "last_crawl_state": last_crawl.get("state") if last_crawl else None,
                "last_skip_reason": state.get("last_skip_reason"),
                "previous_tick": previous_run(parsed, now),
                "next_run": next_run(parsed, now),
            }
        )
    return rows
