"""Running a loopback test server on its own event loop in a daemon thread.

The demo site and the JSON API serve thousands of requests a second in tests and demos; on a
loop of their own that cost does not distort the latency of the crawler under test, and
synchronous callers get a server without having a loop of their own.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar


class LoopbackServer(Protocol):
    async def start(self, host: str = ..., port: int = ...) -> str: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=LoopbackServer)


class ThreadedServer(Generic[S]):
    """`server` started in a daemon thread by `start()` (or `with`), stopped by `stop()`."""

    thread_name = "loopback-server"

    def __init__(self, server: S, host: str = "127.0.0.1", port: int = 0) -> None:
        self.site = server
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        ready: Future[str] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.thread_name, daemon=True)
        self._thread.start()
        return ready.result(timeout=30)

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join()

    def _run(self, ready: Future[str]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            ready.set_result(loop.run_until_complete(self.site.start(self._host, self._port)))
        except BaseException as exc:  # noqa: BLE001 - handed to the thread waiting in start()
            ready.set_exception(exc)
            loop.close()
            return
        try:
            loop.run_forever()
            loop.run_until_complete(self.site.stop())
        finally:
            loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
