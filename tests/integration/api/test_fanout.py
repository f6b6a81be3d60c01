"""The websockets' fan-out (services/api/fanout.py) on the session's real NATS: one subscription per tenant
and event type in the process, each event to its owner's sockets only (or to all, for a tenant-wide one),
a slow socket delaying only itself, and nothing left subscribed once the last socket leaves."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats

from services.api.fanout import Fanout
from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.messages import encode
from services.kernel.subjects import evt_subject


async def test_one_subscription_per_type_each_event_to_its_owner_and_nothing_left(infra: Any) -> None:
    tenant, other_tenant = uuid.uuid4(), uuid.uuid4()
    bus = await connect(infra.nats_url, name="test-fanout")
    publisher = await nats.connect(infra.nats_url)

    async def publish(event: Any) -> None:  # on core NATS, as a live view sees what JetStream stores
        await publisher.publish(evt_subject(event.tenant_id, event.domain, event.name), encode(event))

    fanout = Fanout()
    got: dict[str, list[Any]] = {"a1": [], "a2": [], "b": [], "stranger": []}
    release = asyncio.Event()

    def taker(name: str, slow: bool = False) -> Any:
        async def handle(event: Any) -> None:
            if slow:
                await release.wait()
            got[name].append(event)

        return handle

    kinds = (ev.AgentStateChanged, ev.SessionsEnded)
    baseline = len(bus.nc._subs)
    try:
        a1 = await fanout.join(bus, tenant, "a", dict.fromkeys(kinds, taker("a1")))
        a2 = await fanout.join(bus, tenant, "a", dict.fromkeys(kinds, taker("a2")))
        b = await fanout.join(bus, tenant, "b", dict.fromkeys(kinds, taker("b", slow=True)))
        stranger = await fanout.join(bus, other_tenant, "a", dict.fromkeys(kinds, taker("stranger")))
        # Four sockets, two tenants: two subscriptions each (one per event type), not two per socket.
        assert len(bus.nc._subs) - baseline == 4 and fanout.rooms() == 2

        await publish(ev.AgentStateChanged(tenant_id=tenant, agent_id="a", old="away", new="available"))
        await publish(ev.AgentStateChanged(tenant_id=tenant, agent_id="b", old="away", new="available"))
        await publish(ev.SessionsEnded(tenant_id=tenant, reason="signed_out", session_ids=[]))
        for _ in range(100):
            if len(got["a1"]) == len(got["a2"]) == 2:
                break
            await asyncio.sleep(0.05)
        # b's socket is stuck: a's sockets got theirs meanwhile (b's state change never reached them).
        assert [type(e).__name__ for e in got["a1"]] == ["AgentStateChanged", "SessionsEnded"]
        assert [e.agent_id for e in got["a2"] if isinstance(e, ev.AgentStateChanged)] == ["a"]
        assert got["b"] == [] and got["stranger"] == []
        release.set()
        for _ in range(100):
            if len(got["b"]) == 2:
                break
            await asyncio.sleep(0.05)
        assert [getattr(e, "agent_id", None) for e in got["b"]] == ["b", None]

        for member in (a1, b):
            await fanout.leave(member)
        assert len(bus.nc._subs) - baseline == 4  # a2 still takes both types in the tenant
        await fanout.leave(a2)
        await fanout.leave(stranger)
        assert len(bus.nc._subs) == baseline and fanout.rooms() == 0
    finally:
        release.set()
        await publisher.close()
        await bus.close()
