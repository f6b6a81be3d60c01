"""The agent report as CSV (docs/reporting.md, "The whole report at once: CSV") against real PostgreSQL as
the services' role: the lines the ingest keeps per agent and UTC day (migration 0039) and the lines computed
from the rollups give exactly the figures of the JSON report, over UTC midnight, in zones whose half hours are
or are not UTC's, with an agent whose state is still open, after a late event, and for one tenant only."""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from reporting_harness import contact_events, make_tenant

from services.kernel import db
from services.kernel import events as ev
from services.kernel.messages import Event
from services.reporting import queries
from services.reporting.backfill import rebuild_day
from services.reporting.rollups import STATES
from services.reporting.store import FactStore

MIDNIGHT = datetime(2026, 9, 22, tzinfo=UTC)
AGENTS = [f"ag{i}" for i in range(8)] + ['ag,"q"']  # the last needs CSV quoting


def _day(tenant_id: uuid.UUID, queue_id: str, seed: int) -> list[list[Event]]:
    """Each agent's events: states changing at random moments from 22:00 to 02:00 across UTC midnight, and
    a few contacts; ag7 is left available (open) at the end."""
    rng = random.Random(seed)
    out: list[list[Event]] = []
    start = (MIDNIGHT - timedelta(hours=2)).timestamp()
    for agent in AGENTS:
        events: list[Event] = []
        at = start + rng.uniform(0, 600)
        while at < start + 4 * 3600:
            state = rng.choice(["available", "away", "reserved", "on_contact", "wrap_up", "logged_out"])
            events.append(ev.AgentStateChanged(tenant_id=tenant_id, ts=at, agent_id=agent, old="", new=state))
            if state == "on_contact":
                events += contact_events(
                    tenant_id, queue_id, at - 3, answer_after=3.0, abandon_after=None, agent_id=agent
                )
            at += rng.uniform(30, 1500)
        last = "available" if agent == "ag7" else "logged_out"
        events.append(ev.AgentStateChanged(tenant_id=tenant_id, ts=at, agent_id=agent, old="", new=last))
        out.append(events)
    return out


def _from_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON report's rows as the CSV gives them: one cell per state, in agent then interval order."""
    out = []
    for r in sorted(rows, key=lambda r: (r["agent_id"], r["interval_start"])):
        row = {k: r[k] for k in ("interval_start", "agent_id", "handled", "aht_s", "occupancy", "transfers")}
        out.append(row | {f"{s}_s": r["state_seconds"].get(s) for s in STATES})
    return out


def _parse(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == queries.AGENT_CSV_COLUMNS
    out = []
    for r in reader:
        row: dict[str, Any] = {
            "interval_start": datetime.fromisoformat(r["interval_start"]),
            "agent_id": r["agent_id"],
            "handled": int(r["handled"]),
            "transfers": int(r["transfers"]),
        }
        row |= {k: float(v) if v else None for k, v in r.items() if k not in row}
        out.append(row)
    return out


async def _both(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    now: datetime,
    zone: str = "UTC",
    ids: list[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        whole = await queries.agent_report(conn, start, end, interval, now=now, zone=zone, agent_ids=ids)
        chunks = [
            c async for c in queries.agent_csv(conn, start, end, interval, now=now, zone=zone, agent_ids=ids)
        ]
    return _parse(b"".join(chunks).decode()), _from_json(whole["rows"])


async def test_agent_csv_has_the_figures_of_the_json_report(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    other, other_queue = await make_tenant(pool)
    store = FactStore(pool)
    mine = _day(tenant_id, queue_id, 1)
    for first in range(0, len(mine), 3):  # a few agents per batch: the lines are written several times
        await store.write(tenant_id, [e for events in mine[first : first + 3] for e in events])
    await store.write(other, [e for events in _day(other, other_queue, 2) for e in events])
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        days = await conn.fetch("SELECT day, count(*) AS n FROM rpt_agent_day GROUP BY 1 ORDER BY 1")
    assert [(r["day"].isoformat(), r["n"]) for r in days] == [("2026-09-21", 9), ("2026-09-22", 9)]

    early, late = MIDNIGHT - timedelta(hours=2), MIDNIGHT + timedelta(hours=3)
    after = late + timedelta(days=1)  # every state but ag7's is closed
    cases = [
        (early, late, "30m", after, "UTC", None),  # the kept lines, two UTC days each sliced
        (MIDNIGHT - timedelta(minutes=30), MIDNIGHT + timedelta(hours=1), "30m", after, "UTC", None),
        (early, late, "30m", after, "Asia/Kolkata", None),  # +05:30: half hours are UTC's
        (early, late, "30m", MIDNIGHT + timedelta(minutes=50), "UTC", None),  # states open at `now`
        (early, late, "30m", after, "UTC", ['ag,"q"', "ag3"]),  # none open
        (MIDNIGHT, late, "30m", after, "UTC", None),  # one UTC day
        (MIDNIGHT, late, "30m", after, "UTC", ["ag1", "ag2"]),  # one UTC day, none open
        (early, late, "30m", after, "Asia/Kathmandu", None),  # +05:45: computed from the rollups
        (early + timedelta(minutes=15), late, "30m", after, "UTC", None),  # from a quarter past
        (MIDNIGHT, late - timedelta(minutes=15), "30m", after, "UTC", None),  # to a quarter past
        (early + timedelta(minutes=20), late - timedelta(minutes=25), "30m", after, "UTC", ["ag1", "ag5"]),
        (early + timedelta(minutes=50), late - timedelta(minutes=10), "30m", after, "Asia/Kolkata", None),
        (MIDNIGHT + timedelta(minutes=15), MIDNIGHT + timedelta(minutes=30), "30m", after, "UTC", None),
        (early, late, "60m", after, "UTC", None),
        (early, late, "day", after, "America/New_York", None),
    ]
    for start, end, interval, now, zone, ids in cases:
        got, expected = await _both(pool, tenant_id, start, end, interval, now=now, zone=zone, ids=ids)
        assert got == expected, (start, end, interval, now, zone, ids)
        assert got and {r["agent_id"] for r in got} <= set(ids or AGENTS)
        if end - start > timedelta(hours=1):
            assert {r["agent_id"] for r in got} == set(ids or AGENTS)

    # A late event (an agent's state from before the range's end, written after) moves the kept lines.
    late_state = ev.AgentStateChanged(
        tenant_id=tenant_id,
        ts=(MIDNIGHT + timedelta(minutes=5)).timestamp(),
        agent_id="ag1",
        old="",
        new="away",
    )
    before, _ = await _both(pool, tenant_id, early, late, "30m", now=after)
    await store.write(tenant_id, [late_state])
    got, expected = await _both(pool, tenant_id, early, late, "30m", now=after)
    assert got == expected and got != before

    # The kept lines are what a UTC half-hour report reads; the backfill writes them again from the
    # rebuilt rollups.
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute("UPDATE rpt_agent_day SET lines = array_fill(''::text, ARRAY[48])")
    blanked, _ = await _both(pool, tenant_id, early, late, "30m", now=after)
    assert {r["agent_id"] for r in blanked} == {"ag7"}  # its state is open: computed from the rollups
    async with db.tenant_tx(pool, tenant_id) as conn:
        await rebuild_day(conn, MIDNIGHT.date())
        await rebuild_day(conn, (MIDNIGHT - timedelta(days=1)).date())
    assert await _both(pool, tenant_id, early, late, "30m", now=after) == (got, expected)
