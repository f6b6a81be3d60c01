"""Sealed recordings in an S3-compatible object store (AWS S3, MinIO, Ceph, moto's server in tests).

boto3 is synchronous: each call runs on a worker thread. Objects are sealed before they get here, so the
store never sees audio; its own server-side encryption may be on as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .store import READ_PIECE, BlobNotFound, _check

__all__ = ["S3Store"]

# S3's multipart parts are at least 5 MiB (but the last): a recording goes up in parts of this size, so a
# long one is never held whole.
PART = 8 * 1024 * 1024


class S3Store:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 recording store needs a bucket (s3://BUCKET[/prefix])")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            # Path-style addressing works with every S3-compatible server (MinIO, moto) and with AWS.
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _key(self, key: str) -> str:
        _check(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    async def put_stream(self, key: str, pieces: AsyncIterable[bytes]) -> int:
        name = self._key(key)
        part = bytearray()
        size = 0
        upload: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for piece in pieces:
                part += piece
                size += len(piece)
                if len(part) >= PART:
                    if upload is None:
                        created = await asyncio.to_thread(
                            self._client.create_multipart_upload, Bucket=self.bucket, Key=name
                        )
                        upload = created["UploadId"]
                    parts.append(await self._upload_part(name, upload, len(parts) + 1, bytes(part)))
                    part.clear()
            if upload is None:  # small: one object
                await asyncio.to_thread(
                    self._client.put_object, Bucket=self.bucket, Key=name, Body=bytes(part)
                )
                return size
            if part:
                parts.append(await self._upload_part(name, upload, len(parts) + 1, bytes(part)))
            await asyncio.to_thread(
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if upload is not None:  # nothing half-made stays behind (and is billed)
                await asyncio.to_thread(
                    self._client.abort_multipart_upload, Bucket=self.bucket, Key=name, UploadId=upload
                )
            raise
        return size

    async def _upload_part(self, name: str, upload: str, number: int, body: bytes) -> dict[str, Any]:
        done = await asyncio.to_thread(
            self._client.upload_part,
            Bucket=self.bucket,
            Key=name,
            UploadId=upload,
            PartNumber=number,
            Body=body,
        )
        return {"ETag": done["ETag"], "PartNumber": number}

    async def get(self, key: str) -> bytes:
        return b"".join([piece async for piece in await self.open_stream(key)])

    async def open_stream(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from None
            raise
        return _pieces(response["Body"])

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


async def _pieces(body: Any) -> AsyncGenerator[bytes, None]:
    try:
        while piece := await asyncio.to_thread(body.read, READ_PIECE):
            yield piece
    finally:
        body.close()
