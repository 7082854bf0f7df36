"""Real services for the suite: redis-server, SecantusDB and moto's S3, on random loopback ports.

Each is started once per test session as its own process; each test gets its own queue, database
and bucket names, so tests never see each other's data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pipeline.embedded.processes import ServiceProcess, start_mongo, start_redis
from pipeline.settings import Settings
from tests.helpers import service_settings
from tests.servers.s3 import start_s3

# moto accepts any credentials; botocore insists there are some.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[ServiceProcess]:
    server = start_redis(services_dir / "redis", persistent=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_server(services_dir: Path) -> Iterator[ServiceProcess]:
    server = start_mongo(services_dir / "mongo")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[ServiceProcess]:
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture
def settings(
    redis_server: ServiceProcess, mongo_server: ServiceProcess, s3_server: ServiceProcess, tmp_path: Path
) -> Settings:
    """Settings for one test: shared servers, private queue, database and bucket."""
    forget_sites(redis_server.url)
    return service_settings(redis_server, mongo_server, s3_server, tmp_path / "data")


def forget_sites(redis_url: str) -> None:
    """Drop what earlier tests' workers learnt per origin (robots.txt records, per-host limits).

    Workers share those facts fleet-wide by origin, as they should; the tests' sites listen on
    loopback ports the system hands out again, so a site of this test could otherwise be answered
    with the robots.txt of an earlier test's site on the same port.
    """
    import redis

    with redis.Redis.from_url(redis_url) as client:
        keys = [*client.scan_iter("pipeline:robots:*"), *client.scan_iter("pipeline:host:*")]
        if keys:
            client.delete(*keys)


@pytest.fixture
async def s3_client(settings: Settings) -> AsyncIterator[object]:
    import aioboto3

    async with aioboto3.Session().client("s3", endpoint_url=settings.s3.endpoint_url, region_name="us-east-1") as c:
        yield c
