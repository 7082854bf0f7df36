"""Body storage: S3 in production, a local folder for the embedded default, one small interface.

Keys are derived from the body's sha256 only (`<prefix><sha[:2]>/<sha>`), so identical content
is stored once and no URL or page content can steer a key outside the configured prefix.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass, url2pathname

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from pipeline.errors import BlobNotFound, BlobStoreError
from pipeline.settings import S3Settings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PROBE_KEY = "pipeline-probe"


class BlobStore(Protocol):
    """Where page bodies go. `put` is idempotent: the same body always lands on the same key."""

    location: str

    async def put(self, sha256: str, body: bytes, content_type: str) -> str: ...

    async def get(self, key: str) -> bytes:
        """The body stored under `key`; `BlobNotFound` if there is none."""
        ...


def clean_prefix(prefix: str) -> str:
    """A key prefix with no empty, `.` or `..` segments, ending in `/` unless empty."""
    parts = [p for p in prefix.strip().strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"blob prefix may not contain '.' or '..' segments: {prefix!r}")
    return "/".join(parts) + "/" if parts else ""


def blob_key(prefix: str, sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError("blob keys are made from a lowercase hex sha256 digest only")
    return f"{prefix}{sha256[:2]}/{sha256}"


class FileBlobStore:
    """Bodies as files under a folder: the embedded default, no S3 needed."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = root.resolve()
        self.prefix = clean_prefix(prefix)
        self.location = self.root.as_uri()

    async def put(self, sha256: str, body: bytes, content_type: str) -> str:
        key = blob_key(self.prefix, sha256)
        path = self.root / key
        if not path.exists():
            # Small local writes: doing them inline costs less than a thread hop.
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.replace(tmp, path)  # atomic: readers never see half a body
        return key

    async def get(self, key: str) -> bytes:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"blob key outside the store: {key!r}")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no body stored under {key} in {self.location}") from None


@contextlib.asynccontextmanager
async def s3_client(s3: S3Settings) -> AsyncIterator[tuple[Any, Any]]:
    """An aioboto3 S3 client for `[s3]` (endpoint, region, pool size), with the credentials its
    session found (None if there are none)."""
    import aioboto3
    from aiobotocore.config import AioConfig

    config = AioConfig(
        max_pool_connections=s3.max_pool_connections,
        # Checksums on every put cost CPU for nothing on a content-addressed store.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    session = aioboto3.Session()
    async with session.client(
        "s3", endpoint_url=s3.endpoint_url or None, region_name=s3.region, config=config
    ) as client:
        yield client, await session.get_credentials()


def read_only_store(location: str, s3: Any) -> BlobStore:
    """The store a page document's `blob_store` names, for reading its bodies back.

    `file://` locations are `FileBlobStore` roots; `s3://bucket/prefix/` ones are read through
    the S3 client `s3` (which may be None when no document needs it).
    """
    parts = urlsplit(location)
    if parts.scheme == "file":
        return FileBlobStore(Path(url2pathname(parts.path)))
    if parts.scheme == "s3" and parts.netloc and s3 is not None:
        return S3BlobStore(s3, parts.netloc, parts.path)
    raise BlobStoreError(f"cannot read bodies from {location!r}")


def environment_proxy(url: str) -> str | None:
    """The proxy that `HTTP(S)_PROXY` / `NO_PROXY` name for `url`, as botocore would use.

    Looked up once: aiohttp's `trust_env` would look again (and read ~/.netrc in a thread) on
    every request.
    """
    parts = urlsplit(url)
    if parts.hostname is None or proxy_bypass(parts.hostname):
        return None
    return getproxies_environment().get(parts.scheme)


class KnownDigestSigner(S3SigV4Auth):  # type: ignore[misc]
    """SigV4 for a body whose sha256 is already known: it is the blob's key."""

    def payload(self, request: AWSRequest) -> str:
        digest: str = request.context["sha256"]
        return digest


class S3BlobStore:
    """Bodies as S3 objects.

    Reads and the bucket check go through the worker's aioboto3 client. Puts, one per page, are
    the same request on the wire as `put_object`, but signed here with botocore's SigV4 signer
    and the aioboto3 session's credentials, and sent on a session of their own: botocore's per-call
    machinery (endpoint rules, event hooks, request building, response parsing) costs more CPU
    than the rest of the put together (bench/RESULTS.md). The payload hash that is signed is the
    body's sha256, the one its key is made from, so S3 itself checks every body it stores.
    """

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = clean_prefix(prefix)
        self.location = f"s3://{bucket}/{self.prefix}"
        self._session: aiohttp.ClientSession | None = None
        self._bucket_url = ""
        self._region = "us-east-1"
        self._credentials: Any = None
        self._proxy: str | None = None

    async def open(
        self, credentials: Any, *, max_connections: int, connect_timeout: float = 10, read_timeout: float = 60
    ) -> None:
        """Check the bucket and prepare signed puts with `credentials` (the aioboto3 session's)."""
        if credentials is None:
            raise BlobStoreError("no S3 credentials found (AWS_ACCESS_KEY_ID, a profile or an instance role)")
        await self.ensure_bucket()
        # Where botocore would send a put for this bucket (virtual-host or path style, region,
        # custom endpoint): asked of botocore once, not worked out again here.
        presigned = await self._client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        url = presigned.split("?", 1)[0]
        if not url.endswith("/" + _PROBE_KEY):
            raise BlobStoreError(f"unexpected S3 object URL for bucket {self.bucket!r}: {url}")
        self._bucket_url = url[: -len(_PROBE_KEY)]
        self._credentials = credentials
        self._region = self._client.meta.region_name or self._region
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout),
        )
        self._proxy = environment_proxy(self._bucket_url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(self, sha256: str, body: bytes, content_type: str) -> str:
        key = blob_key(self.prefix, sha256)
        content_type = content_type or "application/octet-stream"
        if self._session is None:
            raise RuntimeError("S3BlobStore.put before open() or after close()")
        url = self._bucket_url + quote(key, safe="/~")
        request = AWSRequest(method="PUT", url=url, data=body, headers={"Content-Type": content_type})
        request.context["sha256"] = sha256
        credentials = await self._credentials.get_frozen_credentials()  # refreshed when they expire
        KnownDigestSigner(credentials, "s3", self._region).add_auth(request)
        try:
            headers = dict(request.headers.items())
            async with self._session.put(url, data=body, headers=headers, proxy=self._proxy) as response:
                if response.status != 200:
                    detail = (await response.text(errors="replace"))[:300]
                    raise BlobStoreError(f"S3 put of {key} failed: HTTP {response.status}: {detail}")
                await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BlobStoreError(f"S3 put of {key} failed: {type(exc).__name__}: {exc}") from exc
        return key

    async def get(self, key: str) -> bytes:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in ("NoSuchKey", "404", "NotFound"):
                raise
            raise BlobNotFound(f"no body stored under {key} in s3://{self.bucket}/") from None
        async with response["Body"] as stream:
            data: bytes = await stream.read()
        return data

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing, so a fresh S3-compatible server works out of the box."""
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            await self._client.create_bucket(Bucket=self.bucket)
