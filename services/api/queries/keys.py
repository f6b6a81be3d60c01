"""API keys' SQL (handlers: services/api/keys.py; the lookup by hash that authenticates is in auth.py)."""

from __future__ import annotations

import uuid

import asyncpg

from ..crud import get_row

__all__ = ["COLUMNS", "get", "insert", "revoke"]

# Never the hash: a key's secret is shown once, at creation, and only its prefix afterwards.
COLUMNS = "id, name, role, prefix, created_at, revoked_at, last_used_at"


async def insert(
    conn: asyncpg.Connection,
    key_id: uuid.UUID,
    tenant_id: uuid.UUID,
    name: str,
    role: str,
    prefix: str,
    digest: bytes,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO api_keys (id, tenant_id, name, role, prefix, key_hash)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}""",
        key_id,
        tenant_id,
        name,
        role,
        prefix,
        digest,
    )
    return row


async def get(conn: asyncpg.Connection, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "api_keys", COLUMNS, key_id)


async def revoke(conn: asyncpg.Connection, key_id: uuid.UUID) -> str | None:
    """Revoke the key (a revoked key keeps its first revocation time); its role, None: no such key."""
    role: str | None = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING role", key_id
    )
    return role
