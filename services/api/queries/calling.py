"""Calling settings' SQL (handlers: services/api/calling.py): columns of the tenant's own row."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["COLUMNS", "get", "holds_number", "update"]

COLUMNS = "callback_mode, callback_attempts, callback_retry_seconds, callback_ring_seconds, caller_id"


async def get(conn: asyncpg.Connection) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(f"SELECT {COLUMNS} FROM tenants WHERE id = current_tenant()")
    return row


async def holds_number(conn: asyncpg.Connection, e164: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM numbers WHERE e164 = $1", e164))


async def update(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    mode: str,
    attempts: int,
    retry_seconds: int,
    ring_seconds: int,
    caller_id: str | None,
) -> None:
    await conn.execute(
        """UPDATE tenants SET callback_mode = $2, callback_attempts = $3, callback_retry_seconds = $4,
                  callback_ring_seconds = $5, caller_id = $6 WHERE id = $1""",
        tenant_id,
        mode,
        attempts,
        retry_seconds,
        ring_seconds,
        caller_id,
    )
