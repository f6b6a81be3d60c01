"""Two routing processes sharing the partitions (SB_WORKER_COUNT=2: each takes its home half, worker.py):
kill -9 of one, and the other answers for its tenants within 5 s with their agents' presence and queued
contacts as they were; the survivor's own tenants are answered throughout."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.partitioned import home_partitions
from services.routing.partitions import partition_of
from services.routing.worker import OWNERS_BUCKET
from tests.integration.scaleout import wait_for
from tests.service_procs import start_services, stop_all

from .conftest import Client, Tenant, make_tenant

COUNT = 16  # the session NATS's mapping


@pytest.fixture
async def client(infra: Any) -> AsyncIterator[Client]:
    bus = await connect(infra.nats_url, name="routing-workers-test")
    yield Client(bus)
    await bus.close()


async def owners(client: Client) -> dict[int, str]:
    try:
        kv = await client.bus.js.key_value(OWNERS_BUCKET)
    except BucketNotFoundError:  # before the first worker made it
        return {}
    found: dict[int, str] = {}
    for p in range(COUNT):
        try:
            found[p] = (await kv.get(f"n{COUNT}.p{p}")).value.decode()  # type: ignore[union-attr]
        except KeyNotFoundError:
            pass
    return found


async def tenant_homed_on(pool: Any, index: int) -> Tenant:
    while True:
        t = await make_tenant(pool, agents=2)
        if partition_of(t.id, COUNT) % 2 == index:
            return t


async def test_kill_9_hands_a_routing_workers_tenants_to_the_other(
    infra: Any, pool: Any, client: Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [f"rw-{tag}-{i}" for i in range(2)]
    specs = [
        (
            "services.routing",
            infra.data_dir / f"{ids[i]}.log",
            {"SB_WORKER_COUNT": "2", "SB_WORKER_INDEX": str(i), "SB_ROUTING_WORKER_ID": ids[i]},
        )
        for i in range(2)
    ]
    procs = start_services(infra, specs)
    try:
        homes = {p: ids[i] for i in range(2) for p in home_partitions(i, 2, COUNT)}

        async def split() -> bool:
            return await owners(client) == homes

        await wait_for(split, 15.0, "each routing worker holds its home partitions")

        kept, moved = await tenant_homed_on(pool, 0), await tenant_homed_on(pool, 1)
        calls: dict[uuid.UUID, list[uuid.UUID]] = {}
        for t in (kept, moved):
            await client.watch(t.id)
            assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=t.agents[0]))).ok
            calls[t.id] = [uuid.uuid4(), uuid.uuid4()]
            for call in calls[t.id]:
                assert (await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=call, queue="sales"))).ok
        # Each tenant: its one agent has the first contact on offer, the second contact waits.
        await client.wait_for(lambda: len(client.of("contact.offered")) == 2)

        procs[1].kill()
        killed = time.monotonic()
        procs[1].wait(timeout=5)
        r = await client.send(
            ev.RoutingQueueStatus(tenant_id=kept.id, queue_id=kept.queues["sales"]), timeout=1
        )
        assert r.ok, r  # the survivor's own tenant: no pause

        async def answers() -> bool:
            query = ev.RoutingQueueStatus(tenant_id=moved.id, queue_id=moved.queues["sales"])
            try:
                return (await client.send(query, timeout=0.5)).ok
            except Exception:
                return False

        await wait_for(answers, 8.0, "the survivor answers for the moved tenant")
        took = time.monotonic() - killed
        print(f"\nrouting failover: kill -9 to the moved tenant's next answer {took:.2f} s")
        assert took < 5.0, took

        # The dead worker's other partitions follow within the same 5 s: each lease expires 3 s after its
        # own last refresh, so the survivor's one-second tick may take the last of them a tick later.
        async def all_moved() -> bool:
            return set((await owners(client)).values()) == {ids[0]}

        await wait_for(
            all_moved, max(0.1, 5.0 - (time.monotonic() - killed)), "every partition on the survivor"
        )

        # Presence and the queue as they were: the agent still has its offer, the second caller waits.
        first, second = calls[moved.id]
        r = await client.send(ev.RoutingPosition(tenant_id=moved.id, call_id=first))
        assert r.ok and r.data["state"] == "offered" and r.data["agent_id"] == str(moved.agents[0]), r
        r = await client.send(ev.RoutingPosition(tenant_id=moved.id, call_id=second))
        assert r.ok and r.data["state"] == "waiting", r
        # A second agent signs in on the survivor: the waiting caller is offered to it, once.
        assert (await client.send(ev.RoutingAgentLogin(tenant_id=moved.id, agent_id=moved.agents[1]))).ok
        await client.wait_for(lambda: any(e["call_id"] == str(second) for e in client.of("contact.offered")))
        # (The survivor's recovery republishes the first offer under its journal-derived id: one event.)
        offers = {e["id"]: e for e in client.of("contact.offered", moved.id)}.values()
        assert sorted((e["call_id"], e["agent_id"]) for e in offers) == sorted(
            [(str(first), str(moved.agents[0])), (str(second), str(moved.agents[1]))]
        ), offers

        # SIGTERM: the survivor stops cleanly, its worker before the bus (a stop racing the bus's drain
        # failed its unsubscribes and left gathers whose CancelledError nobody retrieved).
        stop_all(procs)
        log = specs[0][1].read_text()
        stopping = log[log.rindex('"service_started"') :]
        assert '"service_stopped"' in stopping, stopping[-3000:]
        for trouble in ("never retrieved", "bus_stop_step_failed", "bus_stop_late", "Traceback"):
            assert trouble not in stopping, stopping[-3000:]
    finally:
        stop_all(procs)
