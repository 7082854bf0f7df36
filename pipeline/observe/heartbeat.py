"""Workers say they are alive: a small record in Redis every few seconds, and how lively they are.

Each worker keeps one record (`pipeline:worker:<queue>:<id>`, JSON, expiring after a few missed
beats) and its last-seen time in a sorted set per queue (`pipeline:workers:<queue>`), so the
dashboard lists live workers and, for a while, the ones that went quiet. The record carries what
an operator asks first: is it polling, how many jobs it runs, how late its event loop is, where
its metrics are served. One small write per worker every few seconds, nothing per page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.observe.metrics import Recorder

log = logging.getLogger("pipeline.heartbeat")

HEARTBEAT_INTERVAL_S = 5.0
RECORD_TTL_S = 3 * HEARTBEAT_INTERVAL_S
FORGET_AFTER_S = 24 * 3600  # a worker that went quiet is listed (as gone) this long
FIRST_BEAT_S = 1.0
LAG_INTERVAL_S = 0.5
LAG_WINDOW = 10  # samples: the lag reported is the worst of the last few seconds


def workers_key(queue: str) -> str:
    return f"pipeline:workers:{queue}"


def worker_key(queue: str, worker_id: str) -> str:
    return f"pipeline:worker:{queue}:{worker_id}"


@dataclass
class Liveness:
    """What a worker knows about itself; its poll loop and its lag watcher keep it current."""

    last_poll: float = 0.0  # time.monotonic() of the last poll that reached Redis
    jobs_running: int = 0
    loop_lag_s: float = 0.0

    def polling(self, within_s: float) -> bool:
        return self.last_poll > 0 and time.monotonic() - self.last_poll <= within_s


@dataclass
class WorkerCard:
    """The fixed part of a worker's record."""

    role: str
    queue: str
    max_jobs: int
    id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    metrics: str | None = None  # host:port of its /metrics and /health, when served


async def heartbeat_forever(
    redis: Redis, card: WorkerCard, liveness: Liveness, poll_within_s: float, interval: float = HEARTBEAT_INTERVAL_S
) -> None:
    """Write the worker's record soon after start, then every `interval` seconds; remove it when stopped.

    The first is written once the worker has had a moment to poll, so it does not say "not
    polling" of a worker that is merely starting.
    """
    try:
        await asyncio.sleep(min(interval, FIRST_BEAT_S))
        while True:
            try:
                await beat(redis, card, liveness, poll_within_s)
            except RedisError as exc:
                log.warning("could not write the worker's heartbeat: %s", exc)
            await asyncio.sleep(interval)
    finally:
        # Stopped cleanly: say so at once rather than let the record expire.
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.delete(worker_key(card.queue, card.id))
                pipe.zrem(workers_key(card.queue), card.id)
                await pipe.execute()
        except (RedisError, OSError):
            pass


async def beat(redis: Redis, card: WorkerCard, liveness: Liveness, poll_within_s: float) -> None:
    now = time.time()
    record = {
        **asdict(card),
        "last_seen": now,
        "polling": liveness.polling(poll_within_s),
        "jobs_running": liveness.jobs_running,
        "loop_lag_ms": round(liveness.loop_lag_s * 1000, 1),
    }
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(worker_key(card.queue, card.id), json.dumps(record), ex=int(RECORD_TTL_S))
        pipe.zadd(workers_key(card.queue), {card.id: now})
        pipe.zremrangebyscore(workers_key(card.queue), 0, now - FORGET_AFTER_S)
        await pipe.execute()


async def read_workers(redis: Redis, queue: str) -> list[dict[str, Any]]:
    """Every worker seen lately: its last record, `alive` false once its record has expired."""
    seen: list[tuple[bytes, float]] = await redis.zrevrange(workers_key(queue), 0, 199, withscores=True)
    if not seen:
        return []
    records = await redis.mget([worker_key(queue, raw.decode()) for raw, _ in seen])
    workers: list[dict[str, Any]] = []
    for (raw, last_seen), record in zip(seen, records, strict=True):
        if record is not None:
            workers.append({**json.loads(record), "alive": True})
        else:
            workers.append({"id": raw.decode(), "last_seen": last_seen, "alive": False})
    return workers


async def watch_loop_lag(liveness: Liveness, metrics: Recorder, interval: float = LAG_INTERVAL_S) -> None:
    """How late the event loop wakes a sleeper: the time its callbacks make others wait."""
    loop = asyncio.get_running_loop()
    recent: deque[float] = deque(maxlen=LAG_WINDOW)
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        recent.append(max(0.0, loop.time() - started - interval))
        liveness.loop_lag_s = max(recent)
        metrics.loop_lag(liveness.loop_lag_s)
