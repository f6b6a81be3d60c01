"""Retention with an injected clock: a recording is purged once past its queue's (or tenant's) retention,
never while under legal hold, with an audit entry and a recording.deleted event."""

from __future__ import annotations

import time

from services.kernel.db import tenant_tx
from services.recording.records import set_hold

from .conftest import Stack

DAY = 86400.0


async def test_purge_after_retention_respects_hold_and_audits(stack: Stack) -> None:
    pipeline = await stack.start_pipeline()
    tenant = await stack.tenant()
    await stack.owner.execute("UPDATE tenants SET recording_retention_days = 30 WHERE id = $1", tenant)
    kept = await stack.record_call(tenant, 0.5)
    held = await stack.record_call(tenant, 0.5)
    purged = await stack.record_call(tenant, 0.5)
    rows = {rid: await stack.wait_status(tenant, rid, "available") for rid in (kept, held, purged)}
    assert {r["retention_days"] for r in rows.values()} == {30}
    async with tenant_tx(stack.pool, tenant) as conn:
        await set_hold(conn, tenant, held, True)
        # `kept` ended later than the others: its own retention is not over at the purge's `now`.
        await conn.execute(
            "UPDATE recordings SET purge_after = purge_after + interval '10 days' WHERE id = $1", kept
        )
        await conn.execute(
            "UPDATE recording_purge_schedule SET purge_after = purge_after + interval '10 days' WHERE recording_id = $1",
            kept,
        )

    now = time.time()
    # Other tests' recordings may fall due too (the purge spans tenants): only ours are counted.
    mine = {kept, held, purged}
    assert mine.isdisjoint(await pipeline.purge_due(now))  # nothing of ours is due today
    assert mine & set(await pipeline.purge_due(now + 31 * DAY)) == {purged}
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        status = dict(
            await conn.fetch("SELECT id, status FROM recordings WHERE id = ANY($1)", [kept, held, purged])
        )
        audit = await conn.fetch(
            "SELECT action, target_id, actor_role FROM audit_log WHERE target_type = 'recording'"
        )
    assert status == {kept: "available", held: "available", purged: "deleted"}
    assert ("recording.purged", str(purged), "system") in [tuple(a) for a in audit]
    assert not (stack.store.root / str(tenant) / f"{purged}.sbrec").exists()
    assert (stack.store.root / str(tenant) / f"{held}.sbrec").exists()

    async with tenant_tx(stack.pool, tenant) as conn:
        await set_hold(conn, tenant, held, False)  # released: back on the schedule with its date
    assert mine & set(await pipeline.purge_due(now + 45 * DAY)) == {kept, held}
    assert mine.isdisjoint(await pipeline.purge_due(now + 45 * DAY))  # each recording goes once
