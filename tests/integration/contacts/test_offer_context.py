"""The offer's context comes without PostgreSQL reads on the critical path (issue 21): the coordinator's
adapter against real PostgreSQL as the services' role, with its pool's acquisitions counted."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, cast

import asyncpg

from services.contacts.adapter import ContactsAdapter, _Running
from services.contacts.context import SettingsCache
from services.contacts.lifecycle import Lifecycle
from services.contacts.records import ContactRecord, save_contact
from services.kernel import db
from services.kernel import events as ev
from services.kernel.ids import new_id
from tests.integration.counting import CountingPool


async def test_the_offer_reads_nothing_and_a_config_change_is_seen(pool: asyncpg.Pool) -> None:
    tenant, queue, agent, caller = new_id(), new_id(), new_id(), "+15550002222"
    async with db.tenant_tx(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'a@b.example')", tenant
        )
        await conn.execute(
            """INSERT INTO queues (id, tenant_id, name, recording_percent, announce_seconds)
               VALUES ($1, $2, 'support', 100, 30)""",
            queue,
            tenant,
        )
        await conn.execute(
            """INSERT INTO agents (id, tenant_id, name, email, endpoint)
               VALUES ($1, $2, 'Ann', $3, 'sip:ann@127.0.0.1:5070')""",
            agent,
            tenant,
            f"ann{time.time_ns()}@x.example",
        )
        earlier = ContactRecord(
            id=new_id(), tenant_id=tenant, caller=caller, state="wrapped_up", arrived_at=time.time() - 60
        )
        await save_contact(conn, earlier)
    counting = CountingPool(pool)
    adapter = ContactsAdapter(cast(Any, None), cast(asyncpg.Pool, counting))

    async def arrive_and_offer() -> tuple[int, Any]:
        arrived = ev.CallArrived(
            tenant_id=tenant, call_id=new_id(), from_uri=f"sip:{caller}@127.0.0.1", queue_id=queue
        )
        waiting = await adapter._waiting(arrived)
        machine = Lifecycle.arrive(arrived, time.time(), waiting=waiting)
        assert machine is not None
        running = _Running(machine=machine)
        running.history = asyncio.ensure_future(adapter._history(machine))
        await running.history  # read while routing queues the call
        before = counting.acquired
        offer = ev.ContactOffered(
            tenant_id=tenant,
            call_id=arrived.call_id,
            queue_id=str(queue),
            agent_id=str(agent),
            offer_id="o1",
            expires_at=time.time() + 15,
        )
        info = await adapter._offer_info(running, offer)
        return counting.acquired - before, info

    reads, info = await arrive_and_offer()
    assert reads == 0
    assert (info.queue_name, info.endpoint, info.record_percent) == ("support", "sip:ann@127.0.0.1:5070", 100)
    assert info.history_today == 1 and [c["contact_id"] for c in info.history_last] == [str(earlier.id)]
    assert adapter.settings.reads == 1  # the tenant's settings, read once by the first arrival

    async with db.tenant_tx(pool, tenant) as conn:
        await conn.execute("UPDATE queues SET name = 'billing', recording_percent = 0 WHERE id = $1", queue)
    _, info = await arrive_and_offer()
    assert info.queue_name == "support"  # no config.changed yet: the copy in memory
    await adapter._on_config(ev.ConfigChanged(tenant_id=tenant, kind="queue", op="updated", object_id=queue))
    reads, info = await arrive_and_offer()
    assert reads == 0 and (info.queue_name, info.record_percent) == ("billing", 0)
    assert adapter.settings.reads == 2  # the arrival after the change read the settings again

    # A change whose event was missed: once the copy is older than its age limit the offer still uses it
    # (no wait), and a read in the background brings the change for the next one.
    async with db.tenant_tx(pool, tenant) as conn:
        await conn.execute("UPDATE queues SET name = 'sales' WHERE id = $1", queue)
    adapter.settings.max_age = 0.0
    before = counting.acquired
    stale = await adapter.settings.get(tenant, queue_id=queue)
    assert counting.acquired == before and stale is not None and stale.queues[queue].name == "billing"
    await asyncio.gather(*adapter.settings._refreshing.values())
    _, info = await arrive_and_offer()
    assert info.queue_name == "sales"
    other = uuid.uuid4()  # an agent the copy does not know (created, its event missed): read at once
    assert await adapter.settings.get(tenant, agent_id=other) is not None


async def test_the_settings_of_the_tenants_used_least_recently_are_dropped_past_the_bound(
    pool: asyncpg.Pool,
) -> None:
    """The cache keeps at most `max_tenants` tenants' settings: the one used least recently goes first and
    is read again when next needed (it kept every tenant it had ever seen)."""
    cache = SettingsCache(pool, max_tenants=2)
    first, second, third = new_id(), new_id(), new_id()  # no such tenants: their `None` is kept as well
    for tenant in (first, second, first, third):
        assert await cache.get(tenant) is None
    assert cache.reads == 3  # the second use of `first` was the copy
    await cache.get(first)
    assert cache.reads == 3  # used just before `third` came: kept
    await cache.get(second)
    assert cache.reads == 4  # the least recently used when `third` came: dropped, read again
