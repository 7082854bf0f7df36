"""pipeline: asyncio-native crawling on arq workers, MongoDB and S3.

The public surface is what this module exports; everything else is machinery, laid out by the
crawl's stages (`schedule`, `download`, `parse`, `crunch`, `store`, `settle`), with the worker
(`worker`, all that knows arq), the command line (`cli`), the embedded services (`embedded`) and
the built-in jobs (`jobs`) beside them.

Everything here is imported on first use. That keeps `import pipeline` free of side effects
and cheap, which matters twice: CPU-pool processes import modules of `pipeline.crunch` and
nothing else, and `pipeline.WorkerSettings` (the class `arq pipeline.WorkerSettings` runs), and
its split-role variants `IOWorkerSettings` and `CPUWorkerSettings`, read the configuration and
may start embedded services, so they are built only when asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.api import Pipeline, enqueue_crawl
    from pipeline.crawl.options import CrawlOptions
    from pipeline.crawl.status import CrawlStatus
    from pipeline.errors import ConfigError, CrawlNotFound, InvalidSelector, InvalidURL, PipelineError
    from pipeline.settings import Settings, load_settings
    from pipeline.worker.context import WorkerContext

    WorkerSettings: type
    IOWorkerSettings: type
    CPUWorkerSettings: type

_WORKER_ROLES: dict[str, Any] = {"WorkerSettings": "all", "IOWorkerSettings": "io", "CPUWorkerSettings": "cpu"}
_EXPORTS = {
    "Pipeline": "pipeline.api",
    "enqueue_crawl": "pipeline.api",
    "CrawlOptions": "pipeline.crawl.options",
    "CrawlStatus": "pipeline.crawl.status",
    "ConfigError": "pipeline.errors",
    "CrawlNotFound": "pipeline.errors",
    "InvalidSelector": "pipeline.errors",
    "InvalidURL": "pipeline.errors",
    "PipelineError": "pipeline.errors",
    "Settings": "pipeline.settings",
    "load_settings": "pipeline.settings",
    "WorkerContext": "pipeline.worker.context",
}

__all__ = [
    "CPUWorkerSettings",
    "ConfigError",
    "CrawlNotFound",
    "CrawlOptions",
    "CrawlStatus",
    "IOWorkerSettings",
    "InvalidSelector",
    "InvalidURL",
    "Pipeline",
    "PipelineError",
    "Settings",
    "WorkerContext",
    "WorkerSettings",
    "enqueue_crawl",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name in _WORKER_ROLES:
        from pipeline.worker.settings import load_worker_settings

        value: Any = load_worker_settings(_WORKER_ROLES[name])
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    globals()[name] = value
    return value
