"""robots.txt (RFC 9309): read once per origin for the whole fleet, checked before every request.

Protego (the parser Scrapy uses) applies the rules: the longest matching rule wins, `Allow` over
`Disallow` on a tie, `*` and `$` wildcards, groups chosen by the product token of
`fetch.user_agent` ("pipeline" for "pipeline/0.1"), else the `*` group. A crawl with a
`user_agent` of its own is matched with that one's token, against the same record: robots.txt
is read once per origin for every crawl (with the request settings of the crawl that needed it
first), and each crawl's token picks its group from it.

What a fetch of `/robots.txt` means (RFC 9309 section 2.3.1):

- 2xx: its rules apply (the first 512 KiB are parsed, as the RFC's least parsing limit);
- 4xx, or more redirects than `fetch.max_redirects`: there are no rules, everything is allowed;
- 5xx, 429, a timeout or a connection error: the origin is unreachable, so nothing may be
  fetched from it until its robots.txt can be read. Its URLs wait (their jobs are deferred
  without counting a try, `pipeline.download.deferral`) and robots.txt is asked again after a
  backoff; once it has been unreadable for `fetch.robots_wait` seconds, each URL that comes up is
  recorded as failed with that reason. Other origins carry on.

The record is fetched by one worker at a time (a Redis lock), through the worker's `Fetcher` (so
through the SSRF guard, the size cap and the host's limits) and kept in Redis for
`fetch.robots_ttl` seconds for every worker; each worker keeps the parsed form of the origins it
met last in a bounded map. `Crawl-delay` (capped at `MAX_CRAWL_DELAY_S`) becomes the host's least
interval between request starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from protego import Protego
from redis.asyncio import Redis

from pipeline.connections import redact
from pipeline.download import deferral
from pipeline.errors import DisallowedByRobots, FetchError
from pipeline.settings import FetchSettings

if TYPE_CHECKING:
    from pipeline.download.response import Response

__all__ = ["MAX_CRAWL_DELAY_S", "Robots", "RobotsCache", "RobotsRecord", "origin_of", "product_token"]

log = logging.getLogger("pipeline.robots")

PARSE_LIMIT = 512 * 1024
MAX_CRAWL_DELAY_S = 60.0
LOCAL_ORIGINS = 10_000
# While another worker reads an origin's robots.txt, the others look for its record this often.
LOCK_POLL_S = 0.05
# Protego parses a typical robots.txt (under 1 KB) in about a millisecond, but a large one takes
# hundreds (bench/RESULTS.md): past this size it is parsed in a thread, so the event loop keeps
# turning between the interpreter's switches instead of stopping for the whole parse.
PARSE_INLINE_BYTES = 32 * 1024

Kind = Literal["rules", "allow", "unreachable"]
Fetch = Callable[[str], Awaitable["Response"]]


def product_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: "pipeline" in "pipeline/0.1 (+url)"."""
    token = user_agent.strip().split("/", 1)[0].split(None, 1)
    return token[0].lower() if token else ""


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a normalised URL: whose robots.txt applies to it."""
    slash = url.find("/", url.find("//") + 2)
    return url if slash < 0 else url[:slash]


def robots_key(origin: str) -> str:
    return f"pipeline:robots:{origin}"


@dataclass(frozen=True)
class RobotsRecord:
    """What one read of an origin's robots.txt found, as every worker shares it."""

    kind: Kind
    body: str = ""
    status: int | None = None
    reason: str = ""
    fetched_at: float = 0.0  # epoch seconds
    fresh_until: float = 0.0  # read it again after this (epoch seconds)
    since: float = 0.0  # unreachable: since when (epoch seconds)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> RobotsRecord:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in ("kind", "body", "status", "reason", "fetched_at", "fresh_until", "since")})


class Robots:
    """One origin's robots.txt, parsed, as requests are checked against it."""

    __slots__ = ("_delays", "_parser", "_token", "crawl_delay", "local_until", "record")

    def __init__(self, record: RobotsRecord, token: str, local_until: float) -> None:
        self.record = record
        self._token = token
        self._parser = Protego.parse(record.body) if record.kind == "rules" else None
        self.crawl_delay = self._crawl_delay(token)
        self._delays: dict[str, float] = {token: self.crawl_delay}
        self.local_until = local_until

    def _crawl_delay(self, token: str) -> float:
        delay = self._parser.crawl_delay(token) if self._parser is not None else None
        return min(MAX_CRAWL_DELAY_S, max(0.0, float(delay))) if delay else 0.0

    def delay_for(self, token: str | None) -> float:
        """The Crawl-delay of the group `token` (None: the worker's own) falls in."""
        if token is None:
            return self.crawl_delay
        delay = self._delays.get(token)
        if delay is None:
            delay = self._delays[token] = self._crawl_delay(token)
        return delay

    def allows(self, url: str, token: str | None = None) -> bool:
        return self._parser is None or self._parser.can_fetch(url, token or self._token)

    @property
    def sitemaps(self) -> list[str]:
        return list(self._parser.sitemaps) if self._parser is not None else []


class RobotsCache:
    """Every origin's robots.txt for one worker: its own parsed copies, the fleet's records in Redis."""

    def __init__(self, redis: Redis, settings: FetchSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._settings = settings
        self._token = product_token(settings.user_agent)
        self._clock = clock
        self._local: OrderedDict[str, Robots] = OrderedDict()
        self._loading: dict[str, asyncio.Task[Robots]] = {}
        self._lock_s = settings.connect_timeout + settings.read_timeout + 5
        self._owner = uuid.uuid4().hex
        self.fetches = 0

    async def check(self, url: str, fetch: Fetch, token: str | None = None) -> float:
        """The crawl delay of `url`'s origin (0 if none), if robots.txt allows fetching `url`.

        `token` is the product token of the crawl's own User-Agent (None: the worker's).

        Raises `DisallowedByRobots` if it does not; while the origin's robots.txt cannot be read,
        `HostBusy` (the job may still be deferred), a retryable `FetchError` (it may not), or,
        after `fetch.robots_wait`, a permanent `FetchError` saying so.
        """
        robots = await self.robots(url, fetch)
        record = robots.record
        if record.kind == "unreachable":
            now = self._clock()
            origin = origin_of(url)
            waited = now - record.since
            if waited >= self._settings.robots_wait:
                raise FetchError(
                    f"robots.txt of {origin} unreadable for {waited:.0f}s ({record.reason}); not fetched",
                    retryable=False,
                )
            again = max(0.0, record.fresh_until - now)
            reason = f"robots.txt of {origin} unreadable ({record.reason})"
            if deferral.may_defer():
                raise deferral.busy(deferral.defer_delay(again), reason)
            raise FetchError(reason, retryable=True)
        if not robots.allows(url, token):
            raise DisallowedByRobots(url)
        return robots.delay_for(token)

    async def sitemaps(self, url: str, fetch: Fetch) -> list[str]:
        """The `Sitemap:` URLs of the robots.txt of `url`'s origin (read it first if need be).

        While that robots.txt cannot be read this raises as `check` does, rather than answer
        that it names none.
        """
        await self.check(origin_of(url) + "/robots.txt", fetch)  # always allowed; raises if unread
        return (await self.robots(url, fetch)).sitemaps

    async def robots(self, url: str, fetch: Fetch) -> Robots:
        """The parsed robots.txt of `url`'s origin: this worker's copy, the fleet's, or a fresh read."""
        origin = origin_of(url)
        robots = self._local.get(origin)
        if robots is not None and robots.local_until > time.monotonic():
            return robots
        task = self._loading.get(origin)
        if task is None:
            # In a context of its own: the read is shared by every job waiting for it, so it is
            # no job's first request (it must not spend a job's deferral) and must outlive any one.
            task = asyncio.get_running_loop().create_task(self._load(origin, fetch), context=contextvars.Context())
            self._loading[origin] = task
            task.add_done_callback(lambda _: self._loading.pop(origin, None))
        return await asyncio.shield(task)

    async def _load(self, origin: str, fetch: Fetch) -> Robots:
        key = robots_key(origin)
        record = _decode(await self._redis.get(key))
        waited_since = time.monotonic()
        while record is None or record.fresh_until <= self._clock():
            if await self._redis.set(key + ":lock", self._owner, nx=True, px=int(self._lock_s * 1000)):
                try:
                    record = await self._read(origin, fetch, record)
                    await self._redis.set(key, record.to_json(), px=int(self._keep_s(record) * 1000))
                finally:
                    await self._redis.delete(key + ":lock")
                break
            if record is not None and record.kind != "unreachable":
                break  # another worker is reading it again: the copy in hand does meanwhile
            if time.monotonic() - waited_since > self._lock_s:
                record = await self._read(origin, fetch, record)  # the reader died with the lock
                break
            await asyncio.sleep(LOCK_POLL_S)
            record = _decode(await self._redis.get(key)) or record
        # Kept here until the record is due again (a stale one in hand: briefly).
        fresh_for = max(1.0, record.fresh_until - self._clock())
        until = time.monotonic() + fresh_for
        if len(record.body) > PARSE_INLINE_BYTES:
            robots = await asyncio.to_thread(Robots, record, self._token, until)
        else:
            robots = Robots(record, self._token, until)
        self._local[origin] = robots
        self._local.move_to_end(origin)
        if len(self._local) > LOCAL_ORIGINS:
            self._local.popitem(last=False)
        return robots

    def _keep_s(self, record: RobotsRecord) -> float:
        """How long Redis keeps a record: an unreadable one must remember since when it is."""
        if record.kind == "unreachable":
            return max(self._settings.robots_ttl, self._settings.robots_wait + 60)
        return self._settings.robots_ttl

    async def _read(self, origin: str, fetch: Fetch, previous: RobotsRecord | None) -> RobotsRecord:
        """GET `/robots.txt` and classify the answer (see the module docstring)."""
        now = self._clock()
        self.fetches += 1
        fresh = now + self._settings.robots_ttl
        try:
            response = await fetch(origin + "/robots.txt")
        except FetchError as exc:
            if not exc.retryable:
                # A redirect loop or too many hops: "unavailable". A refused address: the pages
                # would be refused the same way, and fail with that reason.
                return RobotsRecord("allow", status=exc.status, reason=exc.reason, fetched_at=now, fresh_until=fresh)
            since = previous.since if previous is not None and previous.kind == "unreachable" else now
            settings = self._settings
            again = min(settings.retry_max_delay, max(settings.retry_base_delay, now - since))
            log.warning("robots.txt of %s unreadable (%s): its URLs wait", redact(origin), exc.reason)
            return RobotsRecord(
                "unreachable",
                status=exc.status,
                reason=exc.reason,
                fetched_at=now,
                fresh_until=now + again,
                since=since,
            )
        if 200 <= response.status < 300:
            body = response.body[:PARSE_LIMIT].decode("utf-8", errors="replace")
            return RobotsRecord("rules", body, response.status, fetched_at=now, fresh_until=fresh)
        return RobotsRecord(
            "allow", status=response.status, reason=f"HTTP {response.status}", fetched_at=now, fresh_until=fresh
        )


def _decode(raw: bytes | None) -> RobotsRecord | None:
    if raw is None:
        return None
    try:
        return RobotsRecord.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: read robots.txt again
