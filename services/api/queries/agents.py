"""Agents' SQL (handlers: services/api/agents.py)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..crud import get_row, update_row

__all__ = ["COLUMNS", "by_email", "delete", "exists", "get", "insert", "update"]

COLUMNS = "id, name, email, site_id, skills, languages, endpoint, can_dial, voicemail_capacity, created_at, updated_at"


async def insert(
    conn: asyncpg.Connection, agent_id: uuid.UUID, tenant_id: uuid.UUID, **values: Any
) -> asyncpg.Record:
    """`values`: name, email, site_id, skills (JSON text), languages, endpoint, can_dial,
    voicemail_capacity. Raises asyncpg.UniqueViolationError when the email is taken."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO agents (id, tenant_id, name, email, site_id, skills, languages, endpoint,
                                can_dial, voicemail_capacity)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10) RETURNING {COLUMNS}""",
        agent_id,
        tenant_id,
        values["name"],
        values["email"],
        values["site_id"],
        values["skills"],
        values["languages"],
        values["endpoint"],
        values["can_dial"],
        values["voicemail_capacity"],
    )
    return row


async def get(conn: asyncpg.Connection, agent_id: uuid.UUID) -> asyncpg.Record | None:
    return await get_row(conn, "agents", COLUMNS, agent_id)


async def exists(conn: asyncpg.Connection, agent_id: uuid.UUID) -> bool:
    return await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id) is not None


async def by_email(conn: asyncpg.Connection, email: str) -> uuid.UUID | None:
    """The agent with this email (case aside)."""
    found: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM agents WHERE lower(email) = lower($1)", email
    )
    return found


async def update(
    conn: asyncpg.Connection, agent_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """`changes` by column (skills as JSON text). Raises asyncpg.UniqueViolationError when a new email is
    taken; None: no such agent."""
    return await update_row(conn, "agents", COLUMNS, agent_id, changes, casts={"skills": "::jsonb"})


async def delete(conn: asyncpg.Connection, agent_id: uuid.UUID) -> asyncpg.Record | None:
    """The deleted agent's name and email (its account and sessions go with it: ON DELETE CASCADE)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "DELETE FROM agents WHERE id = $1 RETURNING name, email", agent_id
    )
    return row
