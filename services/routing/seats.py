"""Seats, exact under concurrency: a login holds the tenant row's lock while it counts and inserts.

Every writer of `agent_sessions` (routing workers, a standby taking over, the API's seat release) takes
`SELECT ... FOR UPDATE` on the tenant row first, so two logins can never both see the last free seat.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.kernel.db import tenant_tx

__all__ = ["SeatOutcome", "end_session", "start_session"]


@dataclass(frozen=True)
class SeatOutcome:
    ok: bool
    code: str | None = None
    reason: str | None = None
    new_session: bool = False  # False when the agent already held a session (a retried login)


async def start_session(pool: asyncpg.Pool, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> SeatOutcome:
    async with tenant_tx(pool, tenant_id) as conn:
        seats = await conn.fetchval("SELECT seats_purchased FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        if seats is None:
            return SeatOutcome(False, "unknown_tenant", "this tenant does not exist")
        if not await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id):
            return SeatOutcome(False, "unknown_agent", f"agent {agent_id} does not exist in this tenant")
        if await conn.fetchval("SELECT 1 FROM agent_sessions WHERE agent_id = $1", agent_id):
            return SeatOutcome(True)
        used = await conn.fetchval("SELECT count(*) FROM agent_sessions WHERE tenant_id = $1", tenant_id)
        if used >= seats:
            return SeatOutcome(
                False,
                "no_seats",
                f"all {seats} seats are in use ({used} agents logged in): buy more seats or log another"
                " agent out",
            )
        await conn.execute(
            "INSERT INTO agent_sessions (agent_id, tenant_id) VALUES ($1, $2)", agent_id, tenant_id
        )
        return SeatOutcome(True, new_session=True)


async def end_session(pool: asyncpg.Pool, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        await conn.execute("DELETE FROM agent_sessions WHERE agent_id = $1", agent_id)
