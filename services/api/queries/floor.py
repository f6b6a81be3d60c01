"""SQL of the supervisor's floor controls and of stepping into a call (handlers: services/api/floor.py,
services/api/supervision.py): which contact, queue or agent a request names, and a supervisor's scope."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = [
    "account_email",
    "agent_by_ref",
    "contact_line",
    "count_known",
    "phone_rung",
    "queue_by_ref",
    "set_scope",
    "supervisor",
]


async def contact_line(conn: asyncpg.Connection, contact_id: uuid.UUID) -> asyncpg.Record | None:
    """A contact's state and queue_id."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT state, queue_id FROM contacts WHERE id = $1", contact_id
    )
    return row


async def queue_by_ref(conn: asyncpg.Connection, ref: str) -> uuid.UUID | None:
    """The queue `ref` names: its id, or its name (case aside)."""
    return await _by_id_or(conn, "queues", "name", ref)


async def agent_by_ref(conn: asyncpg.Connection, ref: str) -> uuid.UUID | None:
    """The agent `ref` names: its id, or its email (case aside)."""
    return await _by_id_or(conn, "agents", "email", ref)


async def _by_id_or(conn: asyncpg.Connection, table: str, column: str, ref: str) -> uuid.UUID | None:
    # `table` and `column` come from this module, never from a request.
    try:
        found: uuid.UUID | None = await conn.fetchval(f"SELECT id FROM {table} WHERE id = $1", uuid.UUID(ref))
    except ValueError:
        found = await conn.fetchval(f"SELECT id FROM {table} WHERE lower({column}) = lower($1)", ref)
    return found


async def account_email(conn: asyncpg.Connection, account_id: uuid.UUID) -> str | None:
    email: str | None = await conn.fetchval("SELECT email FROM accounts WHERE id = $1", account_id)
    return email


async def phone_rung(conn: asyncpg.Connection, contact_id: uuid.UUID, leg_id: uuid.UUID) -> bool:
    """Whether the audit log says the platform rang this leg, a phone, to monitor this contact."""
    found = await conn.fetchval(
        """SELECT 1 FROM audit_log WHERE target_type = 'contact' AND target_id = $1
             AND action = 'contact.monitored' AND detail->>'leg_id' = $2 AND detail ? 'phone' LIMIT 1""",
        str(contact_id), str(leg_id),
    )  # fmt: skip
    return found is not None


async def supervisor(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """An account's email, role and site_ids."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT email, role, site_ids FROM accounts WHERE id = $1", account_id
    )
    return row


async def count_known(conn: asyncpg.Connection, table: str, ids: list[uuid.UUID]) -> int:
    """How many of `ids` are rows of `table` (queues or sites: a name from our code, never a request)."""
    known: int = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = ANY($1::uuid[])", ids)
    return known


async def set_scope(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    queue_ids: list[uuid.UUID] | None,
    site_ids: list[uuid.UUID] | None,
) -> None:
    await conn.execute(
        "UPDATE accounts SET queue_ids = $2, site_ids = $3, updated_at = now() WHERE id = $1",
        account_id, queue_ids, site_ids,
    )  # fmt: skip
