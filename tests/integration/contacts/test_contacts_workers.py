"""Two contact coordinators sharing tenants by partition (services/kernel/partitioned.py), on the session's
real NATS and PostgreSQL, with media and routing answered by the bus-level responder: each worker takes its
home partitions; kill -9 of one moves its partitions and their live contacts to the other within 5 s, they
come back when it is restarted, and every contact ends exactly once (one enqueue and one cancel per call, one record each). And the race that
takeover exposed: a hang-up read right behind its arrival."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.contacts.adapter import ContactsAdapter
from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from services.kernel.db import create_pool, tenant_tx
from tests.integration.routing.conftest import Tenant, make_tenant
from tests.integration.scaleout import (
    Responder,
    Workers,
    all_moved,
    drop_stream,
    homes_owned,
    wait_for,
    workers,
)

CALLS_PER_TENANT = 3


@pytest.fixture
async def bus(infra: Any) -> AsyncIterator[Bus]:
    b = await connect(infra.nats_url, name="contacts-workers-test")
    await b.ensure_streams()
    yield b
    await b.close()


@pytest.fixture
async def pool(infra: Any) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(infra.app_url, max_size=2)
    yield p
    await asyncio.wait_for(p.close(), 5.0)


def react(name: str, data: dict[str, Any]) -> list[ev.Event]:
    """What media and routing publish after the coordinator's commands."""
    tenant, call = uuid.UUID(data["tenant_id"]), uuid.UUID(data["call_id"])
    if name == "media.answer":
        return [ev.CallAnswered(tenant_id=tenant, call_id=call)]
    if name == "routing.enqueue":
        return [ev.ContactQueued(tenant_id=tenant, call_id=call, queue="sales", position=1)]
    return []


async def states(pool: asyncpg.Pool, tenant: Tenant, calls: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    async with tenant_tx(pool, tenant.id, readonly=True) as conn:
        rows = await conn.fetch("SELECT id, state, ended_at FROM contacts WHERE id = ANY($1)", calls)
    return {r["id"]: ("ended" if r["ended_at"] is not None else r["state"]) for r in rows}


async def tenant_homed_on(pool: asyncpg.Pool, w: Workers, index: int) -> Tenant:
    while True:
        t = await make_tenant(pool, agents=0)
        if w.home_of(t.id) == index:
            return t


async def test_kill_9_moves_live_contacts_to_the_other_coordinator(
    infra: Any, bus: Bus, pool: asyncpg.Pool
) -> None:
    with workers(infra, "services.contacts", "SB_CONTACTS_DURABLE") as w:
        try:
            await homes_owned(bus, w)
            kept, moved = await tenant_homed_on(pool, w, 0), await tenant_homed_on(pool, w, 1)
            responder = Responder(bus, [kept.id, moved.id], react)
            await responder.start()
            calls = {t.id: [uuid.uuid4() for _ in range(CALLS_PER_TENANT)] for t in (kept, moved)}
            for t in (kept, moved):
                for call in calls[t.id]:
                    await bus.publish(
                        ev.CallArrived(
                            tenant_id=t.id, call_id=call, to_e164="+15550100", queue_id=t.queues["sales"]
                        )
                    )

            async def all_in(state: str) -> bool:
                found = [list((await states(pool, t, calls[t.id])).values()) for t in (kept, moved)]
                return found == [[state] * CALLS_PER_TENANT] * 2

            async def all_queued() -> bool:
                return await all_in("queued")

            await wait_for(all_queued, 10.0, "every contact queued")

            # One caller of the doomed worker's tenant hangs up as it dies (the event in flight), one after.
            first, second, live = calls[moved.id]
            await bus.publish(ev.CallEnded(tenant_id=moved.id, call_id=first, cause="remote_bye", duration=3))
            killed = w.kill(1)
            await bus.publish(
                ev.CallEnded(tenant_id=moved.id, call_id=second, cause="remote_bye", duration=4)
            )

            async def handled() -> bool:
                s = await states(pool, moved, [first, second])
                return s.get(first) == "ended" and s.get(second) == "ended"

            await wait_for(handled, 8.0, "the survivor ends the moved tenant's callers")
            took = time.monotonic() - killed
            print(f"\ncontacts failover: kill -9 to the moved contacts' next step {took:.2f} s")
            assert took < 5.0, took
            await all_moved(bus, w.name, f"{w.name}-0", killed)
            assert "contacts_partition_resumed" in w.logs[0].read_text()

            # Its supervisor starts the dead worker again: the survivor hands its home partitions back,
            # once each, and the live contact that moved twice is still handled like any other.
            w.restart(1)
            await homes_owned(bus, w)
            log = w.logs[0].read_text()
            assert log.count('"partition_released"') == 2, log  # the two home partitions of worker 1
            for t in (kept, moved):
                for call in calls[t.id]:
                    if call not in (first, second):
                        await bus.publish(
                            ev.CallEnded(tenant_id=t.id, call_id=call, cause="remote_bye", duration=5)
                        )

            async def all_ended() -> bool:
                return await all_in("ended")

            await wait_for(all_ended, 10.0, "every contact ended")
            assert live in await states(pool, moved, [live])
            # None lost, none doubled: one record per call, and each step's command sent with one id only.
            for t in (kept, moved):
                async with tenant_tx(pool, t.id, readonly=True) as conn:
                    assert await conn.fetchval("SELECT count(*) FROM contacts") == CALLS_PER_TENANT
                for call in calls[t.id]:
                    assert len(responder.ids("media.answer", call)) == 1, call
                    assert len(responder.ids("routing.enqueue", call)) == 1, call
                    assert len(responder.ids("routing.cancel", call)) == 1, call
        finally:
            await drop_stream(bus, w.name)


async def test_a_hang_up_read_right_behind_its_arrival_ends_the_contact(
    infra: Any, bus: Bus, pool: asyncpg.Pool
) -> None:
    """After a restart or a takeover the backlog comes back to back: call.ended read while its call.arrived
    is still reading the queue's settings must wait for the contact, not find none and be dropped."""
    t = await make_tenant(pool, agents=0)
    responder = Responder(bus, [t.id], react)
    await responder.start()
    adapter = ContactsAdapter(bus, pool, consumer=f"c{uuid.uuid4().hex[:10]}")
    await adapter.start()
    try:
        calls = [uuid.uuid4() for _ in range(3)]
        for call in calls:
            await bus.publish(
                ev.CallArrived(tenant_id=t.id, call_id=call, to_e164="+15550100", queue_id=t.queues["sales"])
            )
            await bus.publish(ev.CallEnded(tenant_id=t.id, call_id=call, cause="remote_bye", duration=0))

        async def ended() -> bool:
            return list((await states(pool, t, calls)).values()) == ["ended"] * len(calls)

        await wait_for(ended, 10.0, "every contact ended by its hang-up")
        assert not adapter.contacts
    finally:
        await adapter.stop()
        await asyncio.wait_for(bus.js.delete_consumer("SB_EVENTS", adapter.consumer), 5.0)
