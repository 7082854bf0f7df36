"""`PipelineWorker`: arq's worker with a cheaper claim, short leases, and a Redis restart ridden out.

It differs from arq's `Worker` in five places:

- claiming: one script per poll claims a batch of due jobs for all free slots
  (`pipeline.worker.claim`), where arq runs a four-round-trip transaction per queued job, on
  every poll, including jobs that are running elsewhere;
- the claim carries the lease TTL (`worker.lease`) from the start, renewed while the job runs
  (`pipeline.worker.leases`), instead of arq's never-renewed longest-timeout-plus-10-s;
- finishing: a job whose URL the frontier settled and took out of the queue in one step
  (`Frontier.finish`) skips arq's finishing transaction;
- a job deferred because its host was busy (`Deferred`) goes back to the queue with its try
  given back, in the same transaction that moves it;
- when Redis goes away the worker backs off and polls again; closing a worker with jobs in
  hand shuts it down cleanly (arq's own close raises before its shutdown hook runs).

arq's CLI (`arq pipeline.WorkerSettings`) builds the worker with `arq.worker.create_worker`,
which knows only arq's own class. `teach_arq_cli` replaces that function with one that builds
the class a settings object names in `worker_class`, and anything else exactly as arq would:
the one place that knowledge lives. `pipeline worker` builds the same class directly.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import arq.worker
from arq.utils import timestamp_ms
from arq.worker import Worker, get_kwargs
from redis.exceptions import RedisError

from pipeline.observe.heartbeat import Liveness
from pipeline.worker.claim import Claimer
from pipeline.worker.context import DEFERRED_JOBS, RETIRED_JOBS
from pipeline.worker.queue import in_progress_key, retry_key

log = logging.getLogger("pipeline.worker")
_ARQ_CREATE_WORKER = arq.worker.create_worker


class PipelineWorker(Worker):
    _redis_failures = 0
    _claimer: Claimer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._retired: set[str] = set()
        self.ctx[RETIRED_JOBS] = self._retired
        self._liveness = self.ctx["liveness"] = Liveness()
        self._deferred: set[str] = set()
        self.ctx[DEFERRED_JOBS] = self._deferred
        settings = self.ctx.get("settings")
        if settings is not None and self.ctx.get("role") != "cpu":
            # Claim with the lease straight away: arq's claim TTL (the longest job timeout plus
            # 10 s) is what a dead worker's jobs would otherwise wait out.
            self.in_progress_timeout_s = settings.worker.lease

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim what this worker has room for in one round trip (see `pipeline.worker.claim`).

        Jobs this worker runs itself are not even sent.
        """
        wanted = self.max_jobs - self.job_counter
        if wanted <= 0:
            return
        candidates = [job_id for job_id in (raw.decode() for raw in job_ids) if not self._running_here(job_id)]
        if not candidates:
            return
        if self._claimer is None:
            self._claimer = Claimer(self.pool, self.queue_name, self.in_progress_timeout_s)
        # A Redis error here propagates before any slot is taken; a claim whose reply was lost
        # runs again elsewhere once its short TTL lapses.
        for claim in await self._claimer.claim(candidates, wanted, timestamp_ms()):
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(claim.job_id, claim.score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[claim.job_id] = task

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        if job_id in self._retired:
            self._retired.discard(job_id)
            if result_data is None:
                return  # the frontier took the job out of the queue as its URL settled
        if job_id in self._deferred:
            self._deferred.discard(job_id)
            if not finish and incr_score:
                # arq's retry, plus the try it counted when the job started given back.
                async with self.pool.pipeline(transaction=True) as tr:
                    tr.delete(in_progress_key(job_id))
                    tr.zincrby(self.queue_name, incr_score, job_id)
                    tr.decr(retry_key(job_id))
                    await tr.execute()
                return
        await super().finish_job(
            job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
        )

    async def close(self) -> None:
        # arq's close cancels the running jobs, then gathers them without `return_exceptions`:
        # one job still running makes close raise CancelledError before `on_shutdown` has
        # closed anything. Cancelled here first, the jobs run again once their leases lapse.
        running = list(self.tasks.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.tasks.clear()
        await super().close()

    def _running_here(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is not None and not task.done()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            self._redis_failures += 1
            delay = min(5.0, 0.1 * 2**self._redis_failures)
            log.warning("Redis unavailable (%s: %s); polling again in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
        else:
            self._redis_failures = 0
            self._liveness.last_poll = time.monotonic()
            self._liveness.jobs_running = self.job_counter


def create_worker(settings_cls: Any, **kwargs: Any) -> Worker:
    """arq's `create_worker`, except that a settings object may name its `worker_class`."""
    attributes = settings_cls if isinstance(settings_cls, dict) else vars(settings_cls)
    worker_class = attributes.get("worker_class")
    if worker_class is None:
        return _ARQ_CREATE_WORKER(settings_cls, **kwargs)
    worker: Worker = worker_class(**{**get_kwargs(settings_cls), **kwargs})
    return worker


def teach_arq_cli() -> None:
    """Make arq's CLI build the worker class its settings name (see the module docstring)."""
    arq.worker.create_worker = create_worker
    cli = sys.modules.get("arq.cli")
    if cli is not None:  # `arq --watch` calls create_worker through its own import of it
        cli.create_worker = create_worker  # type: ignore[attr-defined]
