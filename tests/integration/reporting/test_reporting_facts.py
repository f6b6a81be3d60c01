"""Reporting facts against real PostgreSQL as the services' role: the service-level formula with a queue's
thresholds, idempotent replay (the same reports however the stream is cut and however often it is
replayed), agent occupancy, IVR containment, live equals history, and tenants that never see each other."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from reporting_harness import T0, contact_events, make_tenant, reports, scenario

from services.kernel import db
from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Event
from services.reporting import queries
from services.reporting.queries import today_start
from services.reporting.store import FactStore


async def test_service_level_follows_the_formula_with_the_queues_thresholds(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    agent = str(new_id())
    store = FactStore(pool)
    assert await store.write(tenant_id, scenario(tenant_id, queue_id, agent)) > 0
    got = await reports(pool, tenant_id)
    (row,) = got["queues"]["rows"]  # type: ignore[index]
    assert row["offered"] == 7 and row["answered"] == 4 and row["answered_within"] == 3
    assert row["abandoned_short"] == 1 and row["abandoned_long"] == 2
    assert row["service_level"] == pytest.approx(3 / 6)
    assert row["asa_s"] == pytest.approx((2 + 10 + 19 + 45) / 4)
    assert row["aht_s"] == pytest.approx(100.0)
    assert row["sl_seconds"] == 20 and row["short_abandon_seconds"] == 5
    assert "short-abandon" in got["queues"]["formula"]["service_level"]  # type: ignore[index]

    (agent_row,) = got["agents"]["rows"]  # type: ignore[index]
    assert agent_row["handled"] == 4
    assert agent_row["state_seconds"] == {"on_contact": 600.0, "wrap_up": 300.0, "available": 900.0}
    assert agent_row["occupancy"] == pytest.approx(900 / 1800)

    (flow,) = got["ivr"]["rows"]  # type: ignore[index]
    assert flow["completed"] == 2 and flow["containment"] == pytest.approx(0.5)
    assert flow["nodes"][0]["node"] == "welcome" and flow["nodes"][0]["reached"] == 2


async def test_a_queues_own_thresholds_change_the_figures(pool: asyncpg.Pool) -> None:
    # T = 10 s, short abandons under 31 s: SL = 2 answered within / (4 answered + 1 long abandon).
    tenant_id, queue_id = await make_tenant(pool, sl_seconds=10, short=31)
    await FactStore(pool).write(tenant_id, scenario(tenant_id, queue_id, str(new_id())))
    (row,) = (await reports(pool, tenant_id))["queues"]["rows"]  # type: ignore[index]
    assert (row["answered_within"], row["abandoned_short"], row["abandoned_long"]) == (2, 2, 1)
    assert row["service_level"] == pytest.approx(2 / 5)


async def test_replaying_the_stream_twice_in_any_cut_gives_the_same_reports(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    events = scenario(tenant_id, queue_id, str(new_id()))
    store = FactStore(pool)
    rng = random.Random(5)
    shuffled = events[:]
    rng.shuffle(shuffled)  # redeliveries come out of order
    cut = 0
    while cut < len(shuffled):
        step = rng.randint(1, 6)
        await store.write(tenant_id, shuffled[cut : cut + step])
        cut += step
    first = await reports(pool, tenant_id)
    assert await store.write(tenant_id, events) == 0  # every event id is known: nothing new
    for i in range(0, len(events), 4):
        assert await store.write(tenant_id, list(reversed(events[i : i + 4]))) == 0
    assert await reports(pool, tenant_id) == first
    (row,) = first["queues"]["rows"]  # type: ignore[index]
    assert (row["offered"], row["answered"], row["abandoned_long"]) == (7, 4, 2)


async def test_tenants_never_see_each_others_facts(pool: asyncpg.Pool) -> None:
    a, qa = await make_tenant(pool)
    b, _ = await make_tenant(pool)
    await FactStore(pool).write(a, scenario(a, qa, str(new_id())))
    got_b = await reports(pool, b)
    assert got_b["queues"]["rows"] == [] and got_b["agents"]["rows"] == [] and got_b["ivr"]["rows"] == []  # type: ignore[index]
    async with db.tenant_tx(pool, b, readonly=True) as conn:
        for table in (
            "rpt_contacts",
            "rpt_agent_states",
            "rpt_ivr_visits",
            "rpt_queue_stats",
            "rpt_queue_now",
            "rpt_queue_rollup",
            "rpt_agent_rollup",
            "rpt_ivr_rollup",
            "rpt_ivr_node_rollup",
            "rpt_agent_now",
        ):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        # A partition named directly is no way around the policy: it has its own (rpt_ensure_month). The
        # role may or may not hold a grant on it (a later `migrate` grants every table), so either the
        # read is refused or it sees nothing of tenant a's rows.
        month = datetime.fromtimestamp(T0, UTC).strftime("%Y%m")
        try:
            seen = await conn.fetchval(f"SELECT count(*) FROM rpt_contacts_{month}")
        except asyncpg.InsufficientPrivilegeError:
            seen = 0
        assert seen == 0
    # Without a tenant set, nothing at all (the policy fails closed).
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rpt_contacts") == 0


async def test_live_equals_history_for_today(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    now = datetime.now(UTC)
    base = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 60
    events: list[Event] = []
    for i, wait in enumerate([1.0, 25.0]):
        events += contact_events(
            tenant_id, queue_id, base + i * 10, answer_after=wait, abandon_after=None, agent_id="a"
        )
    events += contact_events(tenant_id, queue_id, base + 50, answer_after=None, abandon_after=9.0)
    events = [e for e in events if e.ts <= now.timestamp()]
    await FactStore(pool).write(tenant_id, events)
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        live = await queries.realtime_queues(conn, now)
        start = queries.today_start(now, "UTC")
        history = await queries.queue_report(conn, start, now + timedelta(microseconds=1), "day")
    (q,) = live["queues"]
    (h,) = history["rows"]
    for key in ("offered", "answered", "abandoned_short", "abandoned_long", "service_level", "asa_s"):
        assert q[key] == h[key], key
    assert q["offered"] == 3 and q["service_level"] == pytest.approx(1 / 3)


async def test_realtime_agents_show_state_contact_and_todays_work(pool: asyncpg.Pool) -> None:
    tenant_id, queue_id = await make_tenant(pool)
    agent_id = new_id()
    async with db.tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO agents (id, tenant_id, name, email) VALUES ($1, $2, 'Ann', 'ann@example.com')",
            agent_id,
            tenant_id,
        )
    now = datetime.now(UTC)
    base = now.timestamp() - 300
    agent = str(agent_id)
    done = contact_events(tenant_id, queue_id, base, answer_after=5.0, abandon_after=None, agent_id=agent)
    talking = contact_events(
        tenant_id, queue_id, base + 200, answer_after=3.0, abandon_after=None, agent_id=agent
    )
    events: list[Event] = [*done, *talking[:2]]  # the second contact is answered, not ended
    events += [
        ev.AgentStateChanged(tenant_id=tenant_id, ts=base - 10, agent_id=agent, old="", new="available"),
        ev.AgentStateChanged(tenant_id=tenant_id, ts=base + 203, agent_id=agent, old="", new="on_contact"),
    ]
    if today_start(now, "UTC").timestamp() > base - 10:
        pytest.skip("too close to midnight UTC for a 'today' figure")
    await FactStore(pool).write(tenant_id, events)
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        (row,) = (await queries.realtime_agents(conn, now))["agents"]
    assert row["name"] == "Ann" and row["state"] == "on_contact"
    assert row["time_in_state_s"] == pytest.approx(now.timestamp() - (base + 203), abs=0.01)
    assert row["current_contact"] == str(talking[0].call_id)  # type: ignore[attr-defined]
    assert row["handled_today"] == 2 and row["aht_s"] == pytest.approx(100.0)


def _random_day(rng: random.Random) -> list[tuple[str, float, dict[str, object]]]:
    """A seeded mix of agent states, contacts and IVR visits around T0, as (kind, time, fields)."""
    out: list[tuple[str, float, dict[str, object]]] = []
    states = ["available", "away", "reserved", "on_contact", "wrap_up", "logged_out"]
    for agent in ("a1", "a2", "a3", "a4"):
        for _ in range(12):
            out.append(
                ("state", T0 + rng.uniform(-1800, 7200), {"agent_id": agent, "new": rng.choice(states)})
            )
    for i in range(30):
        at = T0 + rng.uniform(-1800, 7000)
        call = new_id()
        out.append(("queued", at, {"call_id": call}))
        if rng.random() < 0.7:
            wait = rng.uniform(0, 60)
            agent = rng.choice(["a1", "a2", "a3", "a4"])
            out.append(("assigned", at + wait, {"call_id": call, "agent_id": agent}))
            out.append(
                ("wrapped", at + wait + 200, {"call_id": call, "agent_id": agent, "handle_s": 150.0 + i})
            )
        else:
            wait = rng.uniform(0, 40)
            out.append(("abandoned", at + wait, {"call_id": call, "waited_s": wait}))
        for node in rng.choices(["welcome", "menu", "menu", "goodbye"], k=rng.randint(0, 4)):
            out.append(("visit", at - rng.uniform(1, 30), {"call_id": call, "node": node}))
    return out


def _events(
    tenant_id: uuid.UUID, queue_id: str, plan: list[tuple[str, float, dict[str, object]]]
) -> list[Event]:
    out: list[Event] = []
    for kind, ts, f in plan:
        if kind == "state":
            out.append(ev.AgentStateChanged(tenant_id=tenant_id, ts=ts, old="", **f))  # type: ignore[arg-type]
        elif kind == "queued":
            out.append(ev.ContactQueued(tenant_id=tenant_id, ts=ts, queue=queue_id, **f))  # type: ignore[arg-type]
        elif kind == "assigned":
            out.append(ev.ContactAssigned(tenant_id=tenant_id, ts=ts, queue_id=queue_id, offer_id="o", **f))  # type: ignore[arg-type]
        elif kind == "wrapped":
            out.append(ev.ContactWrappedUp(tenant_id=tenant_id, ts=ts, queue_id=queue_id, **f))  # type: ignore[arg-type]
        elif kind == "abandoned":
            out.append(
                ev.ContactAbandoned(
                    tenant_id=tenant_id, ts=ts, queue_id=queue_id, reason="caller_hangup", **f
                )  # type: ignore[arg-type]
            )
        else:
            out.append(ev.IvrNodeExited(tenant_id=tenant_id, ts=ts, flow="main", version=1, seconds=2.0, **f))  # type: ignore[arg-type]
    return out


def _state_seconds(
    plan: list[tuple[str, float, dict[str, object]]], start: float, end: float
) -> dict[str, dict[str, float]]:
    """Seconds per agent and state within [start, end), straight from the events: each state lasts until the
    agent's next one (the last one until `end`)."""
    rows: dict[str, list[tuple[float, str]]] = {}
    for kind, ts, f in plan:
        if kind == "state":
            rows.setdefault(str(f["agent_id"]), []).append((ts, str(f["new"])))
    out: dict[str, dict[str, float]] = {}
    for agent, changes in rows.items():
        changes.sort()
        for (at, state), until in zip(changes, [c[0] for c in changes[1:]] + [end], strict=True):
            s, u = max(at, start), min(until, end)
            if u > s and state != "logged_out":
                out.setdefault(agent, {}).setdefault(state, 0.0)
                out[agent][state] += u - s
    return out


async def test_rollups_agree_whatever_the_order_cut_and_replays(pool: asyncpg.Pool) -> None:
    """The same traffic written in order into one tenant, and shuffled, cut at random and partly replayed
    into another: the reports (sums of rollups kept by deltas, late agent states included) are the same,
    and the agents' state seconds are those computed straight from the events."""
    plan = _random_day(random.Random(11))
    plan.sort(key=lambda p: p[1])
    ordered, qa = await make_tenant(pool)
    shuffled, qb = await make_tenant(pool)
    store = FactStore(pool)
    await store.write(ordered, _events(ordered, qa, plan))
    events = _events(shuffled, qb, plan)
    rng = random.Random(3)
    mixed = events[:]
    rng.shuffle(mixed)
    mixed += rng.sample(events, len(events) // 3)  # redeliveries
    cut = 0
    while cut < len(mixed):
        step = rng.randint(1, 40)
        await store.write(shuffled, mixed[cut : cut + step])
        cut += step
    start, end = datetime.fromtimestamp(T0 - 3600, UTC), datetime.fromtimestamp(T0 + 9000, UTC)
    now = end + timedelta(hours=1)

    async def report(tenant_id: uuid.UUID) -> dict[str, object]:
        async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
            queues = await queries.queue_report(conn, start, end, "15m")
            for row in queues["rows"]:
                del row["queue_id"]
            return {
                "queues": queues["rows"],
                "agents": (await queries.agent_report(conn, start, end, "15m", now=now))["rows"],
                "ivr": (await queries.ivr_report(conn, start, end, "60m"))["rows"],
            }

    a, b = await report(ordered), await report(shuffled)
    assert a["queues"] and a["agents"] and a["ivr"]
    assert json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)
    expected = _state_seconds(plan, start.timestamp(), end.timestamp())
    got: dict[str, dict[str, float]] = {}
    for row in b["agents"]:  # type: ignore[attr-defined]
        for state, seconds in row["state_seconds"].items():
            got.setdefault(row["agent_id"], {}).setdefault(state, 0.0)
            got[row["agent_id"]][state] += seconds
    assert got.keys() == expected.keys()
    for agent, states in expected.items():
        assert got[agent] == pytest.approx(states, abs=1e-3), agent
    offered = sum(r["offered"] for r in b["queues"])  # type: ignore[attr-defined]
    assert offered == sum(1 for p in plan if p[0] == "queued" and start.timestamp() <= p[1] < end.timestamp())


def _called(tenant_id: uuid.UUID, queue_id: str, caller: str, at: float) -> list[Event]:
    """One answered contact from `caller`, its arrival included (the caller's number)."""
    events = contact_events(tenant_id, queue_id, at, answer_after=5.0, abandon_after=None, agent_id="a")
    call = events[0].call_id  # type: ignore[attr-defined]
    return [ev.CallArrived(tenant_id=tenant_id, ts=at - 5, call_id=call, from_uri=caller), *events]


async def test_first_contact_resolution_counts_callers_who_came_back(pool: asyncpg.Pool) -> None:
    """Caller X calls at 09:00, again at 11:00 and again 3 days later; Y once. X's first contact is a repeat
    within 24 h and 7 days, its second within 7 days only: FCR 24 h = 3/4, 7 d = 2/4, however the contacts
    are cut into batches and in whichever order they come."""
    plan = [("sip:x@p", 0.0), ("sip:x@p", 7200.0), ("sip:x@p", 3 * 86400.0), ("sip:y@p", 600.0)]
    start, end = datetime.fromtimestamp(T0 - 3600, UTC), datetime.fromtimestamp(T0 + 5 * 86400, UTC)
    figures = []
    # One batch; one batch each in order (later calls mark stored earlier ones); the latest first.
    for batches in (
        [[c for c in plan]],
        [[c] for c in sorted(plan, key=lambda c: c[1])],
        [[c] for c in sorted(plan, key=lambda c: -c[1])],
    ):
        tenant_id, queue_id = await make_tenant(pool)
        store = FactStore(pool)
        for batch in batches:
            await store.write(
                tenant_id, [e for caller, at in batch for e in _called(tenant_id, queue_id, caller, T0 + at)]
            )
        async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
            (row,) = (await queries.queue_report(conn, start, end, "month"))["rows"]
            flags = await conn.fetch(
                "SELECT caller, repeat_24h, repeat_7d FROM rpt_contacts ORDER BY arrived_at"
            )
        figures.append((row["answered"], row["fcr_24h"], row["fcr_7d"], [tuple(f) for f in flags]))
    assert figures[0] == figures[1] == figures[2]
    answered, fcr_24h, fcr_7d, flags = figures[0]
    assert (answered, fcr_24h, fcr_7d) == (4, 0.75, 0.5)
    assert flags == [
        ("sip:x@p", True, True),
        ("sip:y@p", False, False),
        ("sip:x@p", False, True),
        ("sip:x@p", False, False),
    ]


async def test_survey_answers_average_per_queue_and_flow(pool: asyncpg.Pool) -> None:
    """Two answers after a contact (4 on 1-5 is 0.75, 1 on 0-1 is 1.0): 2 surveys averaging 0.875 in the
    contact's queue interval and its IVR flow; a replay changes nothing."""
    tenant_id, queue_id = await make_tenant(pool)
    events = _called(tenant_id, queue_id, "sip:z@p", T0 + 60)
    call = events[0].call_id  # type: ignore[attr-defined]
    common = {"tenant_id": tenant_id, "call_id": call, "flow": "post", "version": 1, "node": "sv"}
    events += [
        ev.IvrSurveyAnswered(**common, ts=T0 + 300, question="csat", score=4, min=1, max=5),  # type: ignore[arg-type]
        ev.IvrSurveyAnswered(**common, ts=T0 + 305, question="solved", score=1, min=0, max=1),  # type: ignore[arg-type]
        ev.IvrCompleted(
            tenant_id=tenant_id, ts=T0 + 306, call_id=call, flow="post", version=1, outcome="self_served"
        ),
    ]
    store = FactStore(pool)
    for replay in (False, True):
        assert (await store.write(tenant_id, events) == 0) is replay
        got = await reports(pool, tenant_id)
        (row,) = got["queues"]["rows"]  # type: ignore[index]
        assert (row["surveys"], row["survey_avg"]) == (2, 0.875)
        (flow,) = got["ivr"]["rows"]  # type: ignore[index]
        assert (flow["surveys"], flow["survey_avg"]) == (2, 0.875)


async def test_ingesters_meeting_a_new_month_together_all_go_on(infra) -> None:  # type: ignore[no-untyped-def]
    """Each month's partitions are made by the first ingester that needs them; the others, racing it,
    must neither fail nor find a partition without its tenant policy."""
    month = datetime(random.randint(2300, 9000), random.randint(1, 12), 1, tzinfo=UTC).date()
    for _ in range(3):  # a race: several tries, each a month no one has made yet
        conns = [await asyncpg.connect(infra.app_url) for _ in range(6)]
        try:
            results = await asyncio.gather(
                *(c.execute("SELECT rpt_ensure_month($1)", month) for c in conns), return_exceptions=True
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
            forced = await conns[0].fetchval(
                "SELECT relforcerowsecurity FROM pg_class WHERE relname = $1",
                f"rpt_contacts_{month:%Y%m}",
            )
            assert forced is True
        finally:
            for c in conns:
                await c.close()
        month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)


async def test_agent_report_pages_hold_every_agent_once_with_the_same_figures(pool: asyncpg.Pool) -> None:
    """The paged agent report (PostgreSQL builds each page's JSON) walks every agent once, in id order,
    with exactly the figures of the one-piece report: agents with contacts and states in the range, one
    whose only state opened before the range and is still open, none from outside the range."""
    tenant_id, queue_id = await make_tenant(pool)
    events: list[Event] = []
    agents = [f"ag{i:02d}" for i in range(23)]
    for i, agent in enumerate(agents):
        at = T0 + 17 * i
        events += contact_events(
            tenant_id, queue_id, at, answer_after=4.0, abandon_after=None, agent_id=agent
        )
        for offset, state in [(-300, "available"), (4, "on_contact"), (84, "wrap_up"), (104 + i, "away")]:
            events.append(
                ev.AgentStateChanged(tenant_id=tenant_id, ts=at + offset, agent_id=agent, old="", new=state)
            )
    # Available since the day before, never changed: only its open state puts it in the report.
    events.append(
        ev.AgentStateChanged(tenant_id=tenant_id, ts=T0 - 86400, agent_id="ag05x", old="", new="available")
    )
    # Busy only on another day: in no page.
    events += contact_events(
        tenant_id, queue_id, T0 + 3 * 86400, answer_after=2.0, abandon_after=None, agent_id="ag99"
    )
    await FactStore(pool).write(tenant_id, events)
    start, end, now = (
        datetime.fromtimestamp(T0 - 3600, UTC),
        datetime.fromtimestamp(T0 + 7200, UTC),
        datetime.fromtimestamp(T0 + 5400, UTC),
    )
    async with db.tenant_tx(pool, tenant_id, readonly=True) as conn:
        whole = await queries.agent_report(conn, start, end, "15m", now=now)
        pages, cursor = [], None
        while True:
            head, rows = await queries.agent_page(conn, start, end, "15m", now=now, cursor=cursor, limit=7)
            pages.append((head["page"], json.loads(rows)))
            cursor = head["page"]["next_cursor"]
            if cursor is None:
                break
        only, _ = await queries.agent_page(
            conn, start, end, "15m", now=now, agent_ids=["ag03", "ag01"], limit=1
        )
        with pytest.raises(queries.ReportError):
            await queries.agent_page(conn, start, end, "15m", now=now, limit=queries.AGENT_PAGE_MAX + 1)
    assert [p["agents"] for p, _ in pages] == [7, 7, 7, 3]
    paged = [row for _, rows in pages for row in rows]
    seen = [row["agent_id"] for row in paged]
    assert seen == sorted(seen) and sorted(set(seen)) == sorted([*agents, "ag05x"])
    expected = sorted(whole["rows"], key=lambda r: (r["agent_id"], r["interval_start"]))
    for row in paged:
        row["interval_start"] = datetime.fromisoformat(row["interval_start"])
    assert paged == expected
    assert only["page"] == {"limit": 1, "agents": 1, "next_cursor": "ag01"}
