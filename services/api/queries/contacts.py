"""Contact history's SQL (handlers: services/api/contacts.py): the records the contact coordinator writes,
each with its live queue's name, and the recordings and voicemails of one contact."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.contacts.records import CONTACT_COLUMNS

__all__ = ["agent_by_email", "get", "page", "queue_by_name", "recordings", "voicemails"]

# The record's columns qualified, for queries that join the live queue (for its current name).
_COLUMNS = ", ".join(f"c.{col.strip()}" for col in CONTACT_COLUMNS.split(","))


async def page(
    conn: asyncpg.Connection,
    *,
    since: datetime | None,
    queue_id: uuid.UUID | None,
    queue_name: str | None,
    agent_id: uuid.UUID | None,
    caller: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[asyncpg.Record]:
    """Newest first, keyset after (arrived_at, id); `limit` rows at most. A queue named by `queue_name`
    matches its live id or the name stored when contacts were queued (kept after a rename or delete)."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_COLUMNS}, q.name AS live_queue_name
            FROM contacts c LEFT JOIN queues q ON q.id = c.queue_id
            WHERE ($1::timestamptz IS NULL OR c.arrived_at >= $1)
              AND CASE WHEN $3::text IS NULL THEN $2::uuid IS NULL OR c.queue_id = $2
                       ELSE c.queue_id = $2 OR lower(c.queue_name) = lower($3) END
              AND ($4::uuid IS NULL OR c.agent_id = $4)
              AND ($5::text IS NULL OR c.caller = $5)
              AND ($6::timestamptz IS NULL OR (c.arrived_at, c.id) < ($6, $7::uuid))
            ORDER BY c.arrived_at DESC, c.id DESC
            LIMIT $8""",
        since,
        queue_id,
        queue_name,
        agent_id,
        caller,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows


async def get(conn: asyncpg.Connection, contact_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {_COLUMNS}, c.updated_at, q.name AS live_queue_name
            FROM contacts c LEFT JOIN queues q ON q.id = c.queue_id WHERE c.id = $1""",
        contact_id,
    )
    return row


async def recordings(conn: asyncpg.Connection, contact_id: uuid.UUID) -> Sequence[asyncpg.Record]:
    """The conversation's recordings that are not deleted, in order (segment 0's id is the contact's)."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        """SELECT id, status, partial, duration_s, segment, segment_kind, agent_id, consulted_agent_id
           FROM recordings WHERE COALESCE(contact_id, id) = $1 AND status <> 'deleted'
           ORDER BY segment, started_at""",
        contact_id,
    )
    return rows


async def voicemails(conn: asyncpg.Connection, contact_id: uuid.UUID) -> Sequence[asyncpg.Record]:
    """Messages left on this call that are not deleted, oldest first."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        """SELECT id, status, duration_s FROM recordings
           WHERE left_on = $1 AND status <> 'deleted' ORDER BY started_at""",
        contact_id,
    )
    return rows


async def queue_by_name(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    queue_id: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM queues WHERE lower(name) = lower($1)", name
    )
    return queue_id


async def agent_by_email(conn: asyncpg.Connection, email: str) -> uuid.UUID | None:
    agent_id: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM agents WHERE lower(email) = lower($1)", email
    )
    return agent_id
