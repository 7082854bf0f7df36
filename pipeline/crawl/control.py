"""Steering crawls: pause, resume, cancel and retry; pausing schedules.

Every action first reads the crawl's record and refuses what its state does not allow
(`InvalidTransition`, naming the state), then moves the record with a conditional update, so two
operators racing cannot both win. What workers must obey lives in Redis:

- **pause**: the crawl is *held* (the claim script starts none of its jobs) and its queued jobs
  move far into the future (`shift.lua`), so they stay queued without standing at the head of the
  queue in other crawls' way; jobs it queues while paused (running jobs finishing, backlog
  refills) land there too. Running jobs finish.
- **resume**: released, and its jobs are due again.
- **cancel**: held and *closed* (no script queues anything more for it), then every queued or
  parked URL whose job is not running is settled as `cancelled` (`cancel.lua`) and its backlog
  deleted. Running jobs finish (or, if they would be retried, settle as cancelled: see
  `pipeline.settle.retries.settle`); the last of them ends the crawl `cancelled`. Jobs whose
  worker died are caught by the next sweep (`sweep_cancelling`, which every worker runs every
  few seconds, and the command itself while it waits).
- **retry**: the crawl's recorded failures are queued again as fresh attempts (`requeue.lua`),
  the crawl reopens and runs to `done` (or `failed`) again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pipeline.crawl.lifecycle import complete_crawl, completion_job_id
from pipeline.crawl.options import CrawlOptions
from pipeline.crawl.status import ACTIVE_STATES, FINISHED_STATES
from pipeline.errors import CrawlNotFound, InvalidTransition
from pipeline.schedule.backlog import Backlog
from pipeline.schedule.frontier import ROBOTS_SITEMAPS, SITEMAP, Discovery, Frontier, Kind, Requeue
from pipeline.settings import Settings
from pipeline.store.mongo import Document, MongoStore, utcnow
from pipeline.urls import normalise_url

log = logging.getLogger("pipeline.control")

SWEEP_INTERVAL_S = 2.0
RETRY_BATCH = 500


class CrawlControl:
    """The actions on crawls and schedules, over a deployment's MongoDB and Redis."""

    def __init__(self, store: MongoStore, frontier: Frontier, backlog: Backlog) -> None:
        self.store = store
        self.frontier = frontier
        self.backlog = backlog

    async def record(self, crawl_id: str) -> Document:
        record = await self.store.get_crawl(crawl_id)
        if record is None:
            raise CrawlNotFound(f"no crawl with id {crawl_id!r}")
        return record

    async def pause(self, crawl_id: str) -> None:
        """No worker starts another of the crawl's jobs until it is resumed; running ones finish."""
        _expect(await self.record(crawl_id), crawl_id, ("running",), "paused")
        await self.frontier.hold(crawl_id, "paused")
        if not await self.store.set_crawl_state(crawl_id, ("running",), "paused", paused_at=utcnow()):
            await self.frontier.release(crawl_id)
            _expect(await self.record(crawl_id), crawl_id, (), "paused")
        await self.frontier.shift_jobs(crawl_id, pause=True)

    async def resume(self, crawl_id: str) -> None:
        """Workers take the crawl's jobs again, in the order they were due."""
        _expect(await self.record(crawl_id), crawl_id, ("paused",), "resumed")
        if not await self.store.set_crawl_state(crawl_id, ("paused",), "running", paused_at=None):
            _expect(await self.record(crawl_id), crawl_id, (), "resumed")
        await self.frontier.release(crawl_id)
        await self.frontier.shift_jobs(crawl_id, pause=False)

    async def cancel(self, crawl_id: str) -> bool:
        """Stop the crawl for good; True once it has ended `cancelled` (running jobs may delay that)."""
        _expect(await self.record(crawl_id), crawl_id, ACTIVE_STATES, "cancelled")
        await self.frontier.hold(crawl_id, "cancelling")
        if not await self.store.set_crawl_state(crawl_id, ACTIVE_STATES, "cancelling", cancelled_at=utcnow()):
            # It finished meanwhile: then it stays as it ended.
            await self.frontier.release(crawl_id)
            _expect(await self.record(crawl_id), crawl_id, (), "cancelled")
        log.info("cancelling crawl %s", crawl_id)
        return await self.sweep_cancelling(crawl_id)

    async def sweep_cancelling(self, crawl_id: str) -> bool:
        """Settle as cancelled what of the crawl is not running; end it once nothing is. True when ended."""
        record = await self.record(crawl_id)
        if record.get("state") != "cancelling":
            return record.get("state") in FINISHED_STATES
        await self.frontier.cancel_unsettled(crawl_id)
        await self.backlog.forget(crawl_id)
        if (await self.frontier.counters(crawl_id)).get("pending", 0) > 0:
            return False
        await complete_crawl(self.store, self.frontier, crawl_id, CrawlOptions.from_dict(record["options"]))
        return True

    async def sweep(self) -> None:
        """One pass over every crawl being cancelled (jobs whose worker died, retries that slipped by)."""
        for crawl_id, why in (await self.frontier.held()).items():
            if why == "cancelling":
                try:
                    await self.sweep_cancelling(crawl_id)
                except CrawlNotFound:
                    await self.frontier.release(crawl_id)  # its record is gone: nothing to finish

    async def retry(self, crawl_id: str) -> int:
        """Queue the crawl's recorded failures again as fresh attempts; returns how many were queued."""
        record = await self.record(crawl_id)
        if record.get("state") == "cancelled":
            raise InvalidTransition(f"crawl {crawl_id} was cancelled; start a new crawl instead of retrying it")
        _expect(record, crawl_id, ("done", "failed"), "retried")
        if not await self.store.failures.count_documents({"crawl_id": crawl_id}, limit=1):
            raise InvalidTransition(f"crawl {crawl_id} has no recorded failures to retry")
        if not await self.frontier.known(crawl_id):
            raise InvalidTransition(
                f"crawl {crawl_id} finished too long ago: its state in Redis has expired; start a new crawl"
            )
        options = CrawlOptions.from_dict(record["options"])
        # The failures to retry are marked first; a failure recorded again by the fresh attempt
        # replaces its document (and the mark), so only the old ones are deleted at the end.
        mark = uuid.uuid4().hex
        await self.store.failures.update_many({"crawl_id": crawl_id}, {"$set": {"retrying": mark}})
        moved = await self.store.set_crawl_state(
            crawl_id,
            ("done", "failed"),
            "running",
            finished_at=None,
            error=None,
            retried_at=utcnow(),
        )
        if not moved:
            _expect(await self.record(crawl_id), crawl_id, (), "retried")
        await self.store.crawls.update_one({"_id": crawl_id}, {"$inc": {"retries_requested": 1}})
        # Its completion jobs run again when it is done again.
        if options.on_complete:
            await self.frontier.redis.delete(
                *(f"pipeline:once:{completion_job_id(crawl_id, name)}" for name in options.on_complete)
            )
        queued = 0
        cursor = self.store.failures.find({"crawl_id": crawl_id, "retrying": mark})
        batch: list[Requeue] = []
        async for failure in cursor:
            batch += _requeue(failure, options)
            if len(batch) >= RETRY_BATCH:
                queued += await self.frontier.requeue(crawl_id, batch)
                batch = []
        queued += await self.frontier.requeue(crawl_id, batch)
        await self.store.failures.delete_many({"crawl_id": crawl_id, "retrying": mark})
        if queued == 0:
            # Nothing was still failed in Redis (the failures were already retried): it is finished again.
            await complete_crawl(self.store, self.frontier, crawl_id, options)
        log.info("crawl %s: %d failed URLs queued again", crawl_id, queued)
        return queued

    async def pause_schedule(self, settings: Settings, name: str) -> None:
        """Ticks of the schedule are skipped (and recorded as such) until it is resumed."""
        if (await self._schedule_state(settings, name)).get("paused"):
            raise InvalidTransition(f"schedule {name!r} is already paused")
        await self.store.db["schedules"].update_one(
            {"_id": name}, {"$set": {"paused": True, "paused_at": utcnow()}}, upsert=True
        )

    async def resume_schedule(self, settings: Settings, name: str) -> None:
        if not (await self._schedule_state(settings, name)).get("paused"):
            raise InvalidTransition(f"schedule {name!r} is not paused")
        await self.store.db["schedules"].update_one({"_id": name}, {"$set": {"paused": False, "paused_at": None}})

    async def _schedule_state(self, settings: Settings, name: str) -> Document:
        if not any(spec.name == name for spec in settings.schedules):
            known = ", ".join(spec.name for spec in settings.schedules) or "none configured"
            raise CrawlNotFound(f"no schedule named {name!r} (known: {known})")
        return await self.store.db["schedules"].find_one({"_id": name}) or {}


def _expect(record: Document, crawl_id: str, states: tuple[str, ...], action: str) -> None:
    state = record.get("state", "unknown")
    if state in states:
        return
    hint = {
        "paused": "only a running crawl can be paused",
        "resumed": "only a paused crawl can be resumed",
        "cancelled": "only a running or paused crawl can be cancelled",
        "retried": "only a finished (done or failed) crawl can be retried",
    }[action]
    raise InvalidTransition(f"crawl {crawl_id} is {state}: {hint}")


def _requeue(failure: Document, options: CrawlOptions) -> list[Requeue]:
    """What a failure queues again: its URL as it was queued (a list page, a sitemap, a page).

    A list page the crawl kept failed as a page (`kept_list`): both come back, the page kept by
    its list job again. The robots.txt read for its sitemaps is a sitemap of its own job.
    """
    kind: Kind = "list" if failure.get("kind") == "list" else "page"
    if failure.get("kind") == "sitemap":
        kind = "sitemap"
    depth: Any = failure.get("depth")
    if not isinstance(depth, int):
        depth = 1 if kind == "page" else 0
    url, fetched = failure["url"], failure.get("status") is not None
    if failure.get("kept_list"):
        return [
            Requeue(Discovery(url, "list", depth, options.list_job), fetched=False),
            Requeue(Discovery(url, "page", depth, kept_by_list=True), fetched=fetched),
        ]
    if kind == "sitemap":
        robots = options.robots_sitemaps and url == normalise_url("/robots.txt", options.start_url)
        function = ROBOTS_SITEMAPS if robots else SITEMAP
    else:
        function = options.list_job if kind == "list" else options.item_job
    return [Requeue(Discovery(url, kind, depth, function), fetched=fetched)]


async def sweep_forever(control: CrawlControl, interval: float = SWEEP_INTERVAL_S) -> None:
    """A worker's pass over the crawls being cancelled, every few seconds."""
    while True:
        await asyncio.sleep(interval)
        try:
            await control.sweep()
        except (PyMongoError, RedisError) as exc:
            log.warning("sweep of cancelled crawls failed, will try again: %s", exc)
