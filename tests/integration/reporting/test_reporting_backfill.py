"""The rollup backfill against real PostgreSQL as the services' role: rollups wiped (facts older than the
rollups, or a rollup redefined) come back from the facts equal to what the ingest had kept, agent spans
that cross midnight or run through a whole day included; a second run changes nothing; a stopped run goes
on with the days it had not built; a tenant's backfill never touches another's rollups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from reporting_harness import T0, make_tenant, reports, scenario

from services.kernel import db
from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Event
from services.reporting import backfill
from services.reporting.store import FactStore

TABLES = ("rpt_queue_rollup", "rpt_agent_rollup", "rpt_ivr_rollup", "rpt_ivr_node_rollup")
DAY0 = datetime.fromtimestamp(T0, UTC).replace(hour=0)


def _states(tenant_id: uuid.UUID) -> list[Event]:
    """One agent from 23:50 across midnight; another away from the day before to the day after."""
    night, away = str(new_id()), str(new_id())
    midnight = (DAY0 + timedelta(days=1)).timestamp()

    def state(agent: str, ts: float, new: str) -> Event:
        return ev.AgentStateChanged(tenant_id=tenant_id, ts=ts, agent_id=agent, old="", new=new)

    return [
        state(night, midnight - 600, "available"),
        state(night, midnight + 1200, "away"),
        state(night, midnight + 3600, "logged_out"),
        state(away, DAY0.timestamp() - 12 * 3600, "away"),
        state(away, DAY0.timestamp() + 32 * 3600, "available"),
        state(away, DAY0.timestamp() + 33 * 3600, "logged_out"),
    ]


async def _rollups(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = {}
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        for table in TABLES:
            rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY bucket, 2")
            # Float sums taken in another order differ in their last bits; a row of zeros is no row.
            out[table] = [
                tuple(round(v, 6) if isinstance(v, float) else v for v in r.values())
                for r in rows
                if any(isinstance(v, int | float) and v for v in r.values())
            ]
    return out


async def _wipe(pool: asyncpg.Pool, tenant_id: uuid.UUID, *, day: datetime | None = None) -> None:
    async with db.tenant_tx(pool, tenant_id) as conn:
        for table in TABLES:
            if day is None:
                await conn.execute(f"DELETE FROM {table}")
            else:
                await conn.execute(
                    f"DELETE FROM {table} WHERE bucket >= $1 AND bucket < $2", day, day + timedelta(days=1)
                )
        await conn.execute(
            "DELETE FROM rpt_rollup_builds" + ("" if day is None else " WHERE day = $1"),
            *(() if day is None else (day.date(),)),
        )


async def test_backfill_rebuilds_what_the_ingest_kept_idempotently_and_resumes(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    other_id, other_queue = await make_tenant(pool)
    store = FactStore(pool)
    await store.write(tenant_id, [*scenario(tenant_id, queue_id, str(new_id())), *_states(tenant_id)])
    await store.write(other_id, scenario(other_id, other_queue, str(new_id())))
    kept, other_kept = await _rollups(pool, tenant_id), await _rollups(pool, other_id)
    before = await reports(pool, tenant_id)
    assert kept["rpt_agent_rollup"] and kept["rpt_ivr_node_rollup"]

    # Facts without rollups (written before the rollups existed): the reports see nothing.
    await _wipe(pool, tenant_id)
    assert (await reports(pool, tenant_id))["queues"]["rows"] == []  # type: ignore[index]
    days = await backfill.tenant_days(pool, tenant_id)
    assert days[0] == (DAY0 - timedelta(days=1)).date() and days[-1] == (DAY0 + timedelta(days=1)).date()

    totals = await backfill.backfill(pool, tenants=[tenant_id])
    assert totals["days"] == len(days) and totals["facts"] > 0
    assert await _rollups(pool, tenant_id) == kept
    assert await reports(pool, tenant_id) == before
    assert await _rollups(pool, other_id) == other_kept  # never another tenant's

    # Built days are skipped; rebuilding them on purpose changes nothing.
    assert (await backfill.backfill(pool, tenants=[tenant_id]))["days"] == 0
    await backfill.backfill(pool, tenants=[tenant_id], days=(days[0], days[-1]))
    assert await _rollups(pool, tenant_id) == kept

    # A run that stopped before the last day: only that day is built again.
    await _wipe(pool, tenant_id, day=DAY0 + timedelta(days=1))
    assert await backfill.tenant_days(pool, tenant_id) == [days[-1]]
    assert (await backfill.backfill(pool, tenants=[tenant_id]))["days"] == 1
    assert await _rollups(pool, tenant_id) == kept
