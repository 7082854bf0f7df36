"""Where an export goes: a file, a stream (stdout), or an S3 object, written chunk by chunk.

A file is written under a temporary name beside it and renamed when the export is complete; an
S3 object is a multipart upload completed only at the end (aborted on failure). Either way a
reader never finds half an export under the name asked for. A stream cannot be taken back: what
was written before a failure stays written, and the failure is reported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from pipeline.errors import ExportFailed, InvalidExport
from pipeline.settings import S3Settings
from pipeline.store.blobs import s3_client

#: S3 parts are this big (S3 wants 5 MiB at least but for the last): what one upload holds in memory.
PART_BYTES = 8 * 1024 * 1024

Output = str | os.PathLike[str] | BinaryIO


class Destination(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...


def is_s3(out: Output) -> bool:
    return isinstance(out, str) and out.startswith("s3://")


def s3_target(out: str) -> tuple[str, str]:
    """The bucket and key of `s3://bucket/key`; `InvalidExport` if either is missing."""
    parts = urlsplit(out)
    key = parts.path.lstrip("/")
    if not parts.netloc or not key or key.endswith("/"):
        raise InvalidExport(f"an S3 destination is s3://BUCKET/KEY, with a key that names an object: {out!r}")
    return parts.netloc, key


@contextlib.asynccontextmanager
async def open_destination(out: Output, content_type: str, s3: S3Settings) -> AsyncIterator[Destination]:
    """The destination `out` names, committed when the block ends and aborted if it raises."""
    async with contextlib.AsyncExitStack() as stack:
        destination: Destination
        if isinstance(out, (str, os.PathLike)) and is_s3(out):
            bucket, key = s3_target(str(out))
            client, _ = await stack.enter_async_context(s3_client(s3))
            destination = S3Destination(client, bucket, key, content_type, PART_BYTES)
        elif isinstance(out, (str, os.PathLike)):
            destination = FileDestination(Path(out))
        else:
            destination = StreamDestination(out)
        try:
            yield destination
        except BaseException:
            await destination.abort()
            raise
        await destination.commit()


class StreamDestination:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except OSError as exc:
            raise ExportFailed(f"cannot write the export: {exc}") from exc

    async def commit(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise ExportFailed(f"cannot write the export: {exc}") from exc

    async def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()


class FileDestination:
    """`path`, written as `.NAME.RANDOM.part` beside it and renamed into place at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            raise ExportFailed(f"cannot write the export to {path}: it is a directory")
        self._temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            # Created as an ordinary file would be (the umask applies), unlike mkstemp's 0600.
            self._file = self._temporary.open("xb")
        except OSError as exc:
            raise ExportFailed(f"cannot write the export to {path}: {exc.strerror or exc}") from exc

    async def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise ExportFailed(f"cannot write the export to {self.path}: {exc.strerror or exc}") from exc

    async def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temporary, self.path)
        except OSError as exc:
            await self.abort()
            raise ExportFailed(f"cannot write the export to {self.path}: {exc.strerror or exc}") from exc

    async def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._temporary.unlink(missing_ok=True)


class S3Destination:
    """An S3 object: one put when the export is small, else a multipart upload of `PART_BYTES` parts."""

    def __init__(self, client: Any, bucket: str, key: str, content_type: str, part_bytes: int) -> None:
        self._client = client
        self.bucket, self.key = bucket, key
        self._content_type = content_type
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            await self._upload_part(part)

    async def _upload_part(self, part: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self._upload_id is None:
                created = await self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self._content_type
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = await self._client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=part
            )
        except (BotoCoreError, ClientError) as exc:
            raise ExportFailed(f"cannot write the export to s3://{self.bucket}/{self.key}: {exc}") from exc
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def commit(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self._upload_id is None:
                await self._client.put_object(
                    Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), ContentType=self._content_type
                )
                return
            if self._buffer:
                await self._upload_part(bytes(self._buffer))
                self._buffer.clear()
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        except (BotoCoreError, ClientError) as exc:
            await self.abort()
            raise ExportFailed(f"cannot write the export to s3://{self.bucket}/{self.key}: {exc}") from exc

    async def abort(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._buffer.clear()
        if self._upload_id is not None:
            with contextlib.suppress(BotoCoreError, ClientError):
                await self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
