"""Job leases: a killed worker's jobs run again within seconds, not minutes.

arq marks a running job with `arq:in-progress:<id>`, whose TTL is the longest timeout of all
functions plus 10 s (310 s by default), and never renews it: a job whose worker was `kill -9`'d
stays stuck until that key expires. Here each worker shortens the key of every job it starts to
a short lease and keeps renewing the leases of its running jobs. A live worker holds its jobs
indefinitely; a dead one stops renewing, its leases lapse, and the jobs (still in the queue, as
arq removes a job only when it finishes) are picked up by any live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("pipeline.lease")

LEASE_SECONDS = 10.0


class Leases:
    """The leases of the jobs one worker is running."""

    def __init__(self, redis: Redis, lease_seconds: float = LEASE_SECONDS) -> None:
        self._redis = redis
        self._lease_ms = int(lease_seconds * 1000)
        self._interval = lease_seconds / 3
        self._running: set[str] = set()
        self._fresh: set[str] = set()
        self._flush_scheduled = False
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever(), name="pipeline-lease-renewer")

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def job_started(self, job_id: str) -> None:
        """Shorten the new job's lease; jobs started together share one round trip."""
        self._running.add(job_id)
        self._fresh.add(job_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().create_task(self._flush_fresh())

    def job_ended(self, job_id: str) -> None:
        self._running.discard(job_id)
        self._fresh.discard(job_id)

    async def _flush_fresh(self) -> None:
        await asyncio.sleep(0)  # let the other jobs started in this poll join the batch
        self._flush_scheduled = False
        fresh, self._fresh = self._fresh, set()
        await self._expire(fresh)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._expire(set(self._running))

    async def _expire(self, job_ids: set[str]) -> None:
        if not job_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                ordered = list(job_ids)
                for job_id in ordered:
                    pipe.pexpire(in_progress_key_prefix + job_id, self._lease_ms)
                renewed = await pipe.execute()
        except RedisError as exc:
            # A missed renewal is retried on the next tick; the lease is three ticks long.
            log.warning("could not renew %d job leases: %s", len(job_ids), exc)
            return
        # No key: arq finished the job (and deleted it) without us hearing of it; stop renewing.
        self._running.difference_update(job_id for job_id, ok in zip(ordered, renewed, strict=True) if not ok)
