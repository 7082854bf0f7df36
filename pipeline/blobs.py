"""Body storage: S3 in production, a local folder for the embedded default, one small interface.

Keys are derived from the body's sha256 only (`<prefix><sha[:2]>/<sha>`), so identical content
is stored once and no URL or page content can steer a key outside the configured prefix.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore(Protocol):
    """Where page bodies go. `put` is idempotent: the same body always lands on the same key."""

    location: str

    async def put(self, sha256: str, body: bytes, content_type: str) -> str: ...

    async def get(self, key: str) -> bytes: ...


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
        return path.read_bytes()


class S3BlobStore:
    """Bodies as S3 objects, through the worker's one aioboto3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = clean_prefix(prefix)
        self.location = f"s3://{bucket}/{self.prefix}"

    async def put(self, sha256: str, body: bytes, content_type: str) -> str:
        key = blob_key(self.prefix, sha256)
        await self._client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type or "application/octet-stream"
        )
        return key

    async def get(self, key: str) -> bytes:
        response = await self._client.get_object(Bucket=self.bucket, Key=key)
        async with response["Body"] as stream:
            data: bytes = await stream.read()
        return data

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing, so a fresh S3-compatible server works out of the box."""
        from botocore.exceptions import ClientError

        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            await self._client.create_bucket(Bucket=self.bucket)
