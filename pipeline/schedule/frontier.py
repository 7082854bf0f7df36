"""The schedule stage: which URLs a crawl has seen, what is still pending, and the queue.

A crawl's state lives in Redis: its seen-set (each URL's state: queued, parked, stored, failed
or cancelled) and a `stats` hash (counters). The seen-set keeps a 12-byte digest of each URL,
not the URL, in small hashes ("buckets") that Redis stores in its compact encoding and that
split as the crawl grows (linear hashing, see `lua/register.lua`), so a crawl costs about 20
bytes of Redis per URL, whatever its size (bench/RESULTS.md). Discovery is one Lua script per
page: it drops URLs the crawl has already seen, applies `max_pages`, writes the arq jobs for the new ones and bumps the
counters, atomically and in one round trip however many links the page carried. Because dedup
and enqueue happen in the same step, a worker that dies between them cannot lose a URL.

Backpressure: a crawl keeps at most `max_queued` jobs in Redis. URLs discovered past that are
parked in a MongoDB backlog (`pipeline.backlog`) and queued again as the workers drain the
queue, so a crawl of millions of URLs never floods Redis.

Finishing a URL is a third script that moves it from queued to stored/failed exactly once, so
counters stay exact however often a job is retried or re-run after a crash. The call that settles
a crawl's last URL closes it: the scripts then queue nothing more for it.

Steering a crawl (`pipeline.crawl.control`) has scripts of its own here: pausing shifts its queued
jobs far into the future (`shift.lua`), cancelling settles its unsettled URLs as cancelled
(`cancel.lua`), a retry queues its failed URLs again (`requeue.lua`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.connections import read_script
from pipeline.urls import url_digest
from pipeline.worker.queue import (
    ABORT_SET,
    HELD_CRAWLS,
    IN_PROGRESS_KEY_PREFIX,
    JOB_EXPIRES_MS,
    JOB_KEY_PREFIX,
    RETRY_KEY_PREFIX,
    in_progress_key,
    job_key,
    job_record,
    retry_key,
)

log = logging.getLogger("pipeline.frontier")

# A child page, a list page (walked for its links and pagination) or a sitemap (read for its
# pages); list pages and sitemaps are counted together as `lists`.
Kind = Literal["page", "list", "sitemap"]
CRAWL_KEY_TTL_S = 7 * 24 * 3600
FETCH_PAGE = "fetch_page"
HOST_LIMITS_KEY = "pipeline:host_limits"
SENT_CACHE_CRAWLS = 8
SENT_CACHE_PER_CRAWL = 200_000
CRAWL_LIST = "crawl"
# Added to the due time of a paused crawl's jobs (ms): far beyond any real due time, yet exact
# in a sorted set's double score. Stats field `paused` holds it while the crawl is paused.
PAUSE_SHIFT_MS = 10**15
# Fields of the stats hash that steer the crawl rather than count anything.
CONTROL_FIELDS = ("paused", "closed")
CONTROL_BATCH = 500
SITEMAP = "sitemap"
ROBOTS_SITEMAPS = "robots_sitemaps"
_JOB_PREFIX = {"page": "p", "list": "l", "sitemap": "s"}
# A member is the URL's digest (the one its job id is made of), then a mark for what it is.
_MEMBER_MARK = {"page": b"", "list": b"L", "sitemap": b"S"}
_MARK_KIND: dict[bytes, Kind] = {b"L": "list", b"S": "sitemap"}
# Fields of the stats hash that say how the seen-set's buckets have grown (see register.lua).
SEEN_LAYOUT = ("seen_level", "seen_split", "seen_refreshed")

_REGISTER = read_script("pipeline.schedule", "seen_buckets.lua", "register.lua")
_PROMOTE = read_script("pipeline.schedule", "seen_buckets.lua", "promote.lua")
_FINISH = read_script("pipeline.schedule", "seen_buckets.lua", "finish.lua")
_SEEN_STATE = read_script("pipeline.schedule", "seen_buckets.lua", "seen_state.lua")
_ENQUEUE_ONCE = read_script("pipeline.schedule", "enqueue_once.lua")
_SHIFT = read_script("pipeline.schedule", "shift.lua")
_CANCEL = read_script("pipeline.schedule", "seen_buckets.lua", "cancel.lua")
_REQUEUE = read_script("pipeline.schedule", "seen_buckets.lua", "requeue.lua")


@dataclass(frozen=True)
class Discovery:
    """A URL found by a crawl, to be fetched as a child page or walked as a list page.

    `function` is the job that will handle it (its pipeline's list or item job); `extra`, if
    given, is passed to that job as a last argument (e.g. the validators of a conditional GET).
    `kept_by_list` marks a page that the list job of the same URL fetches and stores: it is
    counted and deduplicated like any page, but has no job of its own.
    """

    url: str
    kind: Kind
    depth: int
    function: str = ""
    extra: dict[str, Any] | None = None
    kept_by_list: bool = False

    @property
    def job_function(self) -> str:
        return self.function or (FETCH_PAGE if self.kind == "page" else CRAWL_LIST)


@dataclass(frozen=True)
class RegisterResult:
    new_pages: int
    new_lists: int
    capped: int
    parked: list[Discovery]


@dataclass(frozen=True)
class Settled:
    """What `Frontier.finish` learnt: whether this call settled the URL, and the crawl's state."""

    changed: bool
    pending: int
    queued: int
    waiting: int
    retired: bool = False  # the job left the queue in the same step (see `Frontier.finish`)


def job_id(crawl_id: str, kind: Kind, url: str) -> str:
    """Deterministic: the same URL in the same crawl is always the same job."""
    return f"{_JOB_PREFIX[kind]}:{crawl_id}:{url_digest(url)}"


def _member(kind: Kind, url: str) -> bytes:
    """The seen-set's key for a URL: the digest its job id is made of (12 bytes), marked after it
    for a list page or a sitemap. List pages, sitemaps and child pages are tracked apart: a list
    page that is also linked as a child must still be walked for pagination."""
    return bytes.fromhex(url_digest(url)) + _MEMBER_MARK[kind]


def _member_kind(member: bytes) -> tuple[Kind, str]:
    """The kind of a seen-set member, and the digest its job id ends with."""
    return _MARK_KIND.get(member[12:], "page"), member[:12].hex()


@dataclass(frozen=True)
class Requeue:
    """A failed URL to queue again: what it was, and whether its failure counted as fetched."""

    item: Discovery
    fetched: bool


def _payload(crawl_id: str, item: Discovery, now_ms: int) -> bytes:
    """The job record of `item`, written by our scripts exactly as arq would write it (none for a
    page its list job keeps: the script then only counts it)."""
    if item.kept_by_list:
        return b""
    args: list[Any] = [crawl_id, item.url, item.depth]
    if item.extra is not None:
        args.append(item.extra)
    return job_record(item.job_function, args, now_ms)


class Frontier:
    """Per-crawl bookkeeping in Redis, shared by every worker and the API."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._register = redis.register_script(_REGISTER)
        self._promote = redis.register_script(_PROMOTE)
        self._finish = redis.register_script(_FINISH)
        self._seen_state = redis.register_script(_SEEN_STATE)
        self._enqueue_once = redis.register_script(_ENQUEUE_ONCE)
        self._shift = redis.register_script(_SHIFT)
        self._cancel = redis.register_script(_CANCEL)
        self._requeue = redis.register_script(_REQUEUE)
        self._sent: OrderedDict[str, set[bytes]] = OrderedDict()

    @staticmethod
    def _keys(crawl_id: str) -> tuple[str, str, str]:
        base = f"pipeline:crawl:{crawl_id}"
        return f"{base}:seen:", f"{base}:stats", f"{base}:meta"

    async def create(self, crawl_id: str, options: Mapping[str, Any]) -> None:
        _, stats, meta = self._keys(crawl_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                stats,
                mapping={
                    "pending": 0,
                    "discovered": 0,
                    "queued": 0,
                    "waiting": 0,
                    "max_queued": int(options.get("max_queued", 0)),
                },
            )
            pipe.set(meta, json.dumps(dict(options)), ex=CRAWL_KEY_TTL_S)
            pipe.expire(stats, CRAWL_KEY_TTL_S)
            await pipe.execute()

    async def options(self, crawl_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._keys(crawl_id)[2])
        return json.loads(raw) if raw else None

    async def register(
        self,
        crawl_id: str,
        found: Iterable[Discovery],
        *,
        max_pages: int,
        max_queued: int,
        skipped_invalid: int = 0,
        skipped_scope: int = 0,
    ) -> RegisterResult:
        """Queue the URLs in `found` this crawl has not seen yet, in one round trip.

        Past `max_queued` jobs of this crawl in Redis, new URLs are parked instead: the result
        lists them, and the caller must write them to the backlog (`pipeline.backlog`).
        """
        seen, stats, _ = self._keys(crawl_id)
        now_ms = int(time.time() * 1000)
        args: list[Any] = [now_ms, JOB_EXPIRES_MS, max_pages, CRAWL_KEY_TTL_S, JOB_KEY_PREFIX]
        args += [skipped_invalid, skipped_scope, max_queued]
        candidates: dict[bytes, Discovery] = {}
        sent = self._sent_members(crawl_id)
        for item in found:
            member = _member(item.kind, item.url)
            if member in candidates or member in sent:
                continue
            candidates[member] = item
            args += [member, item.kind, job_id(crawl_id, item.kind, item.url), _payload(crawl_id, item, now_ms)]
        if not candidates and not (skipped_invalid or skipped_scope):
            return RegisterResult(0, 0, 0, [])
        new_pages, new_lists, capped, parked = await self._register(keys=[seen, stats, self.queue_name], args=args)
        parked_members = {bytes(m) for m in parked}
        # Parked URLs are not remembered: a retried job must send them again so they reach the backlog.
        sent.update(m for m in candidates if m not in parked_members)
        if len(sent) > SENT_CACHE_PER_CRAWL:
            sent.clear()
        return RegisterResult(int(new_pages), int(new_lists), int(capped), [candidates[m] for m in parked_members])

    def _sent_members(self, crawl_id: str) -> set[bytes]:
        """Members this process already registered for the crawl: real sites repeat their links
        on every page, and re-sending each one to Redis costs a payload and a lookup there."""
        sent = self._sent.get(crawl_id)
        if sent is None:
            sent = self._sent[crawl_id] = set()
            if len(self._sent) > SENT_CACHE_CRAWLS:
                self._sent.popitem(last=False)
        else:
            self._sent.move_to_end(crawl_id)
        return sent

    async def promote(self, crawl_id: str, items: Iterable[Discovery], *, max_queued: int) -> tuple[int, int]:
        """Queue parked URLs again, in order, up to the bound.

        Returns how many moved and how many of `items` were dealt with (moved, or found already
        queued); the rest did not fit.
        """
        seen, stats, _ = self._keys(crawl_id)
        now_ms = int(time.time() * 1000)
        args: list[Any] = [now_ms, JOB_EXPIRES_MS, JOB_KEY_PREFIX, max_queued]
        for item in items:
            args += [
                _member(item.kind, item.url),
                job_id(crawl_id, item.kind, item.url),
                _payload(crawl_id, item, now_ms),
            ]
        if len(args) == 4:
            return 0, 0
        promoted, examined = await self._promote(keys=[seen, stats, self.queue_name], args=args)
        return int(promoted), int(examined)

    async def finish(
        self,
        crawl_id: str,
        kind: Kind,
        url: str,
        *,
        stored: bool,
        fetched: bool,
        retries: int,
        unchanged: bool = False,
        cancelled: bool = False,
        skipped_robots: bool = False,
        retire: str | None = None,
    ) -> Settled:
        """Record a URL's final outcome once: stored (or unchanged), failed, or skipped by robots.txt.

        `fetched` counts child pages that got a final HTTP response (stored, or failed with a status).
        `cancelled` settles a URL whose crawl was cancelled while its job ran (see `settle`).

        `retire` (the running job's id) also takes the job out of arq's queue in the same step,
        as arq's `finish_job` would after the function returns, saving that round trip. It is
        done only when nothing else is left for the job to do: the crawl has other URLs pending
        (so this job does not complete it) and no backlog to refill. Otherwise the job stays
        queued until arq finishes it, so a worker dying before the follow-up runs it again.
        """
        seen, stats, _ = self._keys(crawl_id)
        if cancelled:
            counter, state = ("cancelled" if kind == "page" else "lists_cancelled"), "c"
        elif skipped_robots:
            counter, state = ("skipped_robots" if kind == "page" else "lists_skipped_robots"), "r"
        elif kind == "page":
            counter, state = ("unchanged" if unchanged else "stored") if stored else "failed", "s" if stored else "f"
        else:  # list pages and sitemaps
            counter, state = "lists_done" if stored else "lists_failed", "s" if stored else "f"
        keys = [seen, stats]
        args: list[Any] = [_member(kind, url), counter, state, int(fetched and kind == "page"), retries]
        if retire is not None:
            keys += [job_key(retire), retry_key(retire), in_progress_key(retire), self.queue_name, ABORT_SET]
            args.append(retire)
        changed, pending, queued, waiting, retired = await self._finish(keys=keys, args=args)
        return Settled(bool(changed), int(pending), int(queued), int(waiting), bool(retired))

    async def page_state(self, crawl_id: str, url: str) -> str | None:
        """The state of `url` as a page of the crawl: 'o' for a page its list job keeps and has
        not settled yet (see `Discovery`), 'q', 'w', 's', 'f', or None if it is not one."""
        seen, stats, _ = self._keys(crawl_id)
        state = await self._seen_state(keys=[seen, stats], args=[_member("page", url)])
        return None if state is None else _text(state)

    async def counters(self, crawl_id: str) -> dict[str, int]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self._keys(crawl_id)[1])  # type: ignore[misc]
        return {_text(k): int(v) for k, v in raw.items() if _text(k) not in SEEN_LAYOUT}

    async def known(self, crawl_id: str) -> bool:
        """Whether Redis still holds the crawl's state (it expires a week after the last change)."""
        return bool(await self.redis.exists(self._keys(crawl_id)[1]))

    async def closed(self, crawl_id: str) -> bool:
        """Whether the crawl takes no more work: done, or cancelled (or its state has expired)."""
        closed, pending = await self.redis.hmget(self._keys(crawl_id)[1], ["closed", "pending"])  # type: ignore[misc]
        return pending is None or closed == b"1"

    async def hold(self, crawl_id: str, why: Literal["paused", "cancelling"]) -> None:
        """No worker starts the crawl's jobs from now on. Pausing also shifts the jobs it queues
        from now on far into the future; cancelling closes it (it queues nothing more)."""
        _, stats, _ = self._keys(crawl_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(HELD_CRAWLS, crawl_id, why)
            if why == "paused":
                pipe.hset(stats, "paused", str(PAUSE_SHIFT_MS))
            else:
                pipe.hset(stats, "closed", "1")
            await pipe.execute()

    async def release(self, crawl_id: str) -> None:
        """Workers may start the crawl's jobs again; the jobs it queues are due at once."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys(crawl_id)[1], "paused")
            pipe.hdel(HELD_CRAWLS, crawl_id)
            await pipe.execute()

    async def held(self) -> dict[str, str]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(HELD_CRAWLS)  # type: ignore[misc]
        return {_text(k): _text(v) for k, v in raw.items()}

    async def queued_jobs(self, crawl_id: str) -> list[str]:
        """The ids of the crawl's jobs in the queue (a scan of the queue: for rare calls only)."""
        pattern = f"*:{_glob_escape(crawl_id)}:*"
        return [_text(member) async for member, _ in self.redis.zscan_iter(self.queue_name, match=pattern, count=1000)]

    async def shift_jobs(self, crawl_id: str, *, pause: bool) -> int:
        """Move the crawl's queued jobs far into the future (pause) or back (resume); returns how many moved."""
        job_ids = await self.queued_jobs(crawl_id)
        shift = PAUSE_SHIFT_MS if pause else -PAUSE_SHIFT_MS
        moved = 0
        for start in range(0, len(job_ids), CONTROL_BATCH):
            moved += int(
                await self._shift(keys=[self.queue_name], args=[shift, *job_ids[start : start + CONTROL_BATCH]])
            )
        return moved

    async def running_jobs(self, crawl_id: str) -> int:
        """How many of the crawl's jobs are running now (their in-progress key is set)."""
        job_ids = await self.queued_jobs(crawl_id)
        if not job_ids:
            return 0
        return int(await self.redis.exists(*(in_progress_key(job_id) for job_id in job_ids)))

    async def cancel_unsettled(self, crawl_id: str) -> tuple[int, int]:
        """Settle as cancelled every queued or parked URL of the crawl whose job is not running.

        Returns how many were cancelled and how many were left to their running jobs. The crawl
        must be held first (`hold(crawl_id, "cancelling")`), so that no job starts meanwhile.
        """
        seen, stats, _ = self._keys(crawl_id)
        cancelled = running = 0
        batch: list[Any] = []

        async def send() -> None:
            nonlocal cancelled, running
            keys = [seen, stats, self.queue_name]
            args = [JOB_KEY_PREFIX, IN_PROGRESS_KEY_PREFIX, RETRY_KEY_PREFIX, *batch]
            done, busy = await self._cancel(keys=keys, args=args)
            cancelled, running = cancelled + int(done), running + int(busy)
            batch.clear()

        async for bucket in self.redis.scan_iter(match=_glob_escape(seen) + "*", count=1000):
            async for member, state in self.redis.hscan_iter(bucket, count=1000):
                if state not in (b"q", b"w", b"o"):
                    continue
                kind, digest = _member_kind(bytes(member))
                # A page its list job keeps has no job of its own: it goes with its list job's.
                job_kind = "list" if state == b"o" else kind
                batch += [member, "cancelled" if kind == "page" else "lists_cancelled"]
                batch.append(f"{_JOB_PREFIX[job_kind]}:{crawl_id}:{digest}")
                if len(batch) >= CONTROL_BATCH * 3:
                    await send()
        if batch:
            await send()
        return cancelled, running

    async def requeue(self, crawl_id: str, failed: Iterable[Requeue]) -> int:
        """Queue failed URLs again as fresh attempts, reopening the crawl; returns how many moved."""
        seen, stats, meta = self._keys(crawl_id)
        queued = 0
        batch: list[Any] = []
        now_ms = int(time.time() * 1000)

        async def send() -> None:
            nonlocal queued
            args = [now_ms, JOB_EXPIRES_MS, JOB_KEY_PREFIX, RETRY_KEY_PREFIX, CRAWL_KEY_TTL_S, *batch]
            queued += int(await self._requeue(keys=[seen, stats, self.queue_name], args=args))
            batch.clear()

        for entry in failed:
            item = entry.item
            counter = "failed" if item.kind == "page" else "lists_failed"  # list pages and sitemaps
            batch += [_member(item.kind, item.url), counter, int(entry.fetched and item.kind == "page")]
            batch += [job_id(crawl_id, item.kind, item.url), _payload(crawl_id, item, now_ms)]
            if len(batch) >= CONTROL_BATCH * 5:
                await send()
        if batch:
            await send()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (stats, meta):
                pipe.expire(key, CRAWL_KEY_TTL_S)
            await pipe.execute()
        self._sent.pop(crawl_id, None)  # links its pages send again must reach the script again
        return queued

    async def enqueue_once(self, function: str, args: list[Any], job_id: str, queue: str | None = None) -> bool:
        """Queue `function(ctx, *args)` under `job_id` unless that id was ever queued before."""
        now_ms = int(time.time() * 1000)
        payload = job_record(function, args, now_ms)
        keys = [job_key(job_id), queue or self.queue_name, f"pipeline:once:{job_id}"]
        queued = await self._enqueue_once(keys=keys, args=[now_ms, JOB_EXPIRES_MS, payload, CRAWL_KEY_TTL_S, job_id])
        return bool(queued)

    async def departed(self, counts: Mapping[str, int]) -> None:
        """`counts[crawl_id]` of the crawl's jobs have left the queue for good."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for crawl_id, count in counts.items():
                pipe.hincrby(self._keys(crawl_id)[1], "queued", -count)
            await pipe.execute()

    async def publish_host_limits(self, limits: Mapping[str, int]) -> None:
        """Current per-host concurrency limits, as last reported by any worker (kept a minute)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(HOST_LIMITS_KEY, mapping=dict(limits))
            pipe.expire(HOST_LIMITS_KEY, 60)
            await pipe.execute()

    async def host_limit(self, host: str) -> int | None:
        raw = await self.redis.hget(HOST_LIMITS_KEY, host)  # type: ignore[misc]
        return int(raw) if raw is not None else None

    async def try_lock(self, name: str, seconds: float) -> bool:
        """A short-lived lock (SET NX PX), for work one worker at a time should do."""
        return bool(await self.redis.set(f"pipeline:lock:{name}", b"1", nx=True, px=int(seconds * 1000)))

    async def unlock(self, name: str) -> None:
        await self.redis.delete(f"pipeline:lock:{name}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Departures:
    """Counts jobs out of the queue once arq has removed them, batched per event-loop turn.

    A job's queue entry outlives its work by a moment (arq deletes it after the function
    returns); decrementing `queued` only then keeps the backpressure bound exact.
    """

    def __init__(self, frontier: Frontier) -> None:
        self._frontier = frontier
        self._counts: dict[str, int] = {}
        self._flush: asyncio.Task[None] | None = None

    def job_left(self, crawl_id: str) -> None:
        self._counts[crawl_id] = self._counts.get(crawl_id, 0) + 1
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        await asyncio.sleep(0)  # other jobs ending in this turn join the batch
        counts, self._counts = self._counts, {}
        self._flush = None
        try:
            await self._frontier.departed(counts)
        except RedisError as exc:
            # The count drifts up by a few; the bound gets a little stricter, nothing is lost.
            log.warning("could not record %d finished jobs: %s", sum(counts.values()), exc)

    async def drain(self) -> None:
        while self._flush is not None:
            await self._flush
