"""Claiming jobs with one script per poll: only due, queued jobs that nobody is running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from pipeline.settings import Settings
from pipeline.worker.claim import Claimer

NOW = 1_800_000_000_000


def unique(settings: Settings, *names: str) -> list[str]:
    # arq's in-progress keys are global, not per queue: job ids must differ between tests.
    return [f"{settings.redis.queue}:{name}" for name in names]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()


async def test_claims_due_queued_jobs_not_in_progress(redis: Redis, settings: Settings) -> None:
    queue = settings.redis.queue
    due, later, running, finished = unique(settings, "due", "later", "running", "finished")
    await redis.zadd(queue, {due: NOW - 5, later: NOW + 1000, running: NOW - 3})
    await redis.set(in_progress_key_prefix + running, b"1", px=60_000)
    claimer = Claimer(redis, queue, claim_ttl_seconds=10)

    claims = await claimer.claim([due, later, running, finished], wanted=10, now_ms=NOW)

    assert [(c.job_id, c.score) for c in claims] == [(due, NOW - 5)]
    ttl = await redis.pttl(in_progress_key_prefix + due)
    assert 9_000 < ttl <= 10_000
    assert not await redis.exists(in_progress_key_prefix + later, in_progress_key_prefix + finished)
    # Claimed once: a second claimer (another worker) gets nothing.
    assert await Claimer(redis, queue, 10).claim([due], wanted=10, now_ms=NOW) == []


async def test_claims_no_more_than_wanted_in_queue_order(redis: Redis, settings: Settings) -> None:
    queue = settings.redis.queue
    ids = unique(settings, *(f"job{i}" for i in range(20)))
    await redis.zadd(queue, {job_id: NOW - 100 + i for i, job_id in enumerate(ids)})
    claimer = Claimer(redis, queue, 10)

    first = await claimer.claim(ids, wanted=3, now_ms=NOW)
    second = await claimer.claim(ids, wanted=30, now_ms=NOW)

    assert [c.job_id for c in first] == ids[:3]
    assert [c.job_id for c in second] == ids[3:]
    assert await claimer.claim(ids, wanted=0, now_ms=NOW) == []


async def test_racing_workers_claim_each_job_exactly_once(redis: Redis, settings: Settings) -> None:
    queue = settings.redis.queue
    ids = unique(settings, *(f"job{i}" for i in range(300)))
    await redis.zadd(queue, dict.fromkeys(ids, NOW - 1))
    claimers = [Claimer(redis, queue, 10) for _ in range(4)]

    rounds = await asyncio.gather(*(c.claim(ids, wanted=100, now_ms=NOW) for c in claimers for _ in range(3)))

    claimed = [claim.job_id for batch in rounds for claim in batch]
    assert sorted(claimed) == sorted(ids)
