"""Sites' SQL (handlers: services/api/sites.py)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..crud import get_row, update_row

__all__ = [
    "COLUMNS",
    "delete",
    "exists",
    "get",
    "insert",
    "lock",
    "lock_all",
    "oldest",
    "set_drained",
    "update",
    "users",
]

COLUMNS = "id, name, timezone, kind, created_at, updated_at, drained_at"


async def insert(
    conn: asyncpg.Connection, site_id: uuid.UUID, tenant_id: uuid.UUID, name: str, timezone: str, kind: str
) -> asyncpg.Record:
    """Raises asyncpg.UniqueViolationError when the name is taken."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO sites (id, tenant_id, name, timezone, kind)
            VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}""",
        site_id,
        tenant_id,
        name,
        timezone,
        kind,
    )
    return row


async def get(conn: asyncpg.Connection, site_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "sites", COLUMNS, site_id)


async def exists(conn: asyncpg.Connection, site_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM sites WHERE id = $1", site_id))


async def oldest(conn: asyncpg.Connection) -> uuid.UUID | None:
    site_id: uuid.UUID | None = await conn.fetchval("SELECT id FROM sites ORDER BY id LIMIT 1")
    return site_id


async def update(
    conn: asyncpg.Connection, site_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Raises asyncpg.UniqueViolationError when a new name is taken; None: no such site."""
    return await update_row(conn, "sites", COLUMNS, site_id, changes)


async def lock(conn: asyncpg.Connection, site_id: uuid.UUID) -> asyncpg.Record | None:
    """The site's row, locked until the transaction ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM sites WHERE id = $1 FOR UPDATE", site_id
    )
    return row


async def set_drained(conn: asyncpg.Connection, site_id: uuid.UUID, *, drained: bool) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE sites SET drained_at = {"now()" if drained else "NULL"}, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        site_id,
    )
    return row


async def users(conn: asyncpg.Connection, site_id: uuid.UUID) -> tuple[int, int]:
    """How many agents and queues name this site."""
    agents: int = await conn.fetchval("SELECT count(*) FROM agents WHERE site_id = $1", site_id)
    queues: int = await conn.fetchval("SELECT count(*) FROM queues WHERE site_id = $1", site_id)
    return agents, queues


async def lock_all(conn: asyncpg.Connection) -> int:
    """Locks every site of the tenant and counts them: two concurrent deletes cannot both see two sites."""
    return len(await conn.fetch("SELECT id FROM sites FOR UPDATE"))


async def delete(conn: asyncpg.Connection, site_id: uuid.UUID) -> None:
    """Raises asyncpg.ForeignKeyViolationError while something still names the site."""
    await conn.execute("DELETE FROM sites WHERE id = $1", site_id)
