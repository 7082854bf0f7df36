"""S3 puts signed by the blob store are accepted by a server that checks signatures; a missing body
is reported as missing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import pytest

from pipeline.embedded.processes import ServiceProcess
from pipeline.errors import BlobNotFound, BlobStoreError
from pipeline.settings import Settings
from pipeline.store.blobs import FileBlobStore, S3BlobStore, blob_key, environment_proxy
from tests.servers.s3 import start_s3

REGION = "eu-west-1"
BUCKET = "signed-puts"
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def checking_s3() -> Iterator[ServiceProcess]:
    """A moto server of its own: signatures are enforced on it, which would break other tests."""
    server = start_s3()
    yield server
    server.stop()


def _client(session: aioboto3.Session, server: ServiceProcess, service: str) -> Any:
    return session.client(service, endpoint_url=server.url, region_name=REGION)


@pytest.fixture(scope="module")
async def access_key(checking_s3: ServiceProcess) -> dict[str, str]:
    """An IAM user's key, made before moto starts checking signatures on every request."""
    admin = aioboto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    async with _client(admin, checking_s3, "iam") as iam, _client(admin, checking_s3, "s3") as s3:
        await iam.create_user(UserName="crawler")
        await iam.put_user_policy(UserName="crawler", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
        key = (await iam.create_access_key(UserName="crawler"))["AccessKey"]
        await s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{checking_s3.url}/moto-api/reset-auth", data=b"0") as response,
    ):
        assert response.status == 200, await response.text()
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


async def _put_and_read(server: ServiceProcess, access_key: dict[str, str], signing_secret: str, body: bytes) -> bytes:
    """Put `body` signed with `signing_secret`, read it back through the client (right key)."""
    session = aioboto3.Session(aws_access_key_id=access_key["id"], aws_secret_access_key=access_key["secret"])
    signing = aioboto3.Session(aws_access_key_id=access_key["id"], aws_secret_access_key=signing_secret)
    async with _client(session, server, "s3") as client:
        store = S3BlobStore(client, BUCKET, "bodies/")
        await store.open(await signing.get_credentials(), max_connections=4)
        try:
            key = await store.put(hashlib.sha256(body).hexdigest(), body, "text/html; charset=utf-8")
            return await store.get(key)
        finally:
            await store.close()


async def test_signed_put_is_accepted_and_stored(checking_s3: ServiceProcess, access_key: dict[str, str]) -> None:
    body = "<html><body>héllo</body></html>".encode()
    assert await _put_and_read(checking_s3, access_key, access_key["secret"], body) == body


async def test_badly_signed_put_is_refused_with_a_clear_error(
    checking_s3: ServiceProcess, access_key: dict[str, str]
) -> None:
    with pytest.raises(BlobStoreError, match="HTTP 403"):
        await _put_and_read(checking_s3, access_key, "not-the-secret", b"<html></html>")


def test_puts_use_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://bucket.s3.eu-west-1.amazonaws.com/") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "minio.internal")
    assert environment_proxy("https://bucket.s3.eu-west-1.amazonaws.com/") == "http://proxy.test:3128"
    assert environment_proxy("https://minio.internal/bucket/") is None
    assert environment_proxy("http://bucket.s3.eu-west-1.amazonaws.com/") is None  # no HTTP_PROXY set


async def test_a_missing_body_is_reported_as_missing(tmp_path: Path, settings: Settings, s3_client: Any) -> None:
    """Not found is not an outage: a replay fails that page at once instead of retrying it."""
    digest = hashlib.sha256(b"never stored").hexdigest()
    files = FileBlobStore(tmp_path / "blobs", "bodies/")
    with pytest.raises(BlobNotFound, match=f"no body stored under bodies/{digest[:2]}/{digest}"):
        await files.get(blob_key(files.prefix, digest))
    await s3_client.create_bucket(Bucket=settings.s3.bucket)
    s3 = S3BlobStore(s3_client, settings.s3.bucket, "bodies/")
    with pytest.raises(BlobNotFound, match=f"no body stored under bodies/{digest[:2]}/{digest}"):
        await s3.get(blob_key(s3.prefix, digest))
