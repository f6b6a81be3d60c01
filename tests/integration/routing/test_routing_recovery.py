"""kill -9 of the routing process mid-traffic: restarted, it recovers from JetStream with no contact lost,
duplicated or offered to two agents, and no agent stuck; a standby takes a released partition over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.kernel import events as ev
from services.kernel.bus import connect
from services.routing.partitions import partition_of
from services.routing.worker import RoutingWorker

from .conftest import Client, make_tenant, wait_owned

REPO = Path(__file__).resolve().parents[3]


async def start_routing(infra: Any, worker_id: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "SB_DATABASE_URL": infra.app_url,
        "SB_NATS_URL": infra.nats_url,
        "SB_TOKEN_SECRET": infra.token_secret,
        "SB_DATA_DIR": str(infra.data_dir),
        "SB_LOG_LEVEL": "warning",
        "SB_ROUTING_WORKER_ID": worker_id,
    }
    log = _log_file(infra.data_dir / f"{worker_id}.log")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.routing", cwd=REPO, env=env, stdout=log, stderr=log
        )
    finally:
        log.close()  # the child has its own descriptor


def _log_file(path: Path) -> Any:
    return path.open("ab")


async def until_answers(
    client: Client, tenant_id: uuid.UUID, queue_id: uuid.UUID, timeout: float = 20.0
) -> float:
    start = time.monotonic()
    while True:
        try:
            r = await client.send(ev.RoutingQueueStatus(tenant_id=tenant_id, queue_id=queue_id), timeout=0.5)
            if r.ok:
                return time.monotonic() - start
        except Exception:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError("routing did not answer after restart")
        await asyncio.sleep(0.05)


async def stored_event_ids(client: Client, tenant_id: uuid.UUID) -> list[str]:
    """Ids of the tenant's contact.* and agent.* events stored in SB_EVENTS."""
    js = client.bus.js
    ids: list[str] = []
    for pattern in (f"sb.{tenant_id}.evt.contact.>", f"sb.{tenant_id}.evt.agent.>"):
        info = await js.stream_info("SB_EVENTS", subjects_filter=pattern)
        total = sum((info.state.subjects or {}).values())
        if not total:
            continue
        sub = await js.subscribe(pattern, ordered_consumer=True)
        for _ in range(total):
            msg = await sub.next_msg(timeout=5)
            ids.append(json.loads(msg.data)["id"])
        await sub.unsubscribe()
    return ids


@pytest.fixture
async def proc_cleanup() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for p in procs:
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), 10)
            except TimeoutError:
                p.kill()
                await p.wait()


async def test_kill_9_mid_traffic_recovers(
    infra: Any, pool: Any, client: Client, proc_cleanup: list[asyncio.subprocess.Process]
) -> None:
    t = await make_tenant(pool, agents=4)
    qid = t.queues["sales"]
    await client.watch(t.id)
    proc = await start_routing(infra, "routing-kill")
    proc_cleanup.append(proc)
    await until_answers(client, t.id, qid)
    a = t.agents
    for agent in a[:3]:
        assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=agent))).ok
    calls = [uuid.uuid4() for _ in range(8)]
    for call in calls[:6]:
        assert (await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=call, queue="sales"))).ok
    await client.wait_for(lambda: len(client.of("contact.offered")) == 3)
    first = client.of("contact.offered")[0]
    assert (
        await client.send(
            ev.RoutingAccept(
                tenant_id=t.id, agent_id=uuid.UUID(first["agent_id"]), offer_id=first["offer_id"]
            )
        )
    ).ok
    # Traffic in flight when the process dies: not awaited.
    in_flight = [
        asyncio.ensure_future(
            client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=c, queue="sales"), timeout=1)
        )
        for c in calls[6:]
    ]
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await asyncio.gather(*in_flight, return_exceptions=True)

    restarted = await start_routing(infra, "routing-kill")
    proc_cleanup.append(restarted)
    took = await until_answers(client, t.id, qid)
    print(f"recovered and answering {took:.2f} s after restart (includes interpreter start)")
    # The in-flight enqueues are retried with the same ids: idempotent, never duplicated.
    for cmd_call in calls[6:]:
        r = await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=cmd_call, queue="sales"))
        assert r.ok or r.code == "duplicate_contact", r

    # Every contact is known exactly once, in a consistent state; offers go to distinct agents.
    holders: dict[str, str] = {}
    waiting = 0
    for call in calls:
        r = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=call))
        assert r.ok, (call, r)
        state = r.data["state"]
        if state in ("offered", "connected"):
            assert r.data["agent_id"] not in holders.values()
            holders[str(call)] = r.data["agent_id"]
        else:
            assert state == "waiting"
            waiting += 1
    assert len(holders) == 3 and waiting == 5
    assert holders[first["call_id"]] == first["agent_id"]
    # No agent stuck: the 4th agent logs in and gets the next contact; everyone can work.
    assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=a[3]))).ok
    await client.wait_for(lambda: any(e["agent_id"] == str(a[3]) for e in client.of("contact.offered")))
    # Each accepted contact once; no contact offered to two agents at once (events of both processes).
    offers: dict[str, list[str]] = {}
    for e in client.of("contact.offered"):
        offers.setdefault(e["call_id"], []).append(e["agent_id"])
    assert all(len(set(v)) == 1 for v in offers.values()), offers
    # Replays republish (core subscribers see them again) but the SB_EVENTS stream stores each id once.
    seen_on_wire = {e["id"] for k, e in client.events if k.split(".")[0] in ("contact", "agent")}
    stored = await stored_event_ids(client, t.id)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert seen_on_wire <= set(stored)


async def test_standby_takes_over_released_partition(infra: Any, pool: Any, client: Client) -> None:
    t = await make_tenant(pool, agents=1)
    part = partition_of(t.id, 16)
    buses = [await connect(infra.nats_url, name=f"w{i}") for i in range(2)]
    await buses[0].ensure_streams()
    one = RoutingWorker(buses[0], pool, worker_id="w-one", partitions=[part], partition_count=16)
    two = RoutingWorker(buses[1], pool, worker_id="w-two", partitions=[part], partition_count=16)
    try:
        await one.start()
        await wait_owned(one, {part})
        await two.start()
        assert set(one.owned) == {part} and not two.owned
        assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=t.agents[0]))).ok
        call = uuid.uuid4()
        assert (await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=call, queue="sales"))).ok
        await one.stop()
        await wait_owned(two, {part})  # the lease and the partition's subscription (a full run got between)
        r = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=call))
        assert r.ok and r.data["state"] == "offered" and r.data["agent_id"] == str(t.agents[0])
    finally:
        await two.stop()
        for b in buses:
            await b.close()
