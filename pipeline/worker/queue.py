"""arq's queue as Redis keys: what our scripts write and read exactly as arq itself would.

A job is a record under `arq:job:<id>` (the serialised function name and arguments) plus an
entry in the queue's sorted set scored by when it is due; a running job holds
`arq:in-progress:<id>`; a retried one counts its tries under `arq:retry:<id>`. The frontier
writes job records in its own Lua scripts (so dedup and enqueue are one atomic step), the claim
script sets in-progress keys, leases renew them: all of them take the key names from here.
"""

from __future__ import annotations

import time
from typing import Any

from arq.connections import RedisSettings
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix

from pipeline.connections import RETRIED_ERRORS, redis_retry, tls_options
from pipeline.settings import Settings
from pipeline.worker.serialization import serialize

JOB_KEY_PREFIX = job_key_prefix
IN_PROGRESS_KEY_PREFIX = in_progress_key_prefix
RETRY_KEY_PREFIX = retry_key_prefix
ABORT_SET = abort_jobs_ss
HEALTH_CHECK_SUFFIX = ":health-check"
# Crawls whose jobs no worker may start (paused, or being cancelled): crawl id -> why. The claim
# script reads it (`pipeline.worker.claim`); `pipeline.crawl.control` writes it.
HELD_CRAWLS = "pipeline:held"
JOB_EXPIRES_MS = 24 * 3600 * 1000  # a queued job's record outlives any reasonable backlog


def job_key(job_id: str) -> str:
    return JOB_KEY_PREFIX + job_id


def in_progress_key(job_id: str) -> str:
    return IN_PROGRESS_KEY_PREFIX + job_id


def retry_key(job_id: str) -> str:
    return RETRY_KEY_PREFIX + job_id


def job_record(function: str, args: list[Any], now_ms: int | None = None) -> bytes:
    """A job record, serialised as `ArqRedis.enqueue_job` would write it."""
    enqueued = int(time.time() * 1000) if now_ms is None else now_ms
    return serialize({"t": None, "f": function, "a": args, "k": {}, "et": enqueued})


def arq_redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings; commands ride out a Redis restart instead of killing the worker."""
    redis = RedisSettings.from_dsn(settings.redis.url)
    redis.conn_timeout = max(1, int(settings.redis.connect_timeout))
    redis.conn_retries = 30
    redis.conn_retry_delay = 1
    redis.retry_on_error = list(RETRIED_ERRORS)
    redis.retry = redis_retry()
    for name, value in tls_options(settings).items():
        setattr(redis, name, value)
    return redis
