"""Partitioning by the NATS server's subject mapping: each routing worker receives only the commands of the
partitions it owns, and a standby that takes a partition over starts receiving its traffic."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.msg import Msg

from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from services.routing.partitions import MAPPED_PREFIX, parse_mapped, partition_of
from services.routing.worker import RoutingWorker

from .conftest import Client, make_tenant, wait_owned

COUNT = 16  # the embedded NATS's mapping (SB_ROUTING_PARTITION_COUNT default)


def counting(worker: RoutingWorker, seen: Counter[uuid.UUID]) -> None:
    """Count, per tenant, the commands NATS delivers to the worker (its subscriptions are made at start)."""
    accept = worker._accept

    def counted(subject: str, data: bytes) -> bool:
        mapped = parse_mapped(subject)
        assert mapped is not None, subject
        seen[mapped[1]] += 1
        return accept(subject, data)

    worker._accept = counted  # type: ignore[method-assign]


@pytest.fixture
async def buses(infra: Any) -> AsyncIterator[list[Bus]]:
    made = [await connect(infra.nats_url, name=f"part-{i}") for i in range(2)]
    await made[0].ensure_streams()
    yield made
    for b in made:
        await b.close()


async def test_server_partition_matches_mirror(client: Client) -> None:
    """The server's partition(16, 1) over the tenant token is what partition_of computes (recovery uses it)."""
    got: dict[str, str] = {}
    done = asyncio.Event()
    tenants = [uuid.uuid4() for _ in range(200)]

    async def on_msg(msg: Msg) -> None:
        got[msg.subject.split(".")[5]] = msg.subject
        if len(got) == len(tenants):
            done.set()

    nc = client.bus.nc
    sub = await nc.subscribe(f"{MAPPED_PREFIX}.*.*.probe_partition", cb=on_msg)
    try:
        for t in tenants:
            await nc.publish(f"sb.{t}.cmd.routing.probe_partition", b"{}")
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await sub.unsubscribe()
    for t in tenants:
        assert got[str(t)] == f"{MAPPED_PREFIX}.{partition_of(t, COUNT)}.{t}.probe_partition"
    assert len({partition_of(t, COUNT) for t in tenants}) == COUNT  # 200 tenants spread over all 16


async def test_commands_reach_only_the_owner(infra: Any, pool: Any, client: Client, buses: list[Bus]) -> None:
    a = await make_tenant(pool, agents=1)
    b = await make_tenant(pool, agents=1)
    while partition_of(b.id, COUNT) == partition_of(a.id, COUNT):
        b = await make_tenant(pool, agents=1)
    pa = partition_of(a.id, COUNT)
    mine = [pa, *[p for p in range(COUNT) if p not in (pa, partition_of(b.id, COUNT))][:7]]
    others = [p for p in range(COUNT) if p not in mine]
    one = RoutingWorker(buses[0], pool, worker_id="part-one", partitions=mine, partition_count=COUNT)
    two = RoutingWorker(buses[1], pool, worker_id="part-two", partitions=others, partition_count=COUNT)
    seen_one: Counter[uuid.UUID] = Counter()
    seen_two: Counter[uuid.UUID] = Counter()
    counting(one, seen_one)
    counting(two, seen_two)
    try:
        await one.start()
        await two.start()
        await wait_owned(one, set(mine))
        await wait_owned(two, set(others))
        for t in (a, b):
            assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=t.agents[0]))).ok
            for _ in range(4):
                r = await client.send(ev.RoutingQueueStatus(tenant_id=t.id, queue_id=t.queues["sales"]))
                assert r.ok, r
        assert seen_one == Counter({a.id: 5}) and seen_two == Counter({b.id: 5})
        # Engines (tenants of earlier tests are recovered from the journal too) only for owned partitions.
        assert a.id in one.runners and b.id not in one.runners
        assert b.id in two.runners and a.id not in two.runners
        assert {partition_of(t, COUNT) for t in one.runners} <= set(mine)
        assert {partition_of(t, COUNT) for t in two.runners} <= set(others)
    finally:
        await one.stop()
        await two.stop()


async def test_standby_receives_a_partition_once_it_takes_it(
    infra: Any, pool: Any, client: Client, buses: list[Bus]
) -> None:
    t = await make_tenant(pool, agents=1)
    part = partition_of(t.id, COUNT)
    owner = RoutingWorker(buses[0], pool, worker_id="part-owner", partitions=[part], partition_count=COUNT)
    standby = RoutingWorker(
        buses[1], pool, worker_id="part-standby", partitions=[part], partition_count=COUNT
    )
    seen_owner: Counter[uuid.UUID] = Counter()
    seen_standby: Counter[uuid.UUID] = Counter()
    counting(owner, seen_owner)
    counting(standby, seen_standby)
    try:
        await owner.start()
        await wait_owned(owner, {part})
        await standby.start()
        assert set(owner.owned) == {part} and not standby.owned
        assert (await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=t.agents[0]))).ok
        assert seen_owner[t.id] == 1 and seen_standby[t.id] == 0

        await owner.stop()  # releases the lock and unsubscribes
        await wait_owned(standby, {part})
        r = await client.send(ev.RoutingQueueStatus(tenant_id=t.id, queue_id=t.queues["sales"]))
        assert r.ok and r.data["agents"] == {"available": 1}, r  # the owner's login, recovered
        assert seen_owner[t.id] == 1 and seen_standby[t.id] == 1
    finally:
        await owner.stop()
        await standby.stop()
