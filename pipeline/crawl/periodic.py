"""Periodic crawls (Celery: beat): what a tick of a `[[schedule]]` does, and when the next comes.

Every worker registers one arq cron job per schedule (`pipeline.worker.cron`), and each tick
runs once however many workers see it. A tick whose previous crawl of the same schedule is
still running is skipped and recorded, never stacked: the backlog a periodic poll piles up on
Celery cannot build here.
"""

from __future__ import annotations

import datetime as dt
import logging

from pipeline.crawl.cron import next_tick, previous_tick
from pipeline.crawl.lifecycle import start_crawl
from pipeline.crawl.options import CrawlOptions
from pipeline.crawl.status import ACTIVE_STATES
from pipeline.schedule.frontier import Frontier
from pipeline.settings import ScheduleSpec, Settings
from pipeline.store.mongo import Document, MongoStore, utcnow

log = logging.getLogger("pipeline.schedules")


def find_schedule(settings: Settings, name: str) -> ScheduleSpec:
    for spec in settings.schedules:
        if spec.name == name:
            return spec
    raise LookupError(f"no schedule named {name!r} in the configuration")


async def run_schedule(store: MongoStore, frontier: Frontier, settings: Settings, spec: ScheduleSpec) -> str | None:
    """Start the schedule's crawl, unless it is paused or its previous crawl is still running; returns the crawl id."""
    schedules = store.db["schedules"]
    events = store.db["schedule_events"]
    state = await schedules.find_one({"_id": spec.name}) or {}
    previous = state.get("last_crawl_id")
    reason = "the schedule is paused" if state.get("paused") else None
    if previous and reason is None:
        record = await store.get_crawl(previous)
        if record is not None and record.get("state") in ACTIVE_STATES:
            reason = f"crawl {previous} of this schedule is still {record.get('state')}"
    if reason is not None:
        await schedules.update_one(
            {"_id": spec.name},
            {"$inc": {"skipped": 1}, "$set": {"last_skipped_at": utcnow(), "last_skip_reason": reason}},
            upsert=True,
        )
        await events.insert_one({"schedule": spec.name, "at": utcnow(), "action": "skipped", "reason": reason})
        log.warning("schedule %s: tick skipped, %s", spec.name, reason)
        return None
    options = CrawlOptions.build(spec.start_url, settings, **spec.options, schedule=spec.name)
    crawl_id = await start_crawl(store, frontier, options)
    await schedules.update_one(
        {"_id": spec.name},
        {"$set": {"last_crawl_id": crawl_id, "last_run_at": utcnow()}, "$inc": {"runs": 1}},
        upsert=True,
    )
    await events.insert_one({"schedule": spec.name, "at": utcnow(), "action": "started", "crawl_id": crawl_id})
    log.info("schedule %s: started crawl %s", spec.name, crawl_id)
    return crawl_id


async def schedule_overview(store: MongoStore, settings: Settings, now: dt.datetime | None = None) -> list[Document]:
    """Each schedule with its last run (and state of that crawl), skips and next run."""
    now = now or utcnow()
    rows: list[Document] = []
    for spec in settings.schedules:
        state = await store.db["schedules"].find_one({"_id": spec.name}) or {}
        last_crawl = await store.get_crawl(state["last_crawl_id"]) if state.get("last_crawl_id") else None
        rows.append(
            {
                "name": spec.name,
                "cron": spec.cron,
                "start_url": spec.start_url,
                "pipeline": spec.options.get("pipeline", settings.crawl.pipeline),
                "runs": int(state.get("runs", 0)),
                "paused": bool(state.get("paused")),
                "skipped": int(state.get("skipped", 0)),
                "last_run_at": state.get("last_run_at"),
                "last_crawl_id": state.get("last_crawl_id"),
                "last_crawl_state": last_crawl.get("state") if last_crawl else None,
                "last_skip_reason": state.get("last_skip_reason"),
                "previous_tick": previous_tick(spec.cron, now),
                "next_run": next_tick(spec.cron, now),
            }
        )
    return rows
