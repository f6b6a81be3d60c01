"""Reporting's own SQL in the API (handlers: services/api/reports.py): who waits in line now and the contact
export. The report figures themselves come from services/reporting/queries.py and planning.py, shared with
the reporting service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg

__all__ = ["EXPORT_COLUMNS", "EXPORT_NAMES", "contacts_between", "count_between", "waiting"]

EXPORT_COLUMNS = (
    "id, direction, caller, caller_name, dialled, queue_id, queue_name, agent_id, state, outcome, cause, "
    "disposition, arrived_at, queued_at, offered_at, connected_at, ended_at, wrapped_at, ivr_s, queue_s, "
    "talk_s, jsonb_array_length(transfers) AS transfers"
)
# The CSV's header: each column's name as it comes out.
EXPORT_NAMES = [c.strip().split(" AS ")[-1].split(".")[-1] for c in EXPORT_COLUMNS.split(",")]


async def waiting(conn: asyncpg.Connection, limit: int) -> Sequence[asyncpg.Record]:
    """Contacts in line, longest waiting first (routing alone knows their order in each queue)."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        """SELECT id, caller, caller_name, queue_id, queue_name, queued_at FROM contacts
           WHERE state = 'queued' ORDER BY queued_at NULLS LAST LIMIT $1""",
        limit,
    )
    return rows


async def count_between(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE arrived_at >= $1 AND arrived_at < $2", start, end
    )
    return count


async def contacts_between(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> AsyncIterator[asyncpg.Record]:
    """EXPORT_COLUMNS of the contacts that arrived in [start, end), oldest first, through a server-side
    cursor (memory stays flat however many rows): `conn` must be inside a transaction for the whole read."""
    async for row in conn.cursor(
        f"""SELECT {EXPORT_COLUMNS} FROM contacts WHERE arrived_at >= $1 AND arrived_at < $2
            ORDER BY arrived_at, id""",
        start,
        end,
        prefetch=1000,
    ):
        yield row
