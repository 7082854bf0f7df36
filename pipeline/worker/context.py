"""arq's `ctx` as a pipeline worker fills it, typed.

arq hands every job and hook one dict: its own keys (`redis`, and per job `job_id`, `job_try`,
`enqueue_time`, `score`, in a copy made for that job) and whatever the worker put there at
start. A pipeline worker keeps everything it shares between jobs in one `Resources` under
`ctx["pipeline"]`; the other keys are the worker's own bookkeeping.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AsyncExitStack
from typing import Final, Literal, TypedDict

from arq.connections import ArqRedis

from pipeline.crunch.pool import CpuPool
from pipeline.crunch.registry import CpuFunction
from pipeline.embedded.services import EmbeddedServices
from pipeline.observe.heartbeat import Liveness
from pipeline.schedule.frontier import Departures
from pipeline.settings import Settings
from pipeline.worker.leases import Leases
from pipeline.worker.resources import Resources

Role = Literal["all", "io", "cpu"]

# Per-job keys a job sets for the worker's hooks to read (see `settle` and `after_job_end`).
SETTLED_CRAWL: Final = "settled_crawl"
RETIRED_JOBS: Final = "retired_jobs"
DEFERRED_JOBS: Final = "deferred_jobs"


class WorkerContext(TypedDict, total=False):
    # arq's own
    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: dt.datetime
    score: int
    # set when the worker is built
    settings: Settings
    role: Role
    embedded: EmbeddedServices  # the embedded services this worker started, if any
    # set at startup (`pipeline.worker.lifecycle`)
    closing: AsyncExitStack  # everything the worker opened, closed by one call at shutdown
    pipeline: Resources  # all-in-one and I/O workers
    cpu_pool: CpuPool  # CPU workers
    cpu_registry: dict[str, CpuFunction]  # CPU workers: the functions they may run
    leases: Leases  # the leases of the jobs this worker runs
    departures: Departures  # counts jobs out of the queue once arq removed them
    claim_ttl_s: float  # arq's in-progress TTL for this worker's functions (orphaned claims)
    metrics_port: int  # where this worker serves /metrics and /health, when it does
    # the worker's own bookkeeping (see `pipeline.worker.arq_worker`)
    liveness: Liveness  # when it last polled, how many jobs it runs: for /health and the heartbeat
    retired_jobs: set[str]  # jobs the frontier took out of the queue as their URL settled
    deferred_jobs: set[str]  # jobs sent back to the queue without counting a try (their host was busy)
    settled_crawl: str  # per job: the crawl whose URL this job settled
