"""The agent desk's SQL (handlers: services/api/desk.py): the tenant's desk settings, what the desk shows
around a call, and an agent's voicemails."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = [
    "agent",
    "colleagues",
    "flow_names",
    "queues",
    "recording_status",
    "set_settings",
    "settings",
    "signed_in",
    "tenant",
    "voicemail_contact",
]


async def settings(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record:
    """dispositions and away_reasons (JSON text) and wrap_up_form_extends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT dispositions, away_reasons, wrap_up_form_extends FROM tenants WHERE id = $1", tenant_id
    )
    assert row is not None  # the caller's own tenant, in its own transaction
    return row


async def set_settings(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, dispositions: str, away_reasons: str, extends: bool
) -> None:
    """`dispositions` and `away_reasons` as JSON text."""
    await conn.execute(
        """UPDATE tenants SET dispositions = $2::jsonb, away_reasons = $3::jsonb,
               wrap_up_form_extends = $4 WHERE id = $1""",
        tenant_id,
        dispositions,
        away_reasons,
        extends,
    )


async def agent(conn: asyncpg.Connection, agent_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, name, email FROM agents WHERE id = $1", agent_id
    )
    return row


async def signed_in(conn: asyncpg.Connection, agent_id: uuid.UUID) -> bool:
    """Whether the agent is signed in to take calls."""
    return await conn.fetchval("SELECT 1 FROM agent_sessions WHERE agent_id = $1", agent_id) is not None


async def tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT id, name FROM tenants WHERE id = $1", tenant_id)
    return row


async def queues(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, name, wrap_up_seconds FROM queues ORDER BY lower(name)"
    )
    return rows


async def flow_names(conn: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM flows ORDER BY name")]


async def colleagues(conn: asyncpg.Connection, agent_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """The other agents (id, name, signed_in), by name."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT a.id, a.name, s.agent_id IS NOT NULL AS signed_in FROM agents a
           LEFT JOIN agent_sessions s ON s.agent_id = a.id
           WHERE a.id <> $1 ORDER BY lower(a.name) LIMIT $2""",
        agent_id,
        limit,
    )
    return rows


async def voicemail_contact(conn: asyncpg.Connection, contact_id: uuid.UUID) -> asyncpg.Record | None:
    """agent_id, attributes (JSON text) and offered_to (the agent of the timeline's latest offer, text) of the
    contact."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT agent_id, attributes,
                  (SELECT e -> 'detail' ->> 'agent_id'
                     FROM jsonb_array_elements(timeline) WITH ORDINALITY AS t(e, n)
                    WHERE e ->> 'event' = 'offered' ORDER BY n DESC LIMIT 1) AS offered_to
             FROM contacts WHERE id = $1""",
        contact_id,
    )
    return row


async def recording_status(conn: asyncpg.Connection, recording_id: uuid.UUID) -> str | None:
    status: str | None = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", recording_id)
    return status
