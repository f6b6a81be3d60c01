"""Contact records against real PostgreSQL as the services' role: whole-record upsert, load, a caller's
history for the offer's context, and row-level security between tenants."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.contacts.records import (
    ContactRecord,
    TimelineEntry,
    caller_history,
    load_contact,
    save_contact,
    write_contact,
)
from services.kernel import db
from services.kernel.ids import new_id

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


async def _tenant(pool: asyncpg.Pool) -> uuid.UUID:
    tenant_id = new_id()
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'a@b.example')", tenant_id
        )
    return tenant_id


def _full(tenant_id: uuid.UUID, queue_id: uuid.UUID | None = None) -> ContactRecord:
    return ContactRecord(
        id=new_id(),
        tenant_id=tenant_id,
        caller="+15550001111",
        caller_name="Ada Lovelace",
        dialled="+15550100",
        number_id=new_id(),
        flow_id=new_id(),
        queue_id=queue_id or new_id(),
        queue_name="support",
        agent_id=new_id(),
        state="ended",
        outcome="handled",
        cause="caller_hangup",
        disposition="resolved",
        notes="asked about an invoice",
        ivr_path=["welcome", "menu", "to_support"],
        ivr_digits="2",
        attributes={"lang": "en", "account": "A-17"},
        transfers=[{"at": "2026-09-21T14:14:00Z", "to": "billing", "note": "invoice"}],
        timeline=[
            TimelineEntry(at=T0, event="arrived", detail={"dialled": "+15550100"}),
            TimelineEntry(at=T0 + 4.5, event="queued", detail={"queue": "support"}),
            TimelineEntry(at=T0 + 9.25, event="connected"),
        ],
        arrived_at=T0,
        queued_at=T0 + 4.5,
        offered_at=T0 + 8.0,
        connected_at=T0 + 9.25,
        ended_at=T0 + 70.0,
        wrapped_at=T0 + 90.0,
        ivr_s=4.5,
        queue_s=4.75,
        talk_s=60.75,
    )


async def test_save_and_load_round_trip_every_field(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    record = _full(tenant)
    async with db.tenant_tx(pool, tenant) as conn:
        await save_contact(conn, record)
    async with db.tenant_tx(pool, tenant, readonly=True) as conn:
        loaded = await load_contact(conn, record.id)
        assert await load_contact(conn, new_id()) is None
    assert loaded == record


async def test_save_is_an_idempotent_whole_row_upsert(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    record = ContactRecord(id=new_id(), tenant_id=tenant, state="arrived", arrived_at=T0)
    async with db.tenant_tx(pool, tenant) as conn:
        await save_contact(conn, record)
        await save_contact(conn, record)
    async with db.tenant_tx(pool, tenant, readonly=True) as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts WHERE id = $1", record.id) == 1
        minimal = await load_contact(conn, record.id)
    # Defaults survive the round trip: nothing comes back as NULL where the struct says [] or {}.
    assert minimal == record

    # The next save replaces the row whole, including fields set back to None.
    later = _full(tenant)
    later.id = record.id
    async with db.tenant_tx(pool, tenant) as conn:
        await save_contact(conn, later)
    async with db.tenant_tx(pool, tenant) as conn:
        assert await load_contact(conn, record.id) == later
        later.outcome = None
        later.timeline.append(TimelineEntry(at=T0 + 95.0, event="wrapped_up", detail={"code": "x"}))
        await save_contact(conn, later)
        again = await load_contact(conn, record.id)
        assert again is not None and again.outcome is None and again.timeline[-1].event == "wrapped_up"
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 1


async def test_nul_characters_from_the_wire_are_dropped_not_fatal(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    record = ContactRecord(
        id=new_id(), tenant_id=tenant, state="arrived", arrived_at=T0, caller_name="Bad\x00Name"
    )
    async with db.tenant_tx(pool, tenant) as conn:
        await save_contact(conn, record)
        loaded = await load_contact(conn, record.id)
    assert loaded is not None and loaded.caller_name == "BadName"


async def test_caller_history_counts_since_and_lists_the_last_contacts(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    queue_id = new_id()
    async with db.tenant_tx(pool, tenant) as conn:
        await conn.execute(
            "INSERT INTO queues (id, tenant_id, name) VALUES ($1, $2, 'sales')", queue_id, tenant
        )
        caller = "+15550002222"
        ids = []
        # Five contacts an hour apart; the third went to a live queue without a stored name.
        for i in range(5):
            r = ContactRecord(
                id=new_id(),
                tenant_id=tenant,
                caller=caller,
                state="ended",
                outcome=["abandoned", "handled", "handled", "abandoned", None][i],
                disposition="sale" if i == 1 else None,
                queue_id=queue_id if i == 2 else None,
                queue_name="support" if i in (0, 1) else "",
                arrived_at=T0 + 3600 * i,
            )
            ids.append(r.id)
            await save_contact(conn, r)
        # Someone else, and an anonymous caller.
        await save_contact(
            conn,
            ContactRecord(id=new_id(), tenant_id=tenant, caller="+15559999999", state="x", arrived_at=T0),
        )
        await save_contact(conn, ContactRecord(id=new_id(), tenant_id=tenant, state="x", arrived_at=T0))

        current = ids[4]
        count, last = await caller_history(conn, caller, since=T0 + 3600, exclude=current)
        # Since the second contact, not counting the one being offered: contacts 1, 2 and 3.
        assert count == 3
        assert [c["contact_id"] for c in last] == [str(ids[3]), str(ids[2]), str(ids[1])]
        assert last[0] == {
            "contact_id": str(ids[3]),
            "at": "2026-09-21T17:13:20.000Z",
            "queue": "",
            "outcome": "abandoned",
            "disposition": "",
        }
        assert last[1]["queue"] == "sales"  # name looked up from the live queue
        assert last[2]["queue"] == "support" and last[2]["disposition"] == "sale"

        count, last = await caller_history(conn, caller, since=T0, exclude=None, limit=10)
        assert count == 5 and len(last) == 5
        assert await caller_history(conn, caller, since=T0 + 10 * 3600, exclude=None) == (0, last[:3])
        assert await caller_history(conn, "", since=0, exclude=None) == (0, [])
        assert await caller_history(conn, "+15550003333", since=0, exclude=None) == (0, [])


async def test_another_tenant_sees_and_overwrites_nothing(pool: asyncpg.Pool) -> None:
    a, b = await _tenant(pool), await _tenant(pool)
    record = _full(a)
    async with db.tenant_tx(pool, a) as conn:
        await save_contact(conn, record)
    async with db.tenant_tx(pool, b) as conn:
        assert await load_contact(conn, record.id) is None
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
        assert await caller_history(conn, record.caller, since=0, exclude=None) == (0, [])
        # Writing a record that names tenant A is refused by the policy's WITH CHECK.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await save_contact(conn, _full(a))
        # Reusing A's contact id from B cannot replace A's row.
        hijack = _full(b)
        hijack.id = record.id
        with pytest.raises(asyncpg.PostgresError):
            async with conn.transaction():
                await save_contact(conn, hijack)
    async with db.tenant_tx(pool, a, readonly=True) as conn:
        assert await load_contact(conn, record.id) == record
    # Without a tenant, nothing at all.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0


async def test_each_step_appends_its_timeline_entries_and_never_rewrites_the_earlier_ones(
    pool: asyncpg.Pool,
) -> None:
    tenant_id = await _tenant(pool)
    record = _full(tenant_id)
    steps, record.timeline = record.timeline, record.timeline[:1]
    record.state, record.outcome = "queued", None
    async with db.tenant_tx(pool, tenant_id) as conn:
        assert await write_contact(conn, record, None) == 1  # the first step: whole (an insert)
        # Mark the stored first entry: a later step that rewrote the timeline would put it back.
        await conn.execute(
            """UPDATE contacts SET timeline = jsonb_set(timeline, '{0,event}', '"marked"') WHERE id = $1""",
            record.id,
        )
    record.timeline.append(steps[1])
    record.state = "connected"
    async with db.tenant_tx(pool, tenant_id) as conn:
        assert await write_contact(conn, record, 1) == 2
        record.timeline.append(steps[2])
        record.state, record.outcome = "ended", "handled"
        assert await write_contact(conn, record, 2) == 3
        stored = await load_contact(conn, record.id)
    assert stored is not None
    assert [e.event for e in stored.timeline] == ["marked", "queued", "connected"]
    assert (stored.state, stored.outcome) == ("ended", "handled")  # the columns follow each step
    assert stored.timeline[1:] == steps[1:] and stored.ivr_path == record.ivr_path
    assert stored.attributes == record.attributes and stored.talk_s == record.talk_s

    # A writer whose count is wrong (a rolled-back write, another coordinator) writes the record whole, so
    # no entry is lost or doubled; so does one whose row is gone.
    async with db.tenant_tx(pool, tenant_id) as conn:
        assert await write_contact(conn, record, 1) == 3
        stored = await load_contact(conn, record.id)
        assert stored is not None and stored.timeline == steps
        await conn.execute("DELETE FROM contacts WHERE id = $1", record.id)
        assert await write_contact(conn, record, 3) == 3
        stored = await load_contact(conn, record.id)
    assert stored == record
