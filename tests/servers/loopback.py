"""Loopback test servers: the aiohttp lifecycle of the demo site and the JSON API, and a way to
run either on its own event loop in a daemon thread.

Both serve thousands of requests a second in tests and demos; on a loop of their own that cost
does not distort the latency of the crawler under test, and synchronous callers get a server
without having a loop of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiohttp import web


class LoopbackSite:
    """An aiohttp application on a loopback port: `start()`/`stop()` or `async with`.

    Subclasses build the application in `_app()`.
    """

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # handler_cancellation stops a slow handler when the client gives up. The short shutdown
        # timeout (which aiohttp spends up to twice) keeps stop() from waiting out a long sleep.
        runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.25)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


S = TypeVar("S", bound=LoopbackSite)


class ThreadedServer(Generic[S]):
    """`server` started in a daemon thread by `start()` (or `with`), stopped by `stop()`."""

    thread_name = "loopback-server"

    def __init__(self, server: S, host: str = "127.0.0.1", port: int = 0) -> None:
        self.site = server
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.site.base_url

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


C = TypeVar("C")


def serve_from_command_line(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    config_type: Callable[..., C],
    make_site: Callable[[C], S],
    announce: Callable[[S, str], str],
    default_port: int,
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run,
) -> None:
    """`python -m <prog>`: serve a site built from its config until interrupted.

    There is one option per field of `config_type` (a dataclass with defaults), so the command
    line cannot drift from the config; `announce(site, url)` is the line printed once it listens.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0: any free port")
    for name, default in vars(config_type()).items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, help=f"default: {default}"
        )
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k not in ("host", "port")}
    site = make_site(config_type(**fields))

    async def serve() -> None:
        url = await site.start(args.host, args.port)
        print(announce(site, url), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await site.stop()

    with contextlib.suppress(KeyboardInterrupt):
        run(serve())
