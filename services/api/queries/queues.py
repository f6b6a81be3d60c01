"""Queues' SQL (handlers: services/api/queues.py)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..crud import get_row, set_clause, update_row
from ..queue_rules import RULE_COLUMNS

__all__ = ["COLUMNS", "current_flows", "delete", "get", "insert", "lock_name", "numbers_routed", "update"]

COLUMNS = (
    "id, name, skills, priority, sl_percent, sl_seconds, short_abandon_seconds, wrap_up_seconds, "
    "offer_timeout_seconds, recording_percent, recording_retention_days, recording_announcement, site_id, "
    "created_at, updated_at, " + RULE_COLUMNS
)
# Columns written as JSON text.
_CASTS = {"skills": "::jsonb", "overflow": "::jsonb", "hours": "::jsonb", "priority_rules": "::jsonb"}
_INSERTED = (
    "name",
    "skills",
    "priority",
    "sl_percent",
    "sl_seconds",
    "short_abandon_seconds",
    "wrap_up_seconds",
    "offer_timeout_seconds",
    "site_id",
    "recording_percent",
    "recording_retention_days",
    "recording_announcement",
)


async def insert(
    conn: asyncpg.Connection,
    queue_id: uuid.UUID,
    tenant_id: uuid.UUID,
    values: dict[str, Any],
    rules: dict[str, Any],
) -> asyncpg.Record:
    """`values`: the columns of _INSERTED (skills as JSON text); `rules`: routing rule columns (queue_rules.py).
    Raises asyncpg.UniqueViolationError when the name is taken; run it inside a savepoint to go on."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO queues (id, tenant_id, name, skills, priority, sl_percent, sl_seconds,
                                short_abandon_seconds, wrap_up_seconds, offer_timeout_seconds,
                                site_id, recording_percent, recording_retention_days,
                                recording_announcement)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            RETURNING {COLUMNS}""",
        queue_id,
        tenant_id,
        *(values[column] for column in _INSERTED),
    )
    if not rules:
        return row
    ruled: asyncpg.Record = await conn.fetchrow(
        f"UPDATE queues SET {set_clause(rules, casts=_CASTS)} WHERE id = $1 RETURNING {COLUMNS}",
        queue_id,
        *rules.values(),
    )
    return ruled


async def get(conn: asyncpg.Connection, queue_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "queues", COLUMNS, queue_id)


async def update(
    conn: asyncpg.Connection, queue_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Raises asyncpg.UniqueViolationError when a new name is taken; None: no such queue."""
    return await update_row(conn, "queues", COLUMNS, queue_id, changes, casts=_CASTS)


async def lock_name(conn: asyncpg.Connection, queue_id: uuid.UUID) -> str | None:
    """The queue's name, its row locked until the transaction ends; None: no such queue."""
    name: str | None = await conn.fetchval("SELECT name FROM queues WHERE id = $1 FOR UPDATE", queue_id)
    return name


async def numbers_routed(conn: asyncpg.Connection, queue_id: uuid.UUID) -> list[str]:
    """The numbers routed straight to the queue."""
    return [
        r["e164"]
        for r in await conn.fetch("SELECT e164 FROM numbers WHERE queue_id = $1 ORDER BY e164", queue_id)
    ]


async def current_flows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Each flow's name and the definition (JSON text) of its current version."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT f.name, v.definition FROM flows f
           JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.current_version ORDER BY f.name"""
    )
    return rows


async def delete(conn: asyncpg.Connection, queue_id: uuid.UUID) -> None:
    """The queue, and other queues' overflow rules to it (closed_queue_id is cleared by its foreign key)."""
    await conn.execute("DELETE FROM queues WHERE id = $1", queue_id)
    await conn.execute(
        """UPDATE queues SET overflow = COALESCE(
               (SELECT jsonb_agg(r) FROM jsonb_array_elements(overflow) r
                WHERE r->>'target_queue_id' <> $1::text), '[]'::jsonb)
           WHERE overflow @> jsonb_build_array(jsonb_build_object('target_queue_id', $1::text))""",
        str(queue_id),
    )
