"""Claiming queued jobs: one Lua script per poll instead of a transaction per job.

arq claims each job it finds in the queue with a WATCH transaction of four round trips
(WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC), and does so again at every poll for every job
another worker is already running, since a job leaves the queue only when it finishes. The
script below makes the same decision for a whole batch of candidates inside Redis, atomically:
a job is claimed when it is still queued, due, and not in progress anywhere, and its
in-progress key is set with the claim TTL in the same step (`SET NX PX`). Jobs running
elsewhere cost one `EXISTS`-like check in Redis and nothing on the wire.

Jobs of a paused crawl, or of one being cancelled, are never claimed: the script skips every job
whose crawl is in the held hash (kept by `pipeline.crawl.control`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from pipeline.connections import read_script
from pipeline.worker.queue import HELD_CRAWLS, in_progress_key

_CLAIM = read_script("pipeline.worker", "claim.lua")


@dataclass(frozen=True)
class Claim:
    job_id: str
    score: int


class Claimer:
    """Claims due jobs of one queue for one worker."""

    def __init__(self, redis: Redis, queue: str, claim_ttl_seconds: float) -> None:
        self._queue = queue
        self._ttl_ms = int(claim_ttl_seconds * 1000)
        self._script = redis.register_script(_CLAIM)

    async def claim(self, job_ids: Sequence[str], wanted: int, now_ms: int) -> list[Claim]:
        """Claim up to `wanted` of `job_ids` (in order) that are due and not in progress."""
        if wanted <= 0 or not job_ids:
            return []
        keys = [self._queue, *(in_progress_key(job_id) for job_id in job_ids), HELD_CRAWLS]
        reply = await self._script(keys=keys, args=[now_ms, self._ttl_ms, wanted, *job_ids])
        return [Claim(job_id=reply[i].decode(), score=int(float(reply[i + 1]))) for i in range(0, len(reply), 2)]
