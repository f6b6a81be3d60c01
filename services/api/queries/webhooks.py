"""Webhook endpoints' and deliveries' SQL (handlers: services/api/webhooks.py; the worker that delivers is
services/reporting/webhook_worker.py)."""

from __future__ import annotations

import uuid

import asyncpg

from ..crud import get_row

__all__ = [
    "DELIVERY_COLUMNS",
    "ENDPOINT_COLUMNS",
    "count",
    "count_attempt",
    "delete",
    "deliveries",
    "delivery",
    "endpoints",
    "insert",
    "lock_attempts",
    "replayable",
]

ENDPOINT_COLUMNS = "id, url, events, created_at"
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, event_type, status, attempts, last_status, last_error, created_at, "
    "updated_at, delivered_at, body"
)


async def count(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM webhook_endpoints")
    return n


async def insert(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, tenant_id: uuid.UUID, url: str, events: list[str]
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (id, tenant_id, url, events) VALUES ($1, $2, $3, $4)
            RETURNING {ENDPOINT_COLUMNS}""",
        endpoint_id,
        tenant_id,
        url,
        events,
    )
    return row


async def endpoints(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at"
    )
    return rows


async def delete(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> bool:
    """False: no such endpoint."""
    gone = await conn.fetchval("DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id", endpoint_id)
    return gone is not None


async def deliveries(conn: asyncpg.Connection, status: str | None, limit: int) -> list[asyncpg.Record]:
    """The newest first; `status` None: any."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE ($1::text IS NULL OR status = $1)
            ORDER BY created_at DESC, id DESC LIMIT $2""",
        status,
        limit,
    )
    return rows


async def delivery(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "webhook_deliveries", DELIVERY_COLUMNS, delivery_id)


async def replayable(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    """What sending a delivery again needs: its body and type, its attempts and its endpoint's URL."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT d.id, d.endpoint_id, d.event_type, d.body, d.attempts, e.url
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1""",
        delivery_id,
    )
    return row


async def lock_attempts(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> int | None:
    """The delivery's attempts so far, its row locked; None: no such delivery."""
    attempts: int | None = await conn.fetchval(
        "SELECT attempts FROM webhook_deliveries WHERE id = $1 FOR UPDATE", delivery_id
    )
    return attempts


async def count_attempt(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int) -> None:
    await conn.execute("UPDATE webhook_deliveries SET attempts = $2 WHERE id = $1", delivery_id, attempts)
