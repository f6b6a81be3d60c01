"""Widget keys' SQL (handlers: services/api/widget.py; a web caller's session: services/api/widget_calls.py)."""

from __future__ import annotations

import uuid

import asyncpg

from ..crud import get_row

__all__ = ["COLUMNS", "by_public_key", "existing_queues", "flow_of", "get", "insert", "queue_id", "revoke"]

COLUMNS = "id, name, public_key, queue_ids, origins, max_concurrent_calls, flow_id, created_at, revoked_at"


async def insert(
    conn: asyncpg.Connection,
    key_id: uuid.UUID,
    tenant_id: uuid.UUID,
    *,
    name: str,
    public_key: str,
    queue_ids: list[uuid.UUID],
    origins: list[str],
    max_concurrent_calls: int | None,
    flow_id: uuid.UUID | None,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO widget_keys (id, tenant_id, name, public_key, queue_ids, origins, max_concurrent_calls,
                                     flow_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}""",
        key_id,
        tenant_id,
        name,
        public_key,
        queue_ids,
        origins,
        max_concurrent_calls,
        flow_id,
    )
    return row


async def get(conn: asyncpg.Connection, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "widget_keys", COLUMNS, key_id)


async def revoke(conn: asyncpg.Connection, key_id: uuid.UUID) -> str | None:
    """The key's name; None: no such key. Revoking a revoked key keeps its first revocation time."""
    name: str | None = await conn.fetchval(
        "UPDATE widget_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING name", key_id
    )
    return name


async def existing_queues(conn: asyncpg.Connection, queue_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `queue_ids` that are this tenant's queues."""
    return {r["id"] for r in await conn.fetch("SELECT id FROM queues WHERE id = ANY($1::uuid[])", queue_ids)}


async def by_public_key(conn: asyncpg.Connection, public_key: str) -> asyncpg.Record | None:
    """The key's row before its tenant is known. `conn`: in a transaction of its own, with no tenant set:
    the widget_key_lookup policy (migration 0005) lets it see exactly the row holding this key."""
    await conn.execute("SELECT set_config('app.widget_public_key', $1, true)", public_key)
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, tenant_id, queue_ids, origins, revoked_at FROM widget_keys WHERE public_key = $1",
        public_key,
    )
    return row


async def queue_id(conn: asyncpg.Connection, ref_id: uuid.UUID | None, name: str) -> uuid.UUID | None:
    """The queue with id `ref_id` if given, else the one named `name` (any case); None: no such queue."""
    if ref_id is not None:
        return ref_id if await conn.fetchval("SELECT 1 FROM queues WHERE id = $1", ref_id) else None
    found: uuid.UUID | None = await conn.fetchval("SELECT id FROM queues WHERE lower(name) = lower($1)", name)
    return found


async def flow_of(conn: asyncpg.Connection, key_id: uuid.UUID) -> uuid.UUID | None:
    """The IVR flow a key's web callers go through (None: straight to the queue)."""
    flow_id: uuid.UUID | None = await conn.fetchval("SELECT flow_id FROM widget_keys WHERE id = $1", key_id)
    return flow_id
