"""Encryption at rest: a data key per tenant (AES-256-GCM), wrapped by the platform's master key.

A recording is sealed as MAGIC | data key id (16 bytes) | nonce (12) | AES-256-GCM ciphertext and tag; the
associated data binds it to its tenant and recording id, so a file moved under another tenant's or
recording's name does not open, and a flipped bit anywhere fails the tag. Data keys live in PostgreSQL
(`recording_keys`, under row-level security) only wrapped by the master key; the master key comes from
configuration: a local key file by default (32 random bytes, mode 0600, made on first start), or any
`MasterKey` (a cloud KMS's wrap/unwrap calls fit the same two methods).
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.kernel.ids import new_id

__all__ = [
    "BLOB_MAGIC",
    "KeyRing",
    "LocalMasterKey",
    "MasterKey",
    "VaultError",
    "blob_key_id",
    "open_blob",
    "seal",
]

BLOB_MAGIC = b"SBR1"
_NONCE = 12
_HEADER = len(BLOB_MAGIC) + 16 + _NONCE


class VaultError(Exception):
    """A key or a recording that cannot be used; the message says why (never the key material)."""


class MasterKey(Protocol):
    """Wraps tenants' data keys. `context` is bound to the wrapped key (tenant and key id)."""

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
        """The key in `path`, made (32 random bytes, 0600) if the file does not exist. A file others can
        read, or of the wrong size, is refused: a silently weak master key is worse than none."""
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
        mode = stat.S_IMODE(path.stat().st_mode)
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


def seal(
    data_key: bytes, key_id: uuid.UUID, tenant_id: uuid.UUID, recording_id: uuid.UUID, plaintext: bytes
) -> bytes:
    header = BLOB_MAGIC + key_id.bytes + os.urandom(_NONCE)
    return header + AESGCM(data_key).encrypt(
        header[-_NONCE:], plaintext, _aad(header, tenant_id, recording_id)
    )


def blob_key_id(blob: bytes) -> uuid.UUID:
    if len(blob) < _HEADER + 16 or not blob.startswith(BLOB_MAGIC):
        raise VaultError("not a sealed recording (bad header)")
    return uuid.UUID(bytes=blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + 16])


def open_blob(data_key: bytes, tenant_id: uuid.UUID, recording_id: uuid.UUID, blob: bytes) -> bytes:
    blob_key_id(blob)
    header = blob[:_HEADER]
    try:
        return AESGCM(data_key).decrypt(
            header[-_NONCE:], blob[_HEADER:], _aad(header, tenant_id, recording_id)
        )
    except InvalidTag:
        raise VaultError("the recording is corrupt or not this tenant's (authentication failed)") from None


def _context(tenant_id: uuid.UUID, key_id: uuid.UUID) -> bytes:
    return b"sb-data-key" + tenant_id.bytes + key_id.bytes


class KeyRing:
    """Tenants' data keys, read through a tenant-scoped connection (so RLS decides who sees a key) and
    kept unwrapped in memory by (tenant, key id) once read."""

    def __init__(self, master: MasterKey) -> None:
        self.master = master
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], bytes] = {}

    async def current(self, conn: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
        """The key new recordings of `tenant_id` are sealed with, made on first use."""
        row = await conn.fetchrow(
            """SELECT id, master_key_id, wrapped FROM recording_keys
               WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1""",
            tenant_id,
        )
        if row is None:
            return await self.rotate(conn, tenant_id)
        return row["id"], self._unwrap(tenant_id, row)

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
        return self._unwrap(tenant_id, row)

    async def rotate(self, conn: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[uuid.UUID, bytes]:
        """Retire the tenant's current key (it still opens what it sealed) and make a new one."""
        await conn.execute(
            "UPDATE recording_keys SET retired_at = clock_timestamp() WHERE tenant_id = $1 AND retired_at IS NULL",
            tenant_id,
        )
        key_id, data_key = new_id(), AESGCM.generate_key(bit_length=256)
        await conn.execute(
            "INSERT INTO recording_keys (id, tenant_id, master_key_id, wrapped) VALUES ($1, $2, $3, $4)",
            key_id,
            tenant_id,
            self.master.key_id,
            self.master.wrap(data_key, _context(tenant_id, key_id)),
        )
        self._cache[(tenant_id, key_id)] = data_key
        return key_id, data_key

    def _unwrap(self, tenant_id: uuid.UUID, row: asyncpg.Record) -> bytes:
        key_id = row["id"]
        cached = self._cache.get((tenant_id, key_id))
        if cached is not None:
            return cached
        if row["master_key_id"] != self.master.key_id:
            raise VaultError(
                f"data key {key_id} is wrapped by master key {row['master_key_id']}, not this one"
            )
        data_key = self.master.unwrap(bytes(row["wrapped"]), _context(tenant_id, key_id))
        self._cache[(tenant_id, key_id)] = data_key
        return data_key
