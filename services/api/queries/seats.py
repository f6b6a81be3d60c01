"""Seats' SQL: the tenant's purchase, its agents signed in, and the seat ledger (handlers:
services/api/seats.py; signup writes the first ledger line through `ledger_add`)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

__all__ = ["ledger_add", "ledger_between", "purchase", "set_purchased", "signed_in"]


async def purchase(conn: asyncpg.Connection, *, lock: bool) -> asyncpg.Record | None:
    """The tenant's seats_purchased and plan; `lock`: its row stays locked (routing's logins take the same
    lock, so a release and a login are serialised). None: the tenant is gone."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT seats_purchased, plan FROM tenants" + (" FOR UPDATE" if lock else "")
    )
    return row


async def signed_in(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM agent_sessions")
    return n


async def set_purchased(conn: asyncpg.Connection, seats: int, *, paid: bool) -> None:
    """`paid`: the plan becomes paid (a purchase ends the trial)."""
    await conn.execute("UPDATE tenants SET seats_purchased = $1" + (", plan = 'paid'" if paid else ""), seats)


async def ledger_add(
    conn: asyncpg.Connection,
    entry_id: uuid.UUID,
    tenant_id: uuid.UUID,
    delta: int,
    seats_after: int,
    reason: str,
    actor_key_id: uuid.UUID | None,
) -> None:
    await conn.execute(
        """INSERT INTO seat_ledger (id, tenant_id, delta, seats_after, reason, actor_key_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        entry_id,
        tenant_id,
        delta,
        seats_after,
        reason,
        actor_key_id,
    )


async def ledger_between(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """The ledger line in force at `start` and every line after it before `end` (id, at, seats_after)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """(SELECT id, at, seats_after FROM seat_ledger WHERE at <= $1 ORDER BY at DESC, id DESC LIMIT 1)
           UNION ALL
           (SELECT id, at, seats_after FROM seat_ledger WHERE at > $1 AND at < $2)""",
        start,
        end,
    )
    return rows
