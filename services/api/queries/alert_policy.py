"""Alert thresholds' SQL (handlers: services/api/alert_policy.py; the policies in force are read by
services/reporting/alert_watch.py)."""

from __future__ import annotations

import uuid

import asyncpg

from services.kernel.ids import new_id
from services.reporting.alert_watch import POLICY_FIELDS

__all__ = ["clear", "queue_exists", "queue_names", "store"]


async def queue_names(conn: asyncpg.Connection) -> dict[str, str]:
    """Every queue's name by its id (as text, the policies' keys)."""
    return {str(r["id"]): r["name"] for r in await conn.fetch("SELECT id, name FROM queues")}


async def queue_exists(conn: asyncpg.Connection, queue_id: uuid.UUID) -> bool:
    return await conn.fetchval("SELECT 1 FROM queues WHERE id = $1", queue_id) is not None


async def store(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, queue_id: uuid.UUID | None, values: list[int | None]
) -> None:
    """The default (queue_id None) or one queue's policy, `values` in POLICY_FIELDS' order."""
    updated = await conn.execute(
        f"""UPDATE alert_policies SET ({", ".join(POLICY_FIELDS)}, updated_at) = ($2, $3, $4, $5, now())
            WHERE queue_id IS NOT DISTINCT FROM $1""",
        queue_id,
        *values,
    )
    if updated == "UPDATE 0":
        await conn.execute(
            f"""INSERT INTO alert_policies (id, tenant_id, queue_id, {", ".join(POLICY_FIELDS)})
                VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            new_id(),
            tenant_id,
            queue_id,
            *values,
        )


async def clear(conn: asyncpg.Connection, queue_id: uuid.UUID) -> bool:
    """Remove a queue's own policy; whether it had one."""
    done: str = await conn.execute("DELETE FROM alert_policies WHERE queue_id = $1", queue_id)
    return done != "DELETE 0"
