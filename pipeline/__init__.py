"""pipeline: asyncio-native crawling on arq workers, MongoDB and S3.

Everything here is imported on first use. That keeps `import pipeline` free of side effects
and cheap, which matters twice: CPU-pool processes import `pipeline.cpuchild` and
`pipeline.crunch` and nothing else, and `pipeline.WorkerSettings` (the class
`arq pipeline.WorkerSettings` runs), and its split-role variants `IOWorkerSettings` and
`CPUWorkerSettings`, read the configuration and may start embedded services, so they are built
only when asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.api import Pipeline, enqueue_crawl
    from pipeline.crawls import CrawlOptions, CrawlStatus
    from pipeline.settings import ConfigError, Settings, load_settings
    from pipeline.urls import InvalidURL

    WorkerSettings: type
    IOWorkerSettings: type
    CPUWorkerSettings: type

_WORKER_ROLES: dict[str, Any] = {"WorkerSettings": "all", "IOWorkerSettings": "io", "CPUWorkerSettings": "cpu"}
_EXPORTS = {
    "Pipeline": "pipeline.api",
    "enqueue_crawl": "pipeline.api",
    "CrawlOptions": "pipeline.crawls",
    "CrawlStatus": "pipeline.crawls",
    "ConfigError": "pipeline.settings",
    "Settings": "pipeline.settings",
    "load_settings": "pipeline.settings",
    "InvalidURL": "pipeline.urls",
}

__all__ = [
    "CPUWorkerSettings",
    "ConfigError",
    "CrawlOptions",
    "CrawlStatus",
    "IOWorkerSettings",
    "InvalidURL",
    "Pipeline",
    "Settings",
    "WorkerSettings",
    "enqueue_crawl",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name in _WORKER_ROLES:
        from pipeline.worker import load_worker_settings

        value: Any = load_worker_settings(_WORKER_ROLES[name])
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    globals()[name] = value
    return value
