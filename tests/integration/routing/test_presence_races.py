"""Presence races on the real bus (services/routing/core/presence.py), each ordering forced by sending the
API processes' commands in that order: a reconnect whose new socket is linked before the old socket's close
reaches routing, and a presence beat counted before a close but delivered after it. Both used to leave an
agent who never went away reported as not resumed, or linked to a socket that was already closed."""

from __future__ import annotations

import uuid
from typing import Any

from services.kernel import events as ev
from services.kernel.db import tenant_tx

from .conftest import Client, data, make_tenant


async def _on_a_call(
    client: Client, pool: Any, session_id: str, grace_s: int = 20
) -> tuple[Any, uuid.UUID, str]:
    """A tenant whose one agent signed in through socket `session_id` and is connected to a caller."""
    t = await make_tenant(pool, agents=1)
    async with tenant_tx(pool, t.id) as conn:
        await conn.execute("UPDATE tenants SET agent_grace_seconds = $1", grace_s)
    await client.watch(t.id)
    agent = t.agents[0]
    login = ev.RoutingAgentLogin(tenant_id=t.id, agent_id=agent, session_id=session_id)
    assert (await client.send(login)).ok
    call = uuid.uuid4()
    assert (await client.send(ev.RoutingEnqueue(tenant_id=t.id, call_id=call, queue="sales"))).ok
    await client.wait_for(lambda: client.of("contact.offered", t.id))
    offer = client.of("contact.offered", t.id)[0]
    accept = ev.RoutingAccept(tenant_id=t.id, agent_id=agent, offer_id=offer["offer_id"])
    assert (await client.send(accept)).ok
    return t, agent, offer["call_id"]


async def test_a_reconnect_linked_before_the_old_sockets_close_resumes_the_call(
    worker: Any, pool: Any, client: Client
) -> None:
    t, agent, contact = await _on_a_call(client, pool, "old")
    # The client's new socket reaches routing first (another API process, or a close not yet processed).
    resumed = data(await client.send(ev.RoutingAgentLinked(tenant_id=t.id, agent_id=agent, session_id="new")))
    assert resumed["logged_in"] and resumed["resumed"], resumed
    assert resumed["state"] == "on_contact"
    assert resumed["contacts"] == [{"contact_id": contact, "phase": "connected"}]
    # The old socket's close then arrives: stale, nothing changes.
    closed = await client.send(ev.RoutingAgentUnlinked(tenant_id=t.id, agent_id=agent, session_id="old"))
    assert data(closed) == {"lost": False}
    status = data(await client.send(ev.RoutingAgentStatus(tenant_id=t.id, agent_id=agent)))
    assert status["state"] == "on_contact"
    # And a beat from the old socket's process, counted before the close, renews nothing.
    beat = ev.RoutingAgentsPresent(tenant_id=t.id, sessions={str(agent): ["old"]})
    assert data(await client.send(beat)) == {"renewed": 0, "signed_out": []}
    # The new socket is the one watched: its close starts the grace.
    lost = await client.send(ev.RoutingAgentUnlinked(tenant_id=t.id, agent_id=agent, session_id="new"))
    assert data(lost)["lost"] is True
    assert not client.of("contact.requeued", t.id)


async def test_a_beat_counted_before_a_close_does_not_relink_the_closed_socket(
    worker: Any, pool: Any, client: Client
) -> None:
    t, agent, contact = await _on_a_call(client, pool, "s1", grace_s=1)
    closed = await client.send(ev.RoutingAgentUnlinked(tenant_id=t.id, agent_id=agent, session_id="s1"))
    assert data(closed)["lost"] is True
    # The process's beat listed s1 before the close was seen: s1 is gone, the agent stays lost...
    beat = ev.RoutingAgentsPresent(tenant_id=t.id, sessions={str(agent): ["s1"]})
    assert data(await client.send(beat)) == {"renewed": 0, "signed_out": []}
    # ...and is signed out at the end of its grace (1 s here), its caller back in line. Relinked to the
    # closed socket, it would have stayed "connected" for a lease (15 s) and a grace more.
    await client.wait_for(
        lambda: any(
            e["agent_id"] == str(agent) and e["new"] == "logged_out"
            for e in client.of("agent.state_changed", t.id)
        ),
        timeout=5.0,
    )
    status = await client.send(ev.RoutingPosition(tenant_id=t.id, call_id=uuid.UUID(contact)))
    assert status.ok and status.data["state"] == "waiting", status


async def test_an_api_process_hears_which_of_its_agents_were_signed_out_while_it_was_away(
    worker: Any, pool: Any, client: Client
) -> None:
    """services/api/presence.py against the real worker: a process stopped past the lease and the grace
    reports its sockets again; routing answers that one agent is no longer signed in, and only that
    agent's sockets are told (the others, still signed in, are renewed)."""
    from services.api.presence import Presence

    t = await make_tenant(pool, agents=2)
    gone, kept = t.agents
    for agent, session in ((gone, "g1"), (kept, "k1")):
        assert (
            await client.send(ev.RoutingAgentLogin(tenant_id=t.id, agent_id=agent, session_id=session))
        ).ok
    # `gone` was signed out meanwhile (here by its logout; in life by the grace running out).
    assert (await client.send(ev.RoutingAgentLogout(tenant_id=t.id, agent_id=gone))).ok
    told: list[str] = []

    def teller(session: str) -> Any:
        async def signed_out() -> None:
            told.append(session)

        return signed_out

    presence = Presence()
    presence.opened(t.id, gone, "g1", teller("g1"))
    presence.opened(t.id, gone, "g2", teller("g2"))  # the agent's second socket (another tab)
    presence.opened(t.id, kept, "k1", teller("k1"))
    await presence.beat(client.bus, lease_s=3.0)
    assert sorted(told) == ["g1", "g2"]
    status = data(await client.send(ev.RoutingAgentStatus(tenant_id=t.id, agent_id=kept)))
    assert status["state"] == "available"
