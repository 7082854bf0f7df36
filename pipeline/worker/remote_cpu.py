"""The CPU stage sent to CPU workers, over arq's queue.

One worker doing everything (`arq pipeline.WorkerSettings`) crunches in its own pool. With the
roles split (`pipeline.IOWorkerSettings` and `pipeline.CPUWorkerSettings`, Celery's gevent
worker on an I/O queue plus a prefork worker on a CPU queue), an I/O worker sends each CPU task
as a `cpu_task` job to the CPU queue and awaits the answer, which the CPU worker pushes to a
reply list that the I/O worker reads with one blocking connection for all its jobs.

Only functions in the CPU registry can be called this way: whoever can write to Redis must not
be able to make a CPU worker run arbitrary code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.crunch.pool import CpuPool
from pipeline.crunch.registry import CpuFunction, cpu_functions, function_name
from pipeline.errors import CpuFunctionError, CpuPoolBroken, CpuTimeout
from pipeline.worker.queue import JOB_EXPIRES_MS, job_key, job_record
from pipeline.worker.serialization import deserialize, serialize

log = logging.getLogger("pipeline.cpu")

CPU_TASK = "cpu_task"
REPLY_TTL_S = 120


class RemoteCpu:
    """Runs CPU functions on CPU workers and awaits their answers (an I/O worker's CPU stage)."""

    def __init__(
        self,
        redis: Redis,
        replies: Redis,
        queue: str,
        timeout: float,
        *,
        registry: dict[str, CpuFunction] | None = None,
    ) -> None:
        self._redis = redis
        self._replies = replies  # its own connection: BLPOP blocks it
        self._queue = queue
        self._timeout = timeout
        self.reply_key = f"pipeline:cpu:replies:{uuid.uuid4().hex}"
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._registry = registry if registry is not None else cpu_functions()

    def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="pipeline-cpu-replies")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for future in self._waiting.values():
            future.cancel()
        await self._replies.aclose()

    async def run(self, fn: CpuFunction, *args: Any) -> Any:
        name = function_name(fn, self._registry)
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            now_ms = int(time.time() * 1000)
            record = job_record(CPU_TASK, [name, list(args), self.reply_key, request_id], now_ms)
            job_id = f"cpu:{request_id}"
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.psetex(job_key(job_id), JOB_EXPIRES_MS, record)
                pipe.zadd(self._queue, {job_id: now_ms})
                await pipe.execute()
            try:
                return await asyncio.wait_for(future, self._timeout)
            except TimeoutError:
                raise CpuTimeout(f"no CPU worker answered {name} within {self._timeout:g}s") from None
        finally:
            self._waiting.pop(request_id, None)

    async def _listen(self) -> None:
        while True:
            try:
                item = await self._replies.blpop([self.reply_key], timeout=1)  # type: ignore[misc]
            except RedisError as exc:
                log.warning("CPU replies unavailable, retrying: %s", exc)
                await asyncio.sleep(1)
                continue
            if item is None:
                continue
            reply = deserialize(item[1])
            future = self._waiting.get(reply.get("id", ""))
            if future is None or future.done():
                continue  # its job gave up waiting
            if reply.get("ok"):
                future.set_result(reply.get("result"))
            elif reply.get("raised"):
                future.set_exception(CpuFunctionError(f"{reply.get('error')} (on a CPU worker)"))
            else:
                future.set_exception(CpuPoolBroken(f"CPU worker failed: {reply.get('error')}"))


async def answer(
    redis: Redis,
    pool: CpuPool,
    registry: dict[str, CpuFunction],
    name: str,
    args: list[Any],
    reply_to: str,
    request_id: str,
) -> None:
    """The CPU worker's side: run `name(*args)` in the pool and push the outcome to `reply_to`."""
    function = registry.get(name)
    if function is None:
        raise LookupError(f"{name!r} is not a registered CPU function")
    try:
        reply: dict[str, Any] = {"id": request_id, "ok": True, "result": await pool.run(function, *args)}
    except (CpuTimeout, CpuPoolBroken) as exc:
        reply = {"id": request_id, "ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the function's own error is the caller's answer
        reply = {"id": request_id, "ok": False, "raised": True, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(reply_to, serialize(reply))
        pipe.expire(reply_to, REPLY_TTL_S)
        await pipe.execute()
