"""Recordings' SQL in the API (handlers: services/api/recordings.py). What the recording service shares with
the API (deleting, holds, opening the audio, the audit) is in services/recording/records.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.recording.records import RECORDING_COLUMNS

__all__ = [
    "conversation",
    "get",
    "key_created_at",
    "page",
    "playable",
    "settings",
    "status",
    "update_settings",
]

# A recording with its place in the conversation and what its contact record says.
_SELECT = f"""SELECT {RECORDING_COLUMNS}, r.opus_key, r.segment, r.segment_kind, r.consulted_agent_id, r.left_on,
        COALESCE(r.contact_id, r.id) AS contact, c.caller, c.dialled, c.queue_id, c.queue_name,
        COALESCE(r.agent_id, c.agent_id) AS agent_id
    FROM recordings r LEFT JOIN contacts c ON c.id = COALESCE(r.contact_id, r.id)"""


async def page(
    conn: asyncpg.Connection,
    *,
    since: datetime | None,
    until: datetime | None,
    queue: str | None,
    agent: str | None,
    number: str | None,
    contact_id: uuid.UUID | None,
    kind: str | None,
    include_deleted: bool,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[asyncpg.Record]:
    """Newest first (by id) after `after`, `limit` rows at most. `queue`: an id or a name (live or stored on
    the contact); `agent`: an id or an email (the talking or the consulted agent); `number`: the caller's or
    the dialled number; `contact_id`: its recordings and the voicemails left on it."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        f"""{_SELECT}
            LEFT JOIN queues q ON q.id = c.queue_id
            LEFT JOIN agents a ON a.id IN (COALESCE(r.agent_id, c.agent_id), r.consulted_agent_id)
            WHERE ($1::timestamptz IS NULL OR r.started_at >= $1)
              AND ($2::timestamptz IS NULL OR r.started_at < $2)
              AND ($3::text IS NULL OR c.queue_id::text = $3 OR lower(q.name) = lower($3)
                   OR lower(c.queue_name) = lower($3))
              AND ($4::text IS NULL OR COALESCE(r.agent_id, c.agent_id)::text = $4
                   OR r.consulted_agent_id::text = $4 OR lower(a.email) = lower($4))
              AND ($5::text IS NULL OR c.caller = $5 OR c.dialled = $5)
              AND ($6::uuid IS NULL OR COALESCE(r.contact_id, r.id) = $6 OR r.left_on = $6)
              AND ($7 OR r.status <> 'deleted')
              AND ($8::uuid IS NULL OR r.id < $8)
              AND ($10::text IS NULL OR r.segment_kind = $10)
            ORDER BY r.id DESC LIMIT $9""",
        since,
        until,
        queue,
        agent,
        number,
        contact_id,
        include_deleted,
        after,
        limit,
        kind,
    )
    return rows


async def get(conn: asyncpg.Connection, recording_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", recording_id)
    return row


async def conversation(conn: asyncpg.Connection, recording_id: uuid.UUID) -> Sequence[asyncpg.Record]:
    """Every recording of the contact this one belongs to (by the contact's id or any of its recordings'),
    segment by segment."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        f"""{_SELECT} WHERE COALESCE(r.contact_id, r.id) =
                (SELECT COALESCE(contact_id, id) FROM recordings WHERE id = $1)
            ORDER BY r.segment, r.started_at""",
        recording_id,
    )
    return rows


async def playable(conn: asyncpg.Connection, recording_id: uuid.UUID) -> asyncpg.Record | None:
    """Its status and whether an Opus copy exists (opus_key)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT status, opus_key FROM recordings WHERE id = $1", recording_id
    )
    return row


async def status(conn: asyncpg.Connection, recording_id: uuid.UUID) -> str | None:
    found: str | None = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", recording_id)
    return found


async def settings(conn: asyncpg.Connection) -> asyncpg.Record:
    """The tenant's recording policy (its own row)."""
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT recording_percent, recording_retention_days, recording_opus_copy, recording_announcement
           FROM tenants"""
    )
    return row


async def update_settings(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    percent: int,
    retention_days: int | None,
    opus_copy: bool,
    announcement: str | None,
) -> None:
    await conn.execute(
        """UPDATE tenants SET recording_percent = $2, recording_retention_days = $3,
               recording_opus_copy = $4, recording_announcement = $5 WHERE id = $1""",
        tenant_id,
        percent,
        retention_days,
        opus_copy,
        announcement,
    )


async def key_created_at(conn: asyncpg.Connection, key_id: uuid.UUID) -> datetime:
    created: datetime = await conn.fetchval("SELECT created_at FROM recording_keys WHERE id = $1", key_id)
    return created
