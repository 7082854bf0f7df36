"""Local service processes start, answer, survive a restart where promised, and stop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
import redis
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from pipeline.embedded.processes import ServiceProcess, free_port, redis_answers, start_mongo, start_redis
from pipeline.embedded.services import EmbeddedServices, read_running, stop_running
from tests.servers.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, start_s3


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with start_mongo(tmp_path_factory.mktemp("mongo")) as service:
        yield service


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


def test_redis_persists_across_restart_on_same_port(tmp_path: Path) -> None:
    service = start_redis(tmp_path, persistent=True, password="s3cr:et/@")
    try:
        assert service.url.startswith("redis://:")
        client = redis.Redis.from_url(service.url)
        assert client.ping()
        client.set("survives", b"yes")
        client.close()
        port = service.port
        service.stop()
        assert not service.alive()
        assert not redis_answers(service.url)

        service = start_redis(tmp_path, persistent=True, password="s3cr:et/@", port=port)
        assert service.port == port
        client = redis.Redis.from_url(service.url)
        assert client.get("survives") == b"yes"
        client.close()
    finally:
        service.stop()
    assert (tmp_path / "redis.log").stat().st_size > 0


def test_redis_without_persistence_forgets_after_kill(tmp_path: Path) -> None:
    service = start_redis(tmp_path, persistent=False)
    try:
        client = redis.Redis.from_url(service.url)
        client.set("gone", 1)
        client.close()
        service.kill()
        assert not service.alive()
        service = start_redis(tmp_path, persistent=False, port=service.port)
        client = redis.Redis.from_url(service.url)
        assert client.get("gone") is None
        client.close()
    finally:
        service.stop()


def test_start_failure_reports_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    with start_redis(tmp_path / "a", persistent=False) as first:
        with pytest.raises(RuntimeError, match="in use"):
            start_redis(tmp_path / "b", persistent=False, port=first.port)
        assert first.alive()


@pytest.mark.asyncio
async def test_mongo_upsert_and_unique_index(mongo: ServiceProcess) -> None:
    assert mongo.startup_seconds > 0
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url, serverSelectionTimeoutMS=5000)
    try:
        pages = client["test_services"]["pages"]
        await pages.create_index("url", unique=True)
        for status in (200, 304):
            await pages.update_one({"url": "https://example.com/"}, {"$set": {"status": status}}, upsert=True)
        docs = await pages.find({}, {"_id": 0}).to_list()
        assert docs == [{"url": "https://example.com/", "status": 304}]
        with pytest.raises(DuplicateKeyError):
            await pages.insert_one({"url": "https://example.com/"})
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_s3_put_get() -> None:
    with start_s3() as s3:
        log_path = s3.log_path
        session = aioboto3.Session()
        async with session.client(
            "s3",
            endpoint_url=s3.url,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
        ) as client:
            await client.create_bucket(Bucket="bodies")
            await client.put_object(Bucket="bodies", Key="a/b.html", Body=b"<html></html>")
            response = await client.get_object(Bucket="bodies", Key="a/b.html")
            async with response["Body"] as body:
                assert await body.read() == b"<html></html>"
    assert not log_path.exists()  # the temporary log goes with the service


def test_embedded_services_start_reuse_and_stop(tmp_path: Path) -> None:
    assert read_running(tmp_path) is None
    first = EmbeddedServices(tmp_path)
    try:
        state = first.ensure_running()
        assert state.started
        assert redis_answers(state.redis_url)
        recorded = json.loads((tmp_path / "services.json").read_text())
        assert set(recorded) == {"redis", "mongo"}
        assert os.stat(tmp_path / "services.json").st_mode & 0o077 == 0  # holds the Redis password
        # The embedded MongoDB is durable: its journal reaches the disk before a write is acknowledged.
        mongo_argv = Path(f"/proc/{first.processes['mongo'].pid}/cmdline").read_bytes().split(b"\0")
        assert b"--sync-on-commit" in mongo_argv

        second = EmbeddedServices(tmp_path)
        reused = second.ensure_running()
        assert not reused.started
        assert (reused.redis_url, reused.mongo_url) == (state.redis_url, state.mongo_url)
        second.stop()  # started nothing, so stops nothing
        assert read_running(tmp_path) == reused
    finally:
        first.stop()
    assert read_running(tmp_path) is None
    assert not (tmp_path / "services.json").exists()
    assert not redis_answers(state.redis_url)


def test_stop_running_stops_services_another_instance_started(tmp_path: Path) -> None:
    owner = EmbeddedServices(tmp_path)
    state = owner.ensure_running()
    processes = owner.processes.values()
    try:
        assert sorted(stop_running(tmp_path)) == ["mongo", "redis"]
        assert read_running(tmp_path) is None
        assert not redis_answers(state.redis_url)
        assert stop_running(tmp_path) == []
    finally:
        owner.stop()  # its processes are gone already; this must not fail
    assert len(processes) == 2
    assert not any(service.alive() for service in processes)
