"""Encryption at rest: a data key per tenant (AES-256-GCM), wrapped by the platform's master key.

A recording is sealed in segments, so neither sealing nor opening ever holds more than one (an hour of call
is 58 MB): "SBR2" | data key id (16 bytes) | nonce prefix (7) | segment size (4) | segments, each the
AES-256-GCM ciphertext of `segment size` plaintext bytes (the last one shorter, possibly empty) and its tag.
A segment's nonce is the prefix, its number (4 bytes) and a last-segment flag (1), the STREAM construction
(Hoang, Reyhanitabar, Rogaway, Vizar 2015): segments swapped, dropped or cut off after any segment fail to
open, as does a file whose last segment is missing. The associated data (header, tenant, recording id)
binds every segment to its tenant and recording, so a file moved under another tenant's or recording's name
does not open, and a flipped bit anywhere fails a tag. Files sealed whole ("SBR1", one nonce, one tag)
before segments existed still open. Data keys live in PostgreSQL
(`recording_keys`, under row-level security) only wrapped by the master key; the master key comes from
configuration: a local key file by default (32 random bytes, mode 0600, made on first start), or any
`MasterKey` (a cloud KMS's wrap/unwrap calls fit the same two methods).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.kernel.ids import new_id

__all__ = [
    "BLOB_MAGIC",
    "SEGMENT",
    "KeyRing",
    "LocalMasterKey",
    "MasterKey",
    "Opener",
    "Sealer",
    "VaultError",
    "blob_key_id",
    "open_blob",
    "seal",
]

BLOB_MAGIC = b"SBR2"
WHOLE_MAGIC = b"SBR1"  # sealed whole (before segments): still opened
_NONCE = 12
_HEADER = len(WHOLE_MAGIC) + 16 + _NONCE
_PREFIX = 7
_SEGMENTED = len(BLOB_MAGIC) + 16 + _PREFIX + 4
_TAG = 16
SEGMENT = 64 * 1024
MAX_SEGMENT = 1 << 24


class VaultError(Exception):
    """A key or a recording that cannot be used; the message says why (never the key material)."""


@runtime_checkable
class MasterKey(Protocol):
    """Wraps tenants' data keys. `context` is bound to the wrapped key (tenant and key id): a KMS passes it
    as its encryption context / additional authenticated data. `key_id` names the master (stored beside
    each wrapped key: "local:..." for a key file, e.g. "aws-kms:<key arn>" for a KMS) and must be stable.
    `wrap` and `unwrap` may block (a KMS's network call): the KeyRing calls them on a worker thread, once
    per data key and process (unwrapped keys are kept in memory). A failure raises; VaultError when the
    wrapped key itself is refused (another master, tampered)."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


@dataclass(frozen=True)
class LocalMasterKey:
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        # Names the key without revealing it: which master wrapped a data key, for rotation and errors.
        return "local:" + hashlib.sha256(b"sb-master-key-id" + self.secret).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, path: Path) -> LocalMasterKey:
        """The key in `path`, made (32 random bytes, 0600) if the file does not exist."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
                f.flush()
                os.fsync(f.fileno())
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> LocalMasterKey:
        """The key in an existing file. A file others can read, or of the wrong size, is refused: a silently
        weak master key is worse than none."""
        path = Path(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise VaultError(f"the master key file {path} does not exist") from None
        if mode & 0o077:
            raise VaultError(
                f"the master key file {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        secret = path.read_bytes()
        if len(secret) != 32:
            raise VaultError(f"the master key file {path} must hold 32 bytes, not {len(secret)}")
        return cls(secret)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.secret).encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self.secret).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)
        except InvalidTag:
            raise VaultError(
                "a data key does not unwrap with this master key (another key, or tampered)"
            ) from None


def _aad(header: bytes, tenant_id: uuid.UUID, recording_id: uuid.UUID) -> bytes:
    return header + tenant_id.bytes + recording_id.bytes


def _segment_nonce(prefix: bytes, number: int, last: bool) -> bytes:
    if number >= 1 << 32:
        raise VaultError("a sealed recording has at most 2**32 segments")
    return prefix + number.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Sealer:
    """Seals a plaintext given in pieces (sans-IO): `update` and `finish` return the sealed bytes to write,
    the header first. Holds at most one segment."""

    def __init__(
        self,
        data_key: bytes,
        key_id: uuid.UUID,
        tenant_id: uuid.UUID,
        recording_id: uuid.UUID,
        *,
        segment: int = SEGMENT,
    ) -> None:
        if not 1 <= segment <= MAX_SEGMENT:
            raise ValueError(f"segment size {segment} out of range")
        self._aead = AESGCM(data_key)
        self._prefix = os.urandom(_PREFIX)
        self._segment = segment
        header = BLOB_MAGIC + key_id.bytes + self._prefix + segment.to_bytes(4, "big")
        self._aad = _aad(header, tenant_id, recording_id)
        self._out = bytearray(header)
        self._pending = bytearray()
        self._number = 0
        self.done = False

    def update(self, data: bytes) -> bytes:
        self._pending += data
        # A segment goes out once more plaintext follows it: only then is it known not to be the last.
        while len(self._pending) > self._segment:
            self._seal(bytes(self._pending[: self._segment]), last=False)
            del self._pending[: self._segment]
        out, self._out = bytes(self._out), bytearray()
        return out

    def finish(self) -> bytes:
        if self.done:
            raise VaultError("this recording is sealed already")
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        self.done = True
        out, self._out = bytes(self._out), bytearray()
        return out

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        nonce = _segment_nonce(self._prefix, self._number, last)
        self._out += self._aead.encrypt(nonce, plaintext, self._aad)
        self._number += 1


class Opener:
    """Opens a sealed recording given in pieces (sans-IO): `feed` returns the plaintext of every segment
    complete and authentic so far, `finish` the last one. Nothing unauthenticated is ever returned; a file
    cut short, reordered or tampered with raises `VaultError` at the first segment that does not open."""

    def __init__(self, data_key: bytes, tenant_id: uuid.UUID, recording_id: uuid.UUID) -> None:
        self._aead = AESGCM(data_key)
        self._tenant_id = tenant_id
        self._recording_id = recording_id
        self._buffer = bytearray()
        self._whole = False
        self._segment = 0
        self._prefix = b""
        self._aad = b""
        self._number = 0

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if not self._aad and not self._whole:
            if len(self._buffer) < len(BLOB_MAGIC):
                return b""
            if self._buffer.startswith(WHOLE_MAGIC):
                self._whole = True  # one tag at the very end: opened by `finish`
            elif not self._buffer.startswith(BLOB_MAGIC):
                raise VaultError("not a sealed recording (bad header)")
            elif len(self._buffer) < _SEGMENTED:
                return b""
            else:
                header = bytes(self._buffer[:_SEGMENTED])
                self._prefix = header[len(BLOB_MAGIC) + 16 : len(BLOB_MAGIC) + 16 + _PREFIX]
                self._segment = int.from_bytes(header[-4:], "big")
                if not 1 <= self._segment <= MAX_SEGMENT:
                    raise VaultError("not a sealed recording (bad segment size)")
                self._aad = _aad(header, self._tenant_id, self._recording_id)
                del self._buffer[:_SEGMENTED]
        if self._whole:
            return b""
        out = bytearray()
        size = self._segment + _TAG
        while len(self._buffer) > size:  # more follows: not the last segment
            out += self._open(bytes(self._buffer[:size]), last=False)
            del self._buffer[:size]
        return bytes(out)

    def finish(self) -> bytes:
        if self._whole:
            return open_blob_whole(self._aead, self._tenant_id, self._recording_id, bytes(self._buffer))
        if not self._aad:
            raise VaultError("not a sealed recording (bad header)")
        if len(self._buffer) < _TAG:
            raise VaultError("the recording is cut short (its last segment is missing)")
        out = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return out

    def _open(self, sealed: bytes, *, last: bool) -> bytes:
        try:
            return self._aead.decrypt(_segment_nonce(self._prefix, self._number, last), sealed, self._aad)
        except InvalidTag:
            raise VaultError(
                "the recording is corrupt, cut short or not this tenant's (authentication failed)"
            ) from None
        finally:
            self._number += 1


def seal(
    data_key: bytes, key_id: uuid.UUID, tenant_id: uuid.UUID, recording_id: uuid.UUID, plaintext: bytes
) -> bytes:
    """A whole plaintext sealed at once (segmented like every recording)."""
    sealer = Sealer(data_key, key_id, tenant_id, recording_id)
    return sealer.update(plaintext) + sealer.finish()


def blob_key_id(blob: bytes) -> uuid.UUID:
    """The data key a sealed file names (its first 20 bytes are enough)."""
    if len(blob) < len(BLOB_MAGIC) + 16 or not blob.startswith((BLOB_MAGIC, WHOLE_MAGIC)):
        raise VaultError("not a sealed recording (bad header)")
    return uuid.UUID(bytes=blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + 16])


def open_blob_whole(aead: AESGCM, tenant_id: uuid.UUID, recording_id: uuid.UUID, blob: bytes) -> bytes:
    if len(blob) < _HEADER + _TAG:
        raise VaultError("not a sealed recording (bad header)")
    header = blob[:_HEADER]
    try:
        return aead.decrypt(header[-_NONCE:], blob[_HEADER:], _aad(header, tenant_id, recording_id))
    except InvalidTag:
        raise VaultError("the recording is corrupt or not this tenant's (authentication failed)") from None


def open_blob(data_key: bytes, tenant_id: uuid.UUID, recording_id: uuid.UUID, blob: bytes) -> bytes:
    opener = Opener(data_key, tenant_id, recording_id)
    return opener.feed(blob) + opener.finish()


def _context(tenant_id: uuid.UUID, key_id: uuid.UUID) -> bytes:
    return b"sb-data-key" + tenant_id.bytes + key_id.bytes


class KeyRing:
    """Tenants' data keys, read through a tenant-scoped connection (so RLS decides who sees a key) and
    kept unwrapped in memory by (tenant, key id) once read.

    `master` wraps every new data key; `previous` master keys (a master key rotation under way) still
    unwrap the data keys they wrapped until `rewrap` has moved those under `master`. A data key never
    changes in a rewrap, so every recording it sealed stays readable throughout."""

    def __init__(self, master: MasterKey, previous: Sequence[MasterKey] = ()) -> None:
        self.master = master
        self.previous = [m for m in previous if m.key_id != master.key_id]
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], bytes] = {}

    def _master(self, key_id: str) -> MasterKey | None:
        return next((m for m in (self.master, *self.previous) if m.key_id == key_id), None)

    async def rewrap(self, conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
        """Every data key of `tenant_id` wrapped by a previous master, wrapped again by the current one; how
        many. A key no configured master unwraps is an error (nothing is changed for this tenant)."""
        rows = await conn.fetch(
            """SELECT id, master_key_id, wrapped FROM recording_keys
               WHERE tenant_id = $1 AND master_key_id <> $2 FOR UPDATE""",
            tenant_id,
            self.master.key_id,
        )
        for row in rows:
            context = _context(tenant_id, row["id"])
            data_key = await self._unwrap(tenant_id, row)
            await conn.execute(
                "UPDATE recording_keys SET master_key_id = $2, wrapped = $3 WHERE id = $1",
                row["id"],
                self.master.key_id,
                await asyncio.to_thread(self.master.wrap, data_key, context),
            )
        return len(rows)

    async def current(self, conn: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
        """The key new recordings of `tenant_id` are sealed with, made on first use."""
        row = await conn.fetchrow(
            """SELECT id, master_key_id, wrapped FROM recording_keys
               WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1""",
            tenant_id,
        )
        if row is None:
            return await self.rotate(conn, tenant_id)
        return row["id"], await self._unwrap(tenant_id, row)

    async def get(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bytes:
        cached = self._cache.get((tenant_id, key_id))
        if cached is not None:
            return cached
        row = await conn.fetchrow(
            "SELECT id, master_key_id, wrapped FROM recording_keys WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            key_id,
        )
        if row is None:
            raise VaultError("the recording's data key is not this tenant's")
        return await self._unwrap(tenant_id, row)

    async def rotate(self, conn: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
        """Retire the tenant's current key (it still opens what it sealed) and make a new one."""
        await conn.execute(
            "UPDATE recording_keys SET retired_at = clock_timestamp() WHERE tenant_id = $1 AND retired_at IS NULL",
            tenant_id,
        )
        key_id, data_key = new_id(), AESGCM.generate_key(bit_length=256)
        wrapped = await asyncio.to_thread(self.master.wrap, data_key, _context(tenant_id, key_id))
        await conn.execute(
            "INSERT INTO recording_keys (id, tenant_id, master_key_id, wrapped) VALUES ($1, $2, $3, $4)",
            key_id,
            tenant_id,
            self.master.key_id,
            wrapped,
        )
        self._cache[(tenant_id, key_id)] = data_key
        return key_id, data_key

    async def _unwrap(self, tenant_id: uuid.UUID, row: asyncpg.Record) -> bytes:
        key_id = row["id"]
        cached = self._cache.get((tenant_id, key_id))
        if cached is not None:
            return cached
        master = self._master(row["master_key_id"])
        if master is None:
            raise VaultError(
                f"data key {key_id} is wrapped by master key {row['master_key_id']}, which is not configured"
                " (SB_RECORDING_MASTER_KEY, SB_RECORDING_KEY_FILE, SB_RECORDING_OLD_KEY_FILES)"
            )
        data_key = await asyncio.to_thread(master.unwrap, bytes(row["wrapped"]), _context(tenant_id, key_id))
        self._cache[(tenant_id, key_id)] = data_key
        return data_key
