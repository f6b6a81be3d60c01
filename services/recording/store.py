"""Where sealed recordings are kept: a `BlobStore` by key. The local filesystem by default; an
S3-compatible store behind the same four calls (store_s3.py)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Protocol

__all__ = ["BlobNotFound", "BlobStore", "LocalStore", "recording_key"]

# <tenant>/<recording>.sbrec: two UUIDs, so a key never climbs out of the store's root.
_KEY = re.compile(r"^[0-9a-f-]{36}/[0-9a-f-]{36}\.sbrec$")


class BlobNotFound(KeyError):
    pass


def recording_key(tenant_id: object, recording_id: object) -> str:
    return f"{tenant_id}/{recording_id}.sbrec"


def _check(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a recording key")
    return key


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalStore:
    """Files under `root`, written atomically (temporary file, fsync, rename, fsync of the directory):
    a recording is either whole on disk or absent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, _check(key), data)

    def _put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def get(self, key: str) -> bytes:
        path = self.root / _check(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        path = self.root / _check(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            pass

    async def close(self) -> None:
        return None
