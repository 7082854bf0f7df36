"""Settings: defaults, then `config.toml`, then `PIPELINE_<SECTION>_<KEY>` environment variables.

Every setting is declared once, here, with its default, its bounds and its meaning; the
shipped `config.toml` mirrors these declarations. Loading validates everything up front so a
bad value stops the program at start, naming the key, instead of failing a job hours later.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.crawl.cron import check_cron
from pipeline.crunch.registry import FINGERPRINT, NO_CRUNCH, check_cpu_function, check_crunch
from pipeline.download.http_options import (
    check_auth,
    check_cookie,
    check_header,
    check_proxy,
    check_user_agent,
)
from pipeline.errors import ConfigError, InvalidURL
from pipeline.parse.fields import check_field
from pipeline.parse.html import check_selector
from pipeline.schedule.scope import SCOPES, check_pattern
from pipeline.urls import normalise_url

__all__ = ["ConfigError", "CrawlSettings", "ScheduleSpec", "Settings", "load_settings"]

ENV_PREFIX = "PIPELINE_"
CONFIG_ENV = "PIPELINE_CONFIG"


def _setting(
    default: Any,
    *,
    min: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], object] | None = None,
    help: str = "",
    metavar: str = "",
    flag: str = "",
    split: bool = True,
) -> Any:
    """A declared setting: its default, its bounds, and (for crawl options) its command-line help.

    `check` is called with a value that has the right type (each item of a list) and raises
    `ValueError` if the value cannot work (a CSS selector selectolax refuses, say). `flag` names
    the command-line flag when it is not the option's name (`--sitemap` for `sitemaps`). A list
    given as one string is split at commas unless `split` is false (regular expressions have
    commas of their own: such a string is one item).
    """
    return field(
        default=default,
        metadata={
            "min": min,
            "choices": choices,
            "check": check,
            "help": help,
            "metavar": metavar,
            "flag": flag,
            "split": split,
        },
    )


def _table(*, check: Callable[[tuple[str, str]], object], help: str, metavar: str, flag: str) -> Any:
    """A declared setting whose value is a table of names to strings (`fields`, `headers`).

    Given as a TOML table (`[crawl.fields]`), a dict (the API), `NAME=VALUE` items (a repeated
    flag) or a JSON object (an environment variable). `check` is called with each
    `(name, value)` pair. A table given replaces the default one whole.
    """
    return field(
        default_factory=dict,
        metadata={"table": True, "check": check, "help": help, "metavar": metavar, "flag": flag},
    )


@dataclass(frozen=True)
class RedisSettings:
    url: str = _setting("")  # empty: embedded redis-server under storage.data_dir
    queue: str = _setting("pipeline:queue")
    connect_timeout: float = _setting(5.0, min=0.1)
    tls_ca_file: str = _setting("")  # CA bundle for rediss:// (empty: the system's)
    tls_verify: bool = _setting(True)


@dataclass(frozen=True)
class MongoSettings:
    url: str = _setting("")  # empty: embedded SecantusDB under storage.data_dir
    db: str = _setting("pipeline")
    server_selection_timeout: float = _setting(10.0, min=0.1)
    # Writes are acknowledged only once in the server's on-disk journal (write concern j: true),
    # so a page counted as stored survives a crash of the database right after.
    journal: bool = _setting(True)


@dataclass(frozen=True)
class S3Settings:
    bucket: str = _setting("")  # empty: bodies go to a file store under storage.data_dir
    prefix: str = _setting("bodies/")
    endpoint_url: str = _setting("")
    region: str = _setting("us-east-1")
    max_pool_connections: int = _setting(64, min=1)


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = _setting("./pipeline-data")
    batch_size: int = _setting(100, min=1)
    batch_delay_ms: float = _setting(50.0, min=0)
    retry_window: float = _setting(30.0, min=0)


@dataclass(frozen=True)
class WorkerSettingsSection:
    max_jobs: int = _setting(500, min=1)
    poll_delay: float = _setting(0.05, min=0.001)
    job_timeout: float = _setting(300.0, min=1)
    max_tries: int = _setting(5, min=1)
    queue_read_limit: int = _setting(0, min=0)
    keep_result: float = _setting(0.0, min=0)
    lease: float = _setting(10.0, min=1)
    shutdown_grace: float = _setting(20.0, min=0)
    # Prometheus metrics and /health: the first free port from this one up; 0: neither is served.
    metrics_port: int = _setting(9540, min=0)
    metrics_host: str = _setting("127.0.0.1")
    # Extra job functions (yours), as "package.module:function", registered in every worker.
    functions: tuple[str, ...] = _setting(())


@dataclass(frozen=True)
class FetchSettings:
    concurrency: int = _setting(200, min=1)
    per_host: int = _setting(32, min=1)
    adaptive: bool = _setting(True)
    per_host_min: int = _setting(2, min=1)
    per_host_initial: int = _setting(8, min=1)
    connect_timeout: float = _setting(10.0, min=0.1)
    read_timeout: float = _setting(30.0, min=0.1)
    max_redirects: int = _setting(10, min=0)
    max_body_bytes: int = _setting(10_000_000, min=1024)
    user_agent: str = _setting("pipeline/0.1")
    allow_private_networks: bool = _setting(False)
    retry_base_delay: float = _setting(1.0, min=0)
    retry_max_delay: float = _setting(60.0, min=0)
    # Least seconds between two request starts to one host, fleet-wide; a robots.txt
    # Crawl-delay raises it for its host.
    per_host_delay: float = _setting(0.0, min=0)
    # Per-host limits (permits, the adaptive limit, pauses, start spacing) kept in Redis for the
    # whole fleet; false: each worker keeps its own, so N workers may send N x per_host.
    shared_limits: bool = _setting(True)
    obey_robots: bool = _setting(True)
    robots_ttl: float = _setting(86_400.0, min=1)  # seconds a host's robots.txt is kept
    # Seconds a host whose robots.txt cannot be read (5xx, unreachable) keeps its URLs waiting
    # before each is recorded as failed.
    robots_wait: float = _setting(600.0, min=0)


@dataclass(frozen=True)
class CrawlSettings:
    """The options of one crawl, declared once: `[crawl]` holds their defaults.

    The same names are the Python API's keywords (`Pipeline.crawl(url, max_pages=...)`), the
    flags of `pipeline crawl` (`--max-pages`), the keys of a `[[schedule]]` table and the
    `options` of a crawl's record, and every one of them is validated by the same code.
    """

    next_selector: str = _setting(
        "a[rel=next]", check=check_selector, metavar="CSS", help="CSS selector of the link to the next list page"
    )
    link_selector: str = _setting("a[href]", check=check_selector, metavar="CSS", help="CSS selector of child links")
    max_depth: int = _setting(
        1, min=0, metavar="N", help="1: the children of the list pages; 2: their links too; and so on"
    )
    max_pages: int = _setting(100_000, min=1, metavar="N", help="child pages stored at most")
    scope: str = _setting(
        "host",
        choices=SCOPES,
        help="which hosts to follow: the start host, every host of its registrable domain (public-suffix list), any",
    )
    allow: tuple[str, ...] = _setting(
        (),
        check=check_pattern,
        split=False,
        metavar="REGEX",
        help="follow only URLs in which this regular expression is found (re.search on the canonical URL; repeatable)",
    )
    deny: tuple[str, ...] = _setting(
        (),
        check=check_pattern,
        split=False,
        metavar="REGEX",
        help="never follow URLs in which this regular expression is found; deny wins over allow (repeatable)",
    )
    sitemaps: tuple[str, ...] = _setting(
        (),
        check=normalise_url,
        flag="sitemap",
        metavar="URL",
        help="a sitemap or sitemap index (gzipped or not) whose pages the crawl fetches too (repeatable)",
    )
    robots_sitemaps: bool = _setting(False, help="also read the sitemaps named by the start host's robots.txt")
    store_lists: bool = _setting(
        False, help="store the list pages too (a crawl with max_depth above 1 always stores its start page)"
    )
    max_queued: int = _setting(
        10_000, min=10, metavar="N", help="jobs the crawl keeps in Redis; the rest wait in MongoDB"
    )
    on_complete: tuple[str, ...] = _setting(
        ("crawl_summary",), metavar="JOB", help="job run once when the crawl is done (repeatable)"
    )
    pipeline: str = _setting(
        "web", choices=("web", "api"), help="web: HTML list and child pages; api: the paginated JSON API collector"
    )
    list_job: str = _setting("", metavar="JOB", help="job that walks list pages (empty: the pipeline's)")
    item_job: str = _setting("", metavar="JOB", help="job that handles each item (empty: the pipeline's)")
    conditional: bool = _setting(
        False, help="send If-None-Match / If-Modified-Since for pages stored before; a 304 counts as unchanged"
    )
    ignore_robots: bool = _setting(
        False, help="do not read or obey robots.txt (and its Crawl-delay): for sites you own"
    )
    crunch: str = _setting(
        FINGERPRINT,
        check=check_crunch,
        metavar="NAME",
        help="CPU stage of each page: fingerprint (simhash, top words), none (store the page only), "
        "or package.module:function (yours, listed in cpu.functions), called with the page's text in the pool",
    )
    fields: Mapping[str, str] = _table(
        check=check_field,
        flag="field",
        metavar="NAME=CSS",
        help="a field to extract from each HTML page into the document's `fields`: CSS for the first match's "
        "text, CSS@attr for an attribute, a [] suffix for every match as a list (repeatable)",
    )
    headers: Mapping[str, str] = _table(
        check=check_header, flag="header", metavar="NAME=VALUE", help="a header sent with every request (repeatable)"
    )
    cookies: Mapping[str, str] = _table(
        check=check_cookie, flag="cookie", metavar="NAME=VALUE", help="a cookie sent with every request (repeatable)"
    )
    auth: str = _setting(
        "", check=check_auth, metavar="USER:PASSWORD", help="HTTP basic auth sent to the crawled site; never shown"
    )
    user_agent: str = _setting(
        "", check=check_user_agent, metavar="TEXT", help="the User-Agent of this crawl (empty: fetch.user_agent)"
    )
    proxies: tuple[str, ...] = _setting(
        (),
        check=check_proxy,
        flag="proxy",
        metavar="URL",
        help="an http:// or https:// proxy; several are used in turn, one per request (repeatable)",
    )


@dataclass(frozen=True)
class CpuSettings:
    processes: int = _setting(0, min=0)  # 0: one per CPU
    queue: str = _setting("pipeline:cpu")  # where IO workers send CPU work for CPU workers
    max_in_flight: int = _setting(0, min=0)  # 0: two full batches per process
    timeout: float = _setting(30.0, min=0.1)
    # Calls to one function within this window go to a pool process as one task (0: no batching).
    batch_delay_ms: float = _setting(20.0, min=0.0)
    batch_size: int = _setting(16, min=1)
    # Your CPU-stage functions, as "package.module:function": what crawls may name as `crunch`
    # and, with the roles split, what CPU workers will run.
    functions: tuple[str, ...] = _setting((), check=check_cpu_function)


@dataclass(frozen=True)
class ScheduleSpec:
    """A periodic crawl from `[[schedule]]`: a name, a cron expression, a start URL, crawl options.

    `options` holds the crawl options the table sets (any key of `[crawl]`), already validated.
    Re-crawls are conditional unless the table says `conditional = false`.
    """

    name: str
    cron: str
    start_url: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    mongo: MongoSettings = field(default_factory=MongoSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    worker: WorkerSettingsSection = field(default_factory=WorkerSettingsSection)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    cpu: CpuSettings = field(default_factory=CpuSettings)
    schedules: tuple[ScheduleSpec, ...] = ()

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).expanduser().resolve()

    @property
    def cpu_processes(self) -> int:
        return self.cpu.processes or (os.cpu_count() or 1)

    @property
    def cpu_max_in_flight(self) -> int:
        return self.cpu.max_in_flight or 2 * self.cpu_processes * self.cpu.batch_size

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys changed, validated like a config file: `replace(fetch={"per_host": 4})`."""
        return _build({name: {**_as_dict(getattr(self, name)), **values} for name, values in sections.items()}, self)


_SECTION_CLASSES: dict[str, type[Any]] = {
    "redis": RedisSettings,
    "mongo": MongoSettings,
    "s3": S3Settings,
    "storage": StorageSettings,
    "worker": WorkerSettingsSection,
    "fetch": FetchSettings,
    "crawl": CrawlSettings,
    "cpu": CpuSettings,
}


def _as_dict(section: Any) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(key: str, raw: Any, spec: dataclasses.Field[Any], source: str = "") -> Any:
    """Turn a raw value (TOML value, environment string, flag or keyword) into the field's type.

    Raises `ConfigError` naming `key` (and `source`, the variable or file it came from) when the
    value has the wrong type, is out of bounds or fails the field's own check.
    """
    kind: type[Any] = type(spec.default)
    where = f" (from {source})" if source else ""
    value: Any
    if spec.metadata.get("table"):
        value = _table_value(key, raw, where)
    elif kind is bool:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            value = raw.strip().lower() in _TRUE
        else:
            raise ConfigError(f"{key}: expected true or false, got {raw!r}{where}")
    elif kind is int:
        try:
            if isinstance(raw, (bool, float)):
                raise ValueError
            value = int(str(raw).replace("_", "")) if isinstance(raw, str) else int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a whole number, got {raw!r}{where}") from None
    elif kind is float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {raw!r}{where}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {raw!r}{where}")
    elif kind is tuple:
        # A TOML array of strings, or a comma-separated environment variable.
        if isinstance(raw, str):
            items = raw.split(",") if spec.metadata.get("split", True) else [raw]
        else:
            items = raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{key}: expected a list of strings, got {raw!r}{where}")
        value = tuple(i.strip() for i in items if i.strip())
    else:
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}{where}")
        value = raw
    minimum = spec.metadata.get("min")
    if minimum is not None and not isinstance(value, tuple) and value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum:g}, got {raw!r}{where}")
    choices: tuple[str, ...] = spec.metadata.get("choices", ())
    if choices and value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}; got {raw!r}{where}")
    check = spec.metadata.get("check")
    if check is not None:
        checked: Any = value.items() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)
        try:
            for item in checked:
                check(item)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}{where}") from None
    return value


def _table_value(key: str, raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except ValueError:
                raise ConfigError(f"{key}: expected a JSON object of names to strings, got {raw!r}{where}") from None
        else:
            raw = [text] if text else []
    if isinstance(raw, (list, tuple)):
        pairs: dict[str, str] = {}
        for item in raw:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                name, value = item
            elif isinstance(item, str) and "=" in item:
                name, _, value = item.partition("=")
            else:
                raise ConfigError(f"{key}: expected NAME=VALUE, got {item!r}{where}")
            pairs[str(name).strip()] = value.strip() if isinstance(value, str) else value
        raw = pairs
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"{key}: expected a table of names to strings, got {raw!r}{where}")
    return dict(raw)


CRAWL_OPTIONS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(CrawlSettings)}


def crawl_option_values(given: Mapping[str, Any], label: str = "") -> dict[str, Any]:
    """Crawl options as given (keywords, flags or a `[[schedule]]` table), checked and coerced.

    `label` prefixes the names in messages (`schedule[news].max_pages: ...`).
    """
    values: dict[str, Any] = {}
    for name, raw in given.items():
        spec = CRAWL_OPTIONS.get(name)
        if spec is None:
            raise ConfigError(f"{label}{name}: unknown crawl option; known: {', '.join(CRAWL_OPTIONS)}")
        values[name] = coerce(f"{label}{name}", raw, spec)
    return values


def _build(raw: Mapping[str, Mapping[str, Any]], base: Settings, sources: Mapping[str, str] | None = None) -> Settings:
    sections: dict[str, Any] = {}
    for name, cls in _SECTION_CLASSES.items():
        current = getattr(base, name)
        given = raw.get(name, {})
        specs = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise ConfigError(f"{name}.{unknown[0]}: unknown setting; known in [{name}]: {', '.join(specs)}")
        values = {
            key: coerce(f"{name}.{key}", value, specs[key], (sources or {}).get(f"{name}.{key}", ""))
            for key, value in given.items()
        }
        sections[name] = dataclasses.replace(current, **values)
    schedules = _schedules(raw["schedule"]) if "schedule" in raw else base.schedules
    settings = Settings(**sections, schedules=schedules)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    # Kept per worker, a host limit above the worker's own concurrency could never be reached;
    # shared by the fleet, it is the whole fleet's, and several workers together may reach it.
    if not settings.fetch.shared_limits and settings.fetch.per_host > settings.fetch.concurrency:
        raise ConfigError(
            f"fetch.per_host: must not exceed fetch.concurrency ({settings.fetch.concurrency}) "
            f"when fetch.shared_limits is false, got {settings.fetch.per_host}"
        )
    if settings.fetch.per_host_min > settings.fetch.per_host:
        raise ConfigError(
            f"fetch.per_host_min: must not exceed fetch.per_host ({settings.fetch.per_host}), "
            f"got {settings.fetch.per_host_min}"
        )
    if settings.fetch.retry_max_delay < settings.fetch.retry_base_delay:
        raise ConfigError("fetch.retry_max_delay: must be at least fetch.retry_base_delay")
    check_crunch_registered(settings.crawl.crunch, settings, "crawl.crunch")
    for schedule in settings.schedules:
        if "crunch" in schedule.options:
            check_crunch_registered(schedule.options["crunch"], settings, f"schedule[{schedule.name}].crunch")
    for key, url, schemes in (
        ("redis.url", settings.redis.url, ("redis://", "rediss://", "unix://")),
        ("mongo.url", settings.mongo.url, ("mongodb://", "mongodb+srv://")),
        ("s3.endpoint_url", settings.s3.endpoint_url, ("http://", "https://")),
    ):
        if url and not url.startswith(schemes):
            raise ConfigError(f"{key}: must start with {' or '.join(schemes)}; got a value that does not")


def check_crunch_registered(crunch: str, settings: Settings, key: str = "crunch") -> None:
    """A crawl may name only a CPU function the workers will run: a built-in one or one of `cpu.functions`."""
    if crunch not in (FINGERPRINT, NO_CRUNCH) and crunch not in settings.cpu.functions:
        raise ConfigError(
            f"{key}: {crunch!r} is not in cpu.functions; workers run only the CPU functions their "
            "configuration lists (PIPELINE_CPU_FUNCTIONS)"
        )


_SCHEDULE_KEYS = ("name", "cron", "start_url")


def _schedules(raw: Any) -> tuple[ScheduleSpec, ...]:
    """Validate `[[schedule]]` tables: names unique, cron expressions and URLs valid, options known."""
    if not isinstance(raw, list):
        raise ConfigError("schedule: expected [[schedule]] tables")
    specs: list[ScheduleSpec] = []
    for index, table in enumerate(raw):
        label = f"schedule[{table.get('name', index)!s}]" if isinstance(table, dict) else f"schedule[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: expected a table")
        for key in _SCHEDULE_KEYS:
            if not table.get(key):
                raise ConfigError(f"{label}.{key}: required")
            if not isinstance(table[key], str):
                raise ConfigError(f"{label}.{key}: expected a string, got {table[key]!r}")
        try:
            check_cron(table["cron"])
        except ValueError as exc:
            raise ConfigError(f"{label}.cron: {exc}") from None
        try:
            normalise_url(table["start_url"])
        except InvalidURL as exc:
            raise ConfigError(f"{label}.start_url: {exc}") from None
        options = {"conditional": True} | crawl_option_values(
            {k: v for k, v in table.items() if k not in _SCHEDULE_KEYS}, label + "."
        )
        if any(s.name == table["name"] for s in specs):
            raise ConfigError(f"{label}.name: two schedules are named {table['name']!r}")
        specs.append(
            ScheduleSpec(name=table["name"], cron=table["cron"], start_url=table["start_url"], options=options)
        )
    return tuple(specs)


def config_path(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read: `--config`, else `$PIPELINE_CONFIG`, else `./config.toml` if present."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    default = Path("config.toml")
    return default if default.is_file() else None


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    sources: dict[str, str] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        # Variables of other tools that happen to share the prefix are left alone; a known
        # section with an unknown key is almost certainly a typo and is reported.
        if section in _SECTION_CLASSES and key:
            overrides.setdefault(section, {})[key] = value
            sources[f"{section}.{key}"] = var
    return overrides, sources


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_env: bool = True,
) -> Settings:
    """Defaults, overridden by the config file, overridden by `PIPELINE_<SECTION>_<KEY>` variables."""
    env = os.environ if environ is None else environ
    settings = Settings()
    file = config_path(path, env)
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        unknown = sorted(k for k in data if k not in _SECTION_CLASSES and k != "schedule")
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown section in {file}; known: {', '.join(_SECTION_CLASSES)}")
        for name, section in data.items():
            if name != "schedule" and not isinstance(section, dict):
                raise ConfigError(f"{name}: expected a [{name}] table in {file}")
        settings = _build(data, settings, {})
    if use_env:
        overrides, sources = _env_overrides(env)
        if overrides:
            settings = _build(overrides, settings, sources)
    return settings
