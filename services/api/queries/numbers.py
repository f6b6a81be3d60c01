"""Numbers' SQL (handlers: services/api/numbers.py; a number's flow is set in services/api/flows.py)."""

from __future__ import annotations

import uuid

import asyncpg

from ..crud import get_row, update_row

__all__ = [
    "COLUMNS",
    "get",
    "get_by_e164",
    "insert",
    "queue_exists",
    "queue_named",
    "release",
    "route_straight_to_queue",
    "route_to_flow",
    "route_to_queue",
]

COLUMNS = "id, e164, queue_id, flow_id, created_at, updated_at"


async def insert(
    conn: asyncpg.Connection,
    number_id: uuid.UUID,
    tenant_id: uuid.UUID,
    e164: str,
    queue_id: uuid.UUID | None,
) -> asyncpg.Record:
    """Raises asyncpg.UniqueViolationError when any tenant holds the number: the unique index on e164 spans
    all tenants (uniqueness is not subject to RLS), so of two concurrent claims the second waits for the
    first and then fails."""
    row: asyncpg.Record = await conn.fetchrow(
        f"INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}",
        number_id,
        tenant_id,
        e164,
        queue_id,
    )
    return row


async def get(conn: asyncpg.Connection, number_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "numbers", COLUMNS, number_id)


async def get_by_e164(conn: asyncpg.Connection, e164: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {COLUMNS} FROM numbers WHERE e164 = $1", e164)
    return row


async def route_to_flow(
    conn: asyncpg.Connection, number_id: uuid.UUID, flow_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """A flow answers its calls (None: no flow; its queue, if any, takes them)."""
    return await update_row(conn, "numbers", COLUMNS, number_id, {"flow_id": flow_id})


async def route_straight_to_queue(
    conn: asyncpg.Connection, number_id: uuid.UUID, queue_id: uuid.UUID
) -> asyncpg.Record | None:
    """Callers go straight to the queue, with no flow."""
    return await update_row(conn, "numbers", COLUMNS, number_id, {"queue_id": queue_id, "flow_id": None})


async def route_to_queue(
    conn: asyncpg.Connection, number_id: uuid.UUID, queue_id: uuid.UUID | None
) -> asyncpg.Record | None:
    return await update_row(conn, "numbers", COLUMNS, number_id, {"queue_id": queue_id})


async def release(conn: asyncpg.Connection, number_id: uuid.UUID) -> str | None:
    """The released number's E.164; None: no such number."""
    e164: str | None = await conn.fetchval("DELETE FROM numbers WHERE id = $1 RETURNING e164", number_id)
    return e164


async def queue_exists(conn: asyncpg.Connection, queue_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM queues WHERE id = $1", queue_id))


async def queue_named(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    """The queue of exactly this name (a number's route names it as the tenant wrote it)."""
    queue_id: uuid.UUID | None = await conn.fetchval("SELECT id FROM queues WHERE name = $1", name)
    return queue_id
