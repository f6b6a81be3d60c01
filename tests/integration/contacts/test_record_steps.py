"""A contact's step that changes nothing in its record makes no PostgreSQL transaction (issue 21: more than
half of a call's steps only change the coordinator's own state). The coordinator's adapter against real
PostgreSQL as the services' role and a real NATS KV bucket, with its pool's transactions counted."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, cast

import asyncpg
import msgspec
import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError

from services.contacts.adapter import ContactsAdapter, _Running
from services.contacts.contact_state import Contact
from services.contacts.lifecycle import Lifecycle
from services.contacts.records import TimelineEntry, load_contact
from services.kernel import db
from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.ids import new_id
from tests.integration.counting import CountingPool
from tests.unit.contacts.test_lifecycle import AGENT, CALL, T, command, connected_signal, offer, to_queue


async def test_a_step_that_leaves_the_record_unchanged_writes_no_row(infra, pool: asyncpg.Pool) -> None:  # type: ignore[no-untyped-def]
    tenant = new_id()
    bus = await connect(infra.nats_url, name="test-record-steps")
    bucket = f"test_record_steps_{uuid.uuid4().hex[:8]}"
    counting = CountingPool(pool)
    adapter = ContactsAdapter(bus, cast(asyncpg.Pool, counting))
    try:
        adapter.kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket))
        arrived = ev.CallArrived(tenant_id=tenant, call_id=new_id(), from_uri="sip:+15550003333@127.0.0.1")
        machine = Lifecycle.arrive(arrived, time.time())
        assert machine is not None
        running = _Running(machine=machine)
        record = machine.state.record

        async def save() -> int:
            before = counting.acquired
            await adapter._save(running)
            return counting.acquired - before

        async def stored() -> Any:
            async with db.tenant_tx(pool, tenant) as conn:
                return await load_contact(conn, record.id)

        # The tenant does not exist yet: the write fails (foreign key), and the next step must write the
        # record even though it is unchanged since.
        assert await save() == 1 and running.written is None
        async with db.tenant_tx(pool, tenant) as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'a@b.example')", tenant
            )
        assert await save() == 1 and (await stored()).id == record.id

        machine.state.pending["c1"] = "answer"  # the coordinator's own state only: KV, no transaction
        assert await save() == 0
        kept = await adapter.kv.get(f"{tenant}.{record.id}")
        assert msgspec.json.decode(kept.value, type=Contact).pending == {"c1": "answer"}

        record.timeline.append(TimelineEntry(at=time.time(), event="queued"))  # the record changed: written
        assert await save() == 1
        assert [e.event for e in (await stored()).timeline] == [e.event for e in record.timeline]
        record.state = "queued"
        assert await save() == 1 and (await stored()).state == "queued"
        assert await save() == 0
    finally:
        await bus.js.delete_key_value(bucket)
        await bus.nc.close()


async def test_a_final_record_postgresql_refused_is_kept_and_written_once_it_can_be(  # type: ignore[no-untyped-def]
    infra, pool: asyncpg.Pool
) -> None:
    """The event that finished a contact is acknowledged whatever the write did: a refused final record was
    forgotten with its KV entry and never reached PostgreSQL. It is now kept in `sb_contacts` (a restarted
    coordinator takes the attempt over) and written again until PostgreSQL takes it."""
    tenant = new_id()
    bus = await connect(infra.nats_url, name="test-record-final")
    bucket = f"test_record_final_{uuid.uuid4().hex[:8]}"
    first, second = ContactsAdapter(bus, pool), ContactsAdapter(bus, pool)
    try:
        first.kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket))
        second.kv, first.bucket, second.bucket = first.kv, bucket, bucket
        arrived = ev.CallArrived(tenant_id=tenant, call_id=new_id(), from_uri="sip:+15550004444@127.0.0.1")
        machine = Lifecycle.arrive(arrived, time.time())
        assert machine is not None
        running = _Running(machine=machine)
        first.contacts[machine.contact_id] = running
        machine.handle(
            ev.CallEnded(tenant_id=tenant, call_id=arrived.call_id, cause="remote_bye", duration=0.0),
            time.time(),
        )
        assert machine.finished
        key = f"{tenant}.{machine.contact_id}"

        # The tenant does not exist yet: PostgreSQL refuses the record (foreign key).
        await first._save(running)
        assert running.written is None and first.contacts.get(machine.contact_id) is running
        assert (
            msgspec.json.decode((await first.kv.get(key)).value, type=Contact).record.id == machine.contact_id
        )

        # That coordinator stops; the next one resumes the attempt from the KV.
        first.contacts.clear()
        await second._resume(None)
        assert machine.contact_id in second.contacts
        async with db.tenant_tx(pool, tenant) as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'final@b.example')", tenant
            )
        for _ in range(100):  # the first attempt is a second after the resume
            if machine.contact_id not in second.contacts:
                break
            await asyncio.sleep(0.05)
        async with db.tenant_tx(pool, tenant) as conn:
            stored = await load_contact(conn, machine.contact_id)
        assert stored is not None and stored.state == machine.state.record.state
        assert machine.contact_id not in second.contacts
        with pytest.raises(KeyNotFoundError):
            await first.kv.get(key)
    finally:
        for task in [*first._tasks, *second._tasks]:
            task.cancel()
        await bus.js.delete_key_value(bucket)
        await bus.nc.close()


class Watched:
    """The real bucket; each put that NATS acknowledged is noted in `order`."""

    def __init__(self, kv: Any, order: list[str]) -> None:
        self.kv, self.order = kv, order

    async def put(self, key: str, value: bytes) -> int:
        seq = int(await self.kv.put(key, value))
        self.order.append("put")
        return seq


async def test_a_burst_of_one_contacts_events_is_saved_once_and_acknowledged_after(  # type: ignore[no-untyped-def]
    infra, pool: asyncpg.Pool
) -> None:
    """Events of one contact that queue behind a step are saved once, by the last of them (one KV put,
    not one each), and none of their steps returns (acknowledging its event) before that save; a failed
    save fails every step it was saving, so each of their events is delivered again."""
    tenant = new_id()
    bus = await connect(infra.nats_url, name="test-record-burst")
    bucket = f"test_record_burst_{uuid.uuid4().hex[:8]}"
    adapter = ContactsAdapter(bus, pool)
    order: list[str] = []

    try:
        async with db.tenant_tx(pool, tenant) as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'burst@b.example')", tenant
            )
        kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket))
        adapter.kv = cast(Any, Watched(kv, order))
        arrived = ev.CallArrived(tenant_id=tenant, call_id=new_id(), from_uri="sip:+15550005555@127.0.0.1")
        machine = Lifecycle.arrive(arrived, time.time())
        assert machine is not None
        running = _Running(machine=machine)
        adapter.contacts[machine.contact_id] = running

        def ended() -> ev.ContactEnded:
            return ev.ContactEnded(
                tenant_id=tenant, call_id=arrived.call_id, queue_id="", agent_id="", talk_s=0.0
            )

        async def burst(events: list[ev.ContactEnded]) -> list[asyncio.Task[None]]:
            await running.lock.acquire()  # a step in progress: the events queue behind it
            tasks = [asyncio.create_task(adapter.on_event(e)) for e in events]
            for task in tasks:
                task.add_done_callback(lambda _: order.append("acked"))
            for _ in range(100):
                if running.waiting == len(events):
                    break
                await asyncio.sleep(0.01)
            assert running.waiting == len(events)
            running.lock.release()
            await asyncio.wait(tasks, timeout=10)
            return tasks

        events = [ended() for _ in range(3)]
        tasks = await burst(events)
        assert all(t.done() and t.exception() is None for t in tasks)
        assert order == ["put", "acked", "acked", "acked"]
        state = msgspec.json.decode((await kv.get(f"{tenant}.{machine.contact_id}")).value, type=Contact)
        assert {str(e.id) for e in events} <= set(state.seen)

        # The bucket is gone: the one save fails, and so does every step it was saving.
        await bus.js.delete_key_value(bucket)
        order.clear()
        tasks = await burst([ended() for _ in range(3)])
        assert all(t.done() and t.exception() is not None for t in tasks)
        assert "put" not in order and running.unsaved == []
    finally:
        with contextlib.suppress(Exception):
            await bus.js.delete_key_value(bucket)
        await bus.nc.close()


async def test_a_desk_command_and_the_event_it_caused_are_saved_once_then_answered(  # type: ignore[no-untyped-def]
    infra, pool: asyncpg.Pool
) -> None:
    """A desk command whose step finds an event of its contact waiting (routing's answer to it, a leg's
    end) leaves the save to that event's step, and the agent is answered only after that save."""
    bus = await connect(infra.nats_url, name="test-record-desk")
    bucket = f"test_record_desk_{uuid.uuid4().hex[:8]}"
    adapter = ContactsAdapter(bus, pool)
    order: list[str] = []
    try:
        async with db.tenant_tx(pool, T) as conn:
            await conn.execute(
                """INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'desk@b.example')
                   ON CONFLICT DO NOTHING""",
                T,
            )
        kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket))
        adapter.kv = cast(Any, Watched(kv, order))
        machine = to_queue()  # a caller in line, offered to AGENT, accepted, bridged: connected
        machine.handle(offer(), time.time())
        machine.handle(connected_signal(), time.time())
        out = machine.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), time.time())
        machine.replied(cast(Any, command(out, ev.MediaBridge)).id, True, None, time.time())
        assert machine.phase == "connected"
        running = _Running(machine=machine)
        adapter.contacts[CALL] = running

        await running.lock.acquire()  # a step in progress: the command, then the event, queue behind it
        desk = asyncio.create_task(
            adapter.on_desk(ev.DeskHold(tenant_id=T, agent_id=AGENT, contact_id=CALL, on=True))
        )
        desk.add_done_callback(lambda _: order.append("answered"))
        for waiting in (1, 2):
            if waiting == 2:
                event = asyncio.create_task(
                    adapter.on_event(
                        ev.ContactEnded(tenant_id=T, call_id=CALL, queue_id="", agent_id="", talk_s=0.0)
                    )
                )
                event.add_done_callback(lambda _: order.append("acked"))
            for _ in range(100):
                if running.waiting == waiting:
                    break
                await asyncio.sleep(0.01)
            assert running.waiting == waiting
        running.lock.release()
        await asyncio.wait([desk, event], timeout=10)
        assert desk.result().ok and event.exception() is None
        assert order[0] == "put" and sorted(order[1:]) == ["acked", "answered"]  # one put, before both
        state = msgspec.json.decode((await kv.get(f"{T}.{CALL}")).value, type=Contact)
        assert state.held
    finally:
        with contextlib.suppress(Exception):
            await bus.js.delete_key_value(bucket)
        await bus.nc.close()
