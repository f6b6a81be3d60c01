"""Where sealed recordings are kept: a `BlobStore` by key. The local filesystem by default; an
S3-compatible store behind the same calls (store_s3.py). Recordings go in and out as streams of pieces
(`put_stream`, `open_stream`), so an hour of call is never held whole; `put`/`get` are for small blobs."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["BlobNotFound", "BlobStore", "LocalStore", "recording_key"]

# <tenant>/<recording>.sbrec (the WAV master) or .opus.sbrec (its Opus copy): two UUIDs, so a key never
# climbs out of the store's root.
_KEY = re.compile(r"^[0-9a-f-]{36}/[0-9a-f-]{36}(\.opus)?\.sbrec$")


class BlobNotFound(KeyError):
    pass


def recording_key(tenant_id: object, recording_id: object, copy: str = "") -> str:
    return f"{tenant_id}/{recording_id}{'.' + copy if copy else ''}.sbrec"


def _check(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a recording key")
    return key


READ_PIECE = 256 * 1024


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def put_stream(self, key: str, pieces: AsyncIterable[bytes]) -> int:
        """Stored whole or not at all; the size stored."""
        ...

    async def open_stream(self, key: str) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in pieces; `BlobNotFound` before the first when there is none."""
        ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalStore:
    """Files under `root`, written atomically (temporary file, fsync, rename, fsync of the directory):
    a recording is either whole on disk or absent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def put(self, key: str, data: bytes) -> None:
        await self.put_stream(key, _one(data))

    async def put_stream(self, key: str, pieces: AsyncIterable[bytes]) -> int:
        path = self.root / _check(key)
        tmp = path.with_name(path.name + ".tmp")
        file = await asyncio.to_thread(_create, tmp)
        size = 0
        try:
            async for piece in pieces:
                await asyncio.to_thread(file.write, piece)
                size += len(piece)
            await asyncio.to_thread(_sync_close, file)
        except BaseException:
            file.close()
            tmp.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(_publish, tmp, path)
        return size

    async def get(self, key: str) -> bytes:
        return b"".join([piece async for piece in await self.open_stream(key)])

    async def open_stream(self, key: str) -> AsyncGenerator[bytes, None]:
        path = self.root / _check(key)
        try:
            file = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return _read_pieces(file)

    async def delete(self, key: str) -> None:
        path = self.root / _check(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            pass

    async def close(self) -> None:
        return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _create(tmp: Path) -> BinaryIO:
    tmp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _sync_close(file: BinaryIO) -> None:
    with file:
        file.flush()
        os.fsync(file.fileno())


def _publish(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def _read_pieces(file: BinaryIO) -> AsyncGenerator[bytes, None]:
    try:
        while piece := await asyncio.to_thread(file.read, READ_PIECE):
            yield piece
    finally:
        file.close()
