"""The routing service on the real bus and database: commands, events, seats, config reload, isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.kernel import events as ev
from services.kernel.bus import CommandTimeout
from services.kernel.diag import await_chain
from services.kernel.ids import new_id
from services.routing import seats

from .conftest import Client, make_tenant


def _runner_state(worker: Any, tenant_id: uuid.UUID) -> str:
    """A tenant's runner as a stuck command would find it: recovering, its inbox, what its tasks await."""
    runner = worker.runners.get(tenant_id)
    owned = f"partitions owned {sorted(worker.owned)}, subscribed {sorted(worker.serving)}"
    if runner is None:
        return f"no runner for the tenant; {owned}"
    awaits = "\n".join(
        line for task in runner._tasks if not task.done() for line in await_chain(task.get_coro())
    )
    return (
        f"runner ready={runner.ready.is_set()} engine={'loaded' if runner.engine else 'none (recovering)'}"
        f" pending={runner._pending} inbox={runner._inbox.qsize()} journal_seq={runner.journal_seq}; {owned};"
        f" its tasks await:\n{awaits}"
    )


async def test_enqueue_offer_accept_and_events(worker: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, agents=2)
    await client.watch(t.id)
    a1, a2 = t.agents
    for a in (a1, a2):
        r = await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=a))
        assert r.ok, r
    away = await client.send(ev.RoutingSetState(tenant_id=t.id, agent_id=a2, state="away", reason="lunch"))
    assert away.ok
    bad_reason = await client.send(
        ev.RoutingSetState(tenant_id=t.id, agent_id=a2, state="away", reason="nap")
    )
    assert not bad_reason.ok and bad_reason.code == "unknown_reason"

    c1, c2 = uuid.uuid4(), uuid.uuid4()
    r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=c1, queue="sales"))
    assert r.ok, r
    await client.wait_for(lambda: client.of("contact.offered"))
    offer = client.of("contact.offered")[0]
    assert offer["call_id"] == str(c1) and offer["agent_id"] == str(a1)
    # The second contact waits (a2 is away): its position is 1.
    r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=c2, queue="sales"))
    assert r.ok
    pos = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=c2))
    assert pos.ok and pos.data["state"] == "waiting" and pos.data["position"] == 1

    accept = ev.RoutingAccept(tenant_id=t.id, agent_id=a1, offer_id=offer["offer_id"])
    assert (await client.send(accept)).ok
    again = await client.send(accept)  # same id: same answer, no second effect
    assert again.ok
    await client.wait_for(lambda: client.of("contact.assigned") and client.of("contact.accepted"))
    assert len(client.of("contact.accepted")) == 1

    # Ending the contact (wrap-up 0) frees a1, who gets c2 at once.
    assert (await client.send(ev.RoutingEnd(tenant_id=t.id, call_id=c1))).ok
    await client.wait_for(lambda: len(client.of("contact.offered")) == 2)
    assert client.of("contact.offered")[1]["call_id"] == str(c2)

    # The caller hangs up while ringing: abandoned, a1 back to available.
    assert (await client.send(ev.RoutingCancel(tenant_id=t.id, call_id=c2))).ok
    await client.wait_for(lambda: client.of("contact.abandoned"))
    status = await client.send(ev.RoutingAgentStatus(tenant_id=t.id, agent_id=a1))
    assert status.data["state"] == "available"
    q = await client.send(ev.RoutingQueueStatus(tenant_id=t.id, queue_id=t.queues["sales"]))
    assert q.ok and q.data["waiting"] == 0
    await client.wait_for(lambda: client.of("queue.stats"))
    states = [(e["agent_id"], e["new"]) for e in client.of("agent.state_changed")]
    assert (
        (str(a2), "away") in states and (str(a1), "reserved") in states and (str(a1), "on_contact") in states
    )


async def test_bad_input_gets_clear_errors(worker: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, agents=1)
    nc = client.bus.nc
    msg = await nc.request(f"sb.{t.id}.cmd.routing.enqueue", b"{not json", timeout=5)
    assert b"bad_message" in msg.data and b"invalid enqueue command" in msg.data
    msg = await nc.request(f"sb.{t.id}.cmd.routing.teleport", b"{}", timeout=5)
    assert b"unknown routing command" in msg.data
    r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=uuid.uuid4(), queue="nope"))
    assert not r.ok and r.code == "unknown_queue"
    r = await client.send(ev.RoutingAccept(tenant_id=t.id, agent_id=t.agents[0], offer_id="x"))
    assert not r.ok and r.error
    r = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=uuid.uuid4()))
    assert not r.ok and r.code == "unknown_contact"
    other = uuid.uuid4()
    r = await client.send(ev.RoutingAgentLogin(tenant_id=other, agent_id=uuid.uuid4()))
    assert not r.ok and r.code == "unknown_tenant"


async def test_seats_exact_under_concurrent_logins(worker: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, seats=5, agents=20)
    replies = await asyncio.gather(
        *(client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=a)) for a in t.agents)
    )
    assert sum(r.ok for r in replies) == 5
    refused = [r for r in replies if not r.ok]
    assert all(r.code == "no_seats" and "all 5 seats are in use" in (r.error or "") for r in refused)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(t.id))
        assert await conn.fetchval("SELECT count(*) FROM agent_sessions") == 5
    # Logout frees the seat for another agent.
    ins = [a for a, r in zip(t.agents, replies, strict=True) if r.ok]
    outs = [a for a, r in zip(t.agents, replies, strict=True) if not r.ok]
    assert (await client.send(ev.RoutingAgentLogout(tenant_id=t.id, agent_id=ins[0]))).ok
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=outs[0]))).ok
    assert not (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=outs[1]))).ok


async def test_seat_lock_is_exact_for_concurrent_writers(pool: Any) -> None:
    """Straight at the database, as two workers (or a standby) would do at once: 20 logins, 5 seats."""
    t = await make_tenant(pool, seats=5, agents=20)
    outcomes = await asyncio.gather(*(seats.start_session(pool, t.id, a) for a in t.agents))
    assert sum(o.ok for o in outcomes) == 5


async def test_config_changed_reloads(worker: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, agents=1)
    await client.watch(t.id)
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=t.agents[0]))).ok
    r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=uuid.uuid4(), queue="support"))
    assert r.code == "unknown_queue"
    qid = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(t.id))
        await conn.execute(
            "INSERT INTO queues (id, tenant_id, name, wrap_up_seconds) VALUES ($1, $2, 'support', 0)",
            qid,
            t.id,
        )
    await client.bus.publish(ev.ConfigChanged(tenant_id=t.id, kind="queue", op="created", object_id=qid))
    call = uuid.uuid4()
    for _ in range(50):
        r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, id=new_id(), call_id=call, queue="support"))
        if r.ok:
            break
        await asyncio.sleep(0.05)
    assert r.ok, r
    await client.wait_for(lambda: client.of("contact.offered"))
    assert client.of("contact.offered")[0]["queue_id"] == str(qid)


async def test_one_tenants_flood_does_not_delay_another(worker: Any, pool: Any, client: Client) -> None:
    a = await make_tenant(pool, agents=0)
    b = await make_tenant(pool, agents=1)
    await client.watch(b.id)
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=b.id, agent_id=b.agents[0]))).ok
    # Make sure A's engine exists before the flood (its recovery is not part of the race).
    assert (await client.send(ev.RoutingQueueStatus(tenant_id=a.id, queue_id=a.queues["sales"]))).ok
    flood_done: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        await client.send(ev.RoutingEnqueue(tenant_id=a.id, call_id=uuid.uuid4(), queue="sales"), timeout=60)
        flood_done.append(loop.time())

    flood = [asyncio.ensure_future(one(i)) for i in range(1500)]
    await asyncio.sleep(0.01)  # the flood is on its way
    call = uuid.uuid4()
    r = await client.send(ev.RoutingEnqueue(tenant_id=b.id, call_id=call, queue="sales"), timeout=30)
    assert r.ok
    await client.wait_for(lambda: client.of("contact.offered", b.id), timeout=30)
    # B's contact was offered while A's flood was still being worked through.
    assert len(flood_done) < len(flood)
    try:
        await asyncio.gather(*flood)
    except CommandTimeout:
        # Seen once under heavy load (1.4-2.4 s here normally, 10-20 s at load 15-20): say where A's
        # commands were waiting, which the timeout alone does not.
        raise AssertionError(f"{len(flood_done)} of 1500 answered; {_runner_state(worker, a.id)}") from None
    q = await client.send(ev.RoutingQueueStatus(tenant_id=a.id, queue_id=a.queues["sales"]))
    assert q.data["waiting"] == 1500


async def test_virtual_hold_callback_due_and_lost_site(worker: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, agents=1)
    await client.watch(t.id)
    agent = t.agents[0]
    held = uuid.uuid4()
    r = await client.send(ev.RoutingCallback(tenant_id=t.id, call_id=held, queue="sales", number="+15550001"))
    assert r.ok and r.data["virtual_hold"] is True
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=agent))).ok
    # At the front with an agent ready: a call-back is due instead of an offer.
    await client.wait_for(lambda: client.of("routing.callback_due"))
    assert client.of("routing.callback_due")[0]["call_id"] == str(held)
    assert not client.of("contact.offered")
    # The customer answered the call-back: back in line at its place, offered at once.
    assert (await client.send(ev.RoutingSetVirtualHold(tenant_id=t.id, call_id=held, on=False))).ok
    await client.wait_for(lambda: client.of("contact.offered"))
    # The agent's site is lost: the agent is logged out and the contact goes back in line.
    assert (await client.send(ev.RoutingLoseSite(tenant_id=t.id, site_id=t.site))).ok
    await client.wait_for(lambda: client.of("contact.requeued"))
    status = await client.send(ev.RoutingAgentStatus(tenant_id=t.id, agent_id=agent))
    assert status.data["state"] == "logged_out"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(t.id))
        assert await conn.fetchval("SELECT count(*) FROM agent_sessions") == 0  # the seat came back
    pos = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=held))
    assert pos.data["state"] == "waiting" and pos.data["position"] == 1
    refused = await client.send(ev.RoutingAgentLogin(tenant_id=t.id, id=new_id(), agent_id=agent))
    assert not refused.ok and refused.error
    assert (await client.send(ev.RoutingRestoreSite(tenant_id=t.id, site_id=t.site))).ok
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, id=new_id(), agent_id=agent))).ok
    await client.wait_for(lambda: len(client.of("contact.offered")) == 2)
