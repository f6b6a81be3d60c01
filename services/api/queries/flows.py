"""IVR flows' SQL (handlers: services/api/flows.py): flows, their immutable versions, and what the
deploying and routing of numbers read about queues and sites."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

__all__ = [
    "COLUMNS",
    "add_version",
    "default_timezone",
    "delete",
    "exists",
    "get_by_name",
    "has_version",
    "id_by_name",
    "insert",
    "numbers_using",
    "queue_names",
    "set_current",
    "set_latest",
    "version",
    "versions_page",
]

COLUMNS = "id, name, description, current_version, latest_version, created_at, updated_at"


async def get_by_name(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> asyncpg.Record | None:
    """`lock`: the row stays locked until the transaction ends (two deploys of one flow take turns)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM flows WHERE name = $1" + (" FOR UPDATE" if lock else ""), name
    )
    return row


async def id_by_name(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    flow_id: uuid.UUID | None = await conn.fetchval("SELECT id FROM flows WHERE name = $1", name)
    return flow_id


async def exists(conn: asyncpg.Connection, flow_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM flows WHERE id = $1", flow_id))


async def insert(
    conn: asyncpg.Connection, flow_id: uuid.UUID, tenant_id: uuid.UUID, name: str, description: str
) -> asyncpg.Record:
    """A new flow at version 1 (its version row: add_version)."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO flows (id, tenant_id, name, description, current_version, latest_version)
            VALUES ($1, $2, $3, $4, 1, 1) RETURNING {COLUMNS}""",
        flow_id,
        tenant_id,
        name,
        description,
    )
    return row


async def add_version(
    conn: asyncpg.Connection,
    version_id: uuid.UUID,
    tenant_id: uuid.UUID,
    flow_id: uuid.UUID,
    version: int,
    source: str,
    definition: str,
    created_by: uuid.UUID | None,
) -> None:
    """`definition`: the validated flow as JSON text."""
    await conn.execute(
        """INSERT INTO flow_versions (id, tenant_id, flow_id, version, source, definition, created_by)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)""",
        version_id,
        tenant_id,
        flow_id,
        version,
        source,
        definition,
        created_by,
    )


async def set_latest(
    conn: asyncpg.Connection, flow_id: uuid.UUID, version: int, description: str
) -> asyncpg.Record:
    """A new version deployed: it is the latest and the current one."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE flows SET current_version = $2, latest_version = $2, description = $3,
            updated_at = now() WHERE id = $1 RETURNING {COLUMNS}""",
        flow_id,
        version,
        description,
    )
    return row


async def set_current(conn: asyncpg.Connection, flow_id: uuid.UUID, version: int) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"UPDATE flows SET current_version = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
        flow_id,
        version,
    )
    return row


async def version(conn: asyncpg.Connection, flow_id: uuid.UUID, number: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT id, version, source, definition, created_at FROM flow_versions
           WHERE flow_id = $1 AND version = $2""",
        flow_id,
        number,
    )
    return row


async def has_version(conn: asyncpg.Connection, flow_id: uuid.UUID, number: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM flow_versions WHERE flow_id = $1 AND version = $2", flow_id, number
        )
    )


async def versions_page(
    conn: asyncpg.Connection, flow_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> Sequence[asyncpg.Record]:
    """`limit` rows at most, by id after `after`."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        """SELECT id, version, created_at FROM flow_versions
           WHERE flow_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3""",
        flow_id,
        after,
        limit,
    )
    return rows


async def numbers_using(conn: asyncpg.Connection, flow_id: uuid.UUID) -> list[str]:
    return [
        r["e164"]
        for r in await conn.fetch("SELECT e164 FROM numbers WHERE flow_id = $1 ORDER BY e164", flow_id)
    ]


async def delete(conn: asyncpg.Connection, flow_id: uuid.UUID) -> None:
    """Its versions go with it (ON DELETE CASCADE)."""
    await conn.execute("DELETE FROM flows WHERE id = $1", flow_id)


async def queue_names(conn: asyncpg.Connection) -> set[str]:
    """What a deployed flow's queue steps may name."""
    return {r["name"] for r in await conn.fetch("SELECT name FROM queues")}


async def default_timezone(conn: asyncpg.Connection) -> str | None:
    """The tenant's default site's time zone (its oldest site)."""
    zone: str | None = await conn.fetchval("SELECT timezone FROM sites ORDER BY id LIMIT 1")
    return zone
