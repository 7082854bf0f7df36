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

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.worker.queue import in_progress_key

log = logging.getLogger("pipeline.lease")

LEASE_SECONDS = 10.0
ORPHAN_SCAN = 1000  # queue entries checked per renewal tick


class Leases:
    """The leases of the jobs one worker is running."""

    def __init__(
        self,
        redis: Redis,
        lease_seconds: float = LEASE_SECONDS,
        *,
        queue: str | None = None,
        claim_ttl_seconds: float | None = None,
        claims_leased: bool = False,
    ) -> None:
        self._redis = redis
        # A worker that claims jobs with the lease TTL already has nothing to shorten at start.
        self._claims_leased = claims_leased
        self._queue = queue
        self._claim_ttl_ms = int(claim_ttl_seconds * 1000) if claim_ttl_seconds else None
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
        if self._claims_leased:
            return
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
            await self._shorten_orphaned_claims()

    async def _shorten_orphaned_claims(self) -> None:
        """Give a lease to claims whose worker died before it could shorten them.

        arq marks a claimed job with its long TTL, and a worker shortens it to a lease a moment
        later. A worker killed in between leaves a claim nobody will renew or shorten: it shows
        as an in-progress key whose TTL has been running down from arq's value for more than a
        lease interval. Such a claim gets a lease here, so its job runs again soon, not minutes
        later.
        """
        if self._queue is None or self._claim_ttl_ms is None:
            return
        try:
            job_ids = [raw.decode() for raw in await self._redis.zrange(self._queue, 0, ORPHAN_SCAN - 1)]
            if not job_ids:
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.pttl(in_progress_key(job_id))
                ttls = await pipe.execute()
            slack = int(self._interval * 1000)
            orphaned = [
                job_id
                for job_id, ttl in zip(job_ids, ttls, strict=True)
                if self._lease_ms + slack < ttl < self._claim_ttl_ms - slack
            ]
            if orphaned:
                log.info("giving %d orphaned job claims a lease", len(orphaned))
                await self._expire(set(orphaned))
        except RedisError as exc:
            log.warning("could not check for orphaned claims: %s", exc)

    async def _expire(self, job_ids: set[str]) -> None:
        if not job_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                ordered = list(job_ids)
                for job_id in ordered:
                    pipe.pexpire(in_progress_key(job_id), self._lease_ms)
                renewed = await pipe.execute()
        except RedisError as exc:
            # A missed renewal is retried on the next tick; the lease is three ticks long.
            log.warning("could not renew %d job leases: %s", len(job_ids), exc)
            return
        # No key: arq finished the job (and deleted it) without us hearing of it; stop renewing.
        self._running.difference_update(job_id for job_id, ok in zip(ordered, renewed, strict=True) if not ok)
