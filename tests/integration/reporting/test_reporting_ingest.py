"""The reporting service as a real process: events published on the bus become facts through its durable
JetStream consumer; a restart picks up where it left; a second consumer replaying the whole stream from its
start changes no report."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
from reporting_harness import make_tenant, reports, scenario, start_reporting

from services.kernel import db
from tests.service_procs import stop

REPO = Path(__file__).resolve().parents[3]


async def offered(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> int:
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM rpt_contacts WHERE queued_at IS NOT NULL"))


async def wait_for(pool: asyncpg.Pool, tenant_id: uuid.UUID, count: int) -> None:
    """The facts are in PostgreSQL, written by another process: look every 50 ms for up to 20 s."""
    for _ in range(400):
        if await offered(pool, tenant_id) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} contacts not ingested within 20 s (have {await offered(pool, tenant_id)})")


async def drained(pool: asyncpg.Pool, bus) -> None:  # type: ignore[no-untyped-def]
    """Every event published so far is ingested: a marker tenant's contact, published after them, is. The
    consumer writes in stream order, so waiting for the 7th contact's `queued` alone would read the report
    before that contact's `abandoned` (one event later, maybe in the next batch) was written."""
    marker_tenant, marker_queue = await make_tenant(pool)
    for event in scenario(marker_tenant, marker_queue, "m")[:3]:
        await bus.publish(event)
    await wait_for(pool, marker_tenant, 1)


async def test_events_on_the_bus_become_facts_once_even_when_replayed(infra, pool, bus) -> None:  # type: ignore[no-untyped-def]
    tenant_id, queue_id = await make_tenant(pool)
    events = scenario(tenant_id, queue_id, str(uuid.uuid4()))
    durable = f"rpt_test_{uuid.uuid4().hex[:8]}"
    proc = start_reporting(infra, durable)
    try:
        for event in events[: len(events) // 2]:
            await bus.publish(event)
        await wait_for(pool, tenant_id, 1)
        # Restart in the middle: the durable consumer resumes; nothing is lost or counted twice.
        stop(proc)
        for event in events[len(events) // 2 :]:
            await bus.publish(event)
        proc = start_reporting(infra, durable)
        await wait_for(pool, tenant_id, 7)
        await drained(pool, bus)
        first = await reports(pool, tenant_id)
        (row,) = first["queues"]["rows"]  # type: ignore[index]
        assert (row["offered"], row["answered"], row["abandoned_long"]) == (7, 4, 2)
    finally:
        stop(proc)
    # A new consumer replays the whole stream from its start into the same tables: every event id is known.
    replay = start_reporting(infra, f"{durable}_replay")
    try:
        await drained(pool, bus)  # published after the replayed ones: seen last
        assert await reports(pool, tenant_id) == first
    finally:
        stop(replay)
