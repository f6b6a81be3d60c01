"""Routing integration fixtures: tenants written to PostgreSQL, a routing worker on the real bus, and a
small client that sends routing commands and collects the tenant's events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import pytest

from services.kernel.bus import Bus, connect
from services.kernel.db import create_pool, tenant_tx
from services.kernel.messages import Command, Reply
from services.routing.worker import RoutingWorker


@dataclass
class Tenant:
    id: uuid.UUID
    site: uuid.UUID
    queues: dict[str, uuid.UUID]
    agents: list[uuid.UUID]


async def make_tenant(
    pool: asyncpg.Pool,
    *,
    seats: int = 10,
    agents: int = 3,
    queues: dict[str, dict[str, int]] | None = None,
    agent_skills: dict[str, int] | None = None,
    wrap_up: int = 0,
) -> Tenant:
    tenant_id = uuid.uuid4()
    site = uuid.uuid4()
    queues = queues if queues is not None else {"sales": {}}
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO tenants (id, name, admin_email, seats_purchased) VALUES ($1, 'T', 'a@x.test', $2)",
            tenant_id,
            seats,
        )
        await conn.execute(
            "INSERT INTO sites (id, tenant_id, name, timezone, kind) VALUES ($1, $2, 'HQ', 'UTC', 'office')",
            site,
            tenant_id,
        )
        qids: dict[str, uuid.UUID] = {}
        for name, skills in queues.items():
            qid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO queues (id, tenant_id, name, skills, wrap_up_seconds) VALUES ($1, $2, $3, $4, $5)",
                qid,
                tenant_id,
                name,
                json.dumps(skills),
                wrap_up,
            )
            qids[name] = qid
        aids: list[uuid.UUID] = []
        for i in range(agents):
            aid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO agents (id, tenant_id, name, email, site_id, skills, languages)"
                " VALUES ($1, $2, $3, $4, $5, $6, '{en}')",
                aid,
                tenant_id,
                f"agent {i}",
                f"a{i}@x.test",
                site,
                json.dumps(agent_skills or {}),
            )
            aids.append(aid)
    return Tenant(tenant_id, site, qids, aids)


@dataclass
class Client:
    """Sends routing commands and records every event of the tenants it watches."""

    bus: Bus
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch(self, tenant_id: uuid.UUID) -> None:
        async def on_event(msg: Any) -> None:
            self.events.append((msg.subject.split(".evt.", 1)[1], json.loads(msg.data)))
            self.arrived.set()

        await self.bus.nc.subscribe(f"sb.{tenant_id}.evt.>", cb=on_event)

    async def send(self, command: Command, timeout: float = 5.0) -> Reply:
        return await self.bus.request(command, timeout=timeout)

    def of(self, kind: str, tenant_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        return [
            e for k, e in self.events if k == kind and (tenant_id is None or e["tenant_id"] == str(tenant_id))
        ]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), timeout)


async def wait_owned(worker: RoutingWorker, partitions: set[int], timeout: float = 8.0) -> None:
    """Wait until `worker` owns `partitions`: a routing process an earlier test stopped or killed may hold
    their locks until they expire (3 s); the worker claims them on its next refresh."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # A lease is ours before the partition's subject is subscribed (worker._gain): a command sent in between
    # finds no responder. Wait for both (Server.subscribe returns once the server has the subscription).
    while set(worker.owned) != partitions or worker.serving != partitions:
        if loop.time() > deadline:
            raise AssertionError(f"{worker.worker_id} owns {sorted(worker.owned)}, not {sorted(partitions)}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def pool(infra: Any) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(infra.app_url, max_size=20)
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def worker(infra: Any, pool: asyncpg.Pool) -> AsyncIterator[RoutingWorker]:
    bus = await connect(infra.nats_url, name="routing-test")
    await bus.ensure_streams()
    w = RoutingWorker(bus, pool, worker_id="routing-test", partitions=list(range(16)), partition_count=16)
    await w.start()
    await wait_owned(w, set(range(16)))
    yield w
    await w.stop()
    await bus.close()


@pytest.fixture
async def client(infra: Any) -> AsyncIterator[Client]:
    bus = await connect(infra.nats_url, name="routing-test-client")
    yield Client(bus)
    await bus.close()


def data(reply: Reply) -> dict[str, Any]:
    return msgspec.to_builtins(reply.data)  # type: ignore[no-any-return]
