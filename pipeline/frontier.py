"""The schedule stage: which URLs a crawl has seen, what is still pending, and the queue.

A crawl's state lives in two Redis hashes: `urls` (each URL and its state: queued, stored or
failed) and `stats` (counters). Discovery is one Lua script per page: it drops URLs the crawl
has already seen, applies `max_pages`, writes the arq jobs for the new ones and bumps the
counters, atomically and in one round trip however many links the page carried. Because dedup
and enqueue happen in the same step, a worker that dies between them cannot lose a URL.

Finishing a URL is a second script that moves it from queued to stored/failed exactly once, so
counters stay exact however often a job is retried or re-run after a crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from arq.constants import job_key_prefix
from redis.asyncio import Redis

from pipeline.serialization import serialize
from pipeline.urls import url_digest

Kind = Literal["page", "list"]
CRAWL_KEY_TTL_S = 7 * 24 * 3600
JOB_EXPIRES_MS = 24 * 3600 * 1000
FETCH_PAGE = "fetch_page"
CRAWL_LIST = "crawl"

_REGISTER = """
local urls, stats, queue = KEYS[1], KEYS[2], KEYS[3]
local now, expires, max_pages, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local skipped_invalid, skipped_scope = tonumber(ARGV[6]), tonumber(ARGV[7])
local discovered = tonumber(redis.call('HGET', stats, 'discovered') or '0')
local new_pages, new_lists, capped = 0, 0, 0
for i = 8, #ARGV, 4 do
  local member, kind, job_id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HEXISTS', urls, member) == 0 then
    if kind == 'page' and discovered >= max_pages then
      capped = capped + 1
    else
      redis.call('HSET', urls, member, 'q')
      redis.call('PSETEX', prefix .. job_id, expires, payload)
      redis.call('ZADD', queue, now, job_id)
      if kind == 'page' then
        discovered = discovered + 1
        new_pages = new_pages + 1
      else
        new_lists = new_lists + 1
      end
    end
  end
end
if new_pages > 0 then redis.call('HINCRBY', stats, 'discovered', new_pages) end
if new_lists > 0 then redis.call('HINCRBY', stats, 'lists', new_lists) end
if capped > 0 then redis.call('HINCRBY', stats, 'capped', capped) end
if skipped_invalid > 0 then redis.call('HINCRBY', stats, 'skipped_invalid', skipped_invalid) end
if skipped_scope > 0 then redis.call('HINCRBY', stats, 'skipped_scope', skipped_scope) end
if new_pages + new_lists > 0 then redis.call('HINCRBY', stats, 'pending', new_pages + new_lists) end
redis.call('EXPIRE', urls, ttl)
redis.call('EXPIRE', stats, ttl)
return {new_pages, new_lists, capped}
"""

_FINISH = """
local urls, stats = KEYS[1], KEYS[2]
local member, counter, state, fetched, retries = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', urls, member) ~= 'q' then
  return {0, tonumber(redis.call('HGET', stats, 'pending') or '-1')}
end
redis.call('HSET', urls, member, state)
redis.call('HINCRBY', stats, counter, 1)
if fetched ~= '0' then redis.call('HINCRBY', stats, 'fetched', 1) end
if retries ~= '0' then redis.call('HINCRBY', stats, 'retries', retries) end
return {1, redis.call('HINCRBY', stats, 'pending', -1)}
"""


@dataclass(frozen=True)
class Discovery:
    """A URL found by a crawl, to be fetched as a child page or walked as a list page."""

    url: str
    kind: Kind
    depth: int


@dataclass(frozen=True)
class RegisterResult:
    new_pages: int
    new_lists: int
    capped: int


def job_id(crawl_id: str, kind: Kind, url: str) -> str:
    """Deterministic: the same URL in the same crawl is always the same job."""
    return f"{'p' if kind == 'page' else 'l'}:{crawl_id}:{url_digest(url)}"


def _member(kind: Kind, url: str) -> str:
    # List pages and child pages are tracked apart: a list page that is also linked as a child
    # must still be walked for pagination.
    return url if kind == "page" else "L|" + url


class Frontier:
    """Per-crawl bookkeeping in Redis, shared by every worker and the API."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self._redis = redis
        self.queue_name = queue_name
        self._register = redis.register_script(_REGISTER)
        self._finish = redis.register_script(_FINISH)

    @staticmethod
    def _keys(crawl_id: str) -> tuple[str, str, str]:
        base = f"pipeline:crawl:{crawl_id}"
        return f"{base}:urls", f"{base}:stats", f"{base}:meta"

    async def create(self, crawl_id: str, options: Mapping[str, Any]) -> None:
        _, stats, meta = self._keys(crawl_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(stats, mapping={"pending": 0, "discovered": 0, "started_ms": int(time.time() * 1000)})
            pipe.set(meta, json.dumps(dict(options)), ex=CRAWL_KEY_TTL_S)
            pipe.expire(stats, CRAWL_KEY_TTL_S)
            await pipe.execute()

    async def options(self, crawl_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self._keys(crawl_id)[2])
        return json.loads(raw) if raw else None

    async def register(
        self,
        crawl_id: str,
        found: Iterable[Discovery],
        max_pages: int,
        *,
        skipped_invalid: int = 0,
        skipped_scope: int = 0,
    ) -> RegisterResult:
        """Queue every URL in `found` this crawl has not seen yet, in one round trip."""
        urls, stats, _ = self._keys(crawl_id)
        now_ms = int(time.time() * 1000)
        args: list[Any] = [
            now_ms,
            JOB_EXPIRES_MS,
            max_pages,
            CRAWL_KEY_TTL_S,
            job_key_prefix,
            skipped_invalid,
            skipped_scope,
        ]
        unique: set[str] = set()
        for item in found:
            member = _member(item.kind, item.url)
            if member in unique:
                continue
            unique.add(member)
            function = FETCH_PAGE if item.kind == "page" else CRAWL_LIST
            payload = serialize(
                {"t": None, "f": function, "a": [crawl_id, item.url, item.depth], "k": {}, "et": now_ms}
            )
            args += [member, item.kind, job_id(crawl_id, item.kind, item.url), payload]
        if len(args) == 7 and not (skipped_invalid or skipped_scope):
            return RegisterResult(0, 0, 0)
        new_pages, new_lists, capped = await self._register(keys=[urls, stats, self.queue_name], args=args)
        return RegisterResult(int(new_pages), int(new_lists), int(capped))

    async def finish(
        self, crawl_id: str, kind: Kind, url: str, *, stored: bool, fetched: bool, retries: int
    ) -> tuple[bool, int]:
        """Record a URL's final outcome once; returns (whether this call recorded it, URLs still pending).

        `fetched` counts child pages that got a final HTTP response (stored, or failed with a status).
        """
        urls, stats, _ = self._keys(crawl_id)
        if kind == "page":
            counter = "stored" if stored else "failed"
        else:
            counter = "lists_done" if stored else "lists_failed"
        changed, pending = await self._finish(
            keys=[urls, stats],
            args=[_member(kind, url), counter, "s" if stored else "f", int(fetched and kind == "page"), retries],
        )
        return bool(changed), int(pending)

    async def counters(self, crawl_id: str) -> dict[str, int]:
        raw: dict[bytes, bytes] = await self._redis.hgetall(self._keys(crawl_id)[1])  # type: ignore[misc]
        return {_text(k): int(v) for k, v in raw.items()}

    async def queued_jobs(self) -> int:
        return int(await self._redis.zcard(self.queue_name))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
