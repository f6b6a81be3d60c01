"""The tenant's own row: signup's insert and its settings (handlers: services/api/tenants.py). RLS shows a
tenant only its own row, so reads name no id."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..crud import set_clause

__all__ = ["COLUMNS", "SETTINGS", "insert", "read", "settings", "update_settings"]

COLUMNS = "id, name, admin_email, plan, created_at"
SETTINGS = "agent_grace_seconds, timezone, language, monitor_notice"


async def insert(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, admin_email: str, seats: int
) -> asyncpg.Record:
    """A trial tenant. The transaction's app.tenant_id must already be the new tenant (the tenants policy's
    WITH CHECK accepts only that row)."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO tenants (id, name, admin_email, seats_purchased, plan)
            VALUES ($1, $2, $3, $4, 'trial') RETURNING {COLUMNS}""",
        tenant_id,
        name,
        admin_email,
        seats,
    )
    return row


async def read(conn: asyncpg.Connection) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {COLUMNS} FROM tenants")
    return row


async def settings(conn: asyncpg.Connection) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {SETTINGS} FROM tenants")
    return row


async def update_settings(conn: asyncpg.Connection, tenant_id: uuid.UUID, changes: dict[str, Any]) -> None:
    await conn.execute(
        f"UPDATE tenants SET {set_clause(changes)} WHERE id = $1", tenant_id, *changes.values()
    )
