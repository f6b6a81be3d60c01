"""SIP trunks' SQL (handlers: services/api/trunks.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..crud import get_row

__all__ = ["COLUMNS", "FIELDS", "delete", "get", "insert", "lock", "replace"]

# What is shown: the digests never leave the database, only whether there are credentials.
COLUMNS = (
    "id, name, allowed_ips, username, realm, ha1_sha256 IS NOT NULL AS has_credentials, outbound_host, "
    "outbound_port, outbound_transport, created_at, updated_at"
)
# What is written, in this order (services/api/trunks.py, _values).
FIELDS = "name, allowed_ips, username, realm, ha1_sha256, ha1_md5, outbound_host, outbound_port, outbound_transport"


async def insert(
    conn: asyncpg.Connection, trunk_id: uuid.UUID, tenant_id: uuid.UUID, values: Sequence[Any]
) -> asyncpg.Record:
    """Raises asyncpg.UniqueViolationError when the name is taken."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO sip_trunks (id, tenant_id, {FIELDS})
            VALUES ($1, $2, $3, $4::inet[], $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}""",
        trunk_id,
        tenant_id,
        *values,
    )
    return row


async def get(conn: asyncpg.Connection, trunk_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "sip_trunks", COLUMNS, trunk_id)


async def lock(conn: asyncpg.Connection, trunk_id: uuid.UUID) -> asyncpg.Record | None:
    """The trunk's written fields (digests included), locked until the transaction ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {FIELDS} FROM sip_trunks WHERE id = $1 FOR UPDATE", trunk_id
    )
    return row


async def replace(conn: asyncpg.Connection, trunk_id: uuid.UUID, values: Sequence[Any]) -> asyncpg.Record:
    """Every written field at once. Raises asyncpg.UniqueViolationError when a new name is taken."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE sip_trunks SET ({FIELDS}) = ($2, $3::inet[], $4, $5, $6, $7, $8, $9, $10), updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        trunk_id,
        *values,
    )
    return row


async def delete(conn: asyncpg.Connection, trunk_id: uuid.UUID) -> str | None:
    """The deleted trunk's name; None: no such trunk."""
    name: str | None = await conn.fetchval("DELETE FROM sip_trunks WHERE id = $1 RETURNING name", trunk_id)
    return name
