"""The do-not-call list's SQL (handlers: services/api/outbound.py; the coordinator checks every dial against
it in services/contacts/)."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["COLUMNS", "add", "listed", "remove"]

COLUMNS = "e164, note, created_at"


async def listed(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(f"SELECT {COLUMNS} FROM do_not_call ORDER BY e164")
    return rows


async def add(conn: asyncpg.Connection, tenant_id: uuid.UUID, e164: str, note: str) -> asyncpg.Record | None:
    """The new entry, or None when the number is already listed."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""INSERT INTO do_not_call (tenant_id, e164, note) VALUES ($1, $2, $3)
            ON CONFLICT (tenant_id, e164) DO NOTHING RETURNING {COLUMNS}""",
        tenant_id,
        e164,
        note,
    )
    return row


async def remove(conn: asyncpg.Connection, e164: str) -> bool:
    """Whether the number was listed."""
    done: str = await conn.execute("DELETE FROM do_not_call WHERE e164 = $1", e164)
    return not done.endswith(" 0")
