"""Control of the floor on the real processes: a supervisor sets an agent away (the agent's desk is told at
once), moves a caller waiting in Support to Sales where another agent answers it, and signs the first agent
out (its desk closes with 4401, routing has it logged out at once). API with the console token, the CLI and
the SDK with a supervisor key; a developer key is refused; every step is audited."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import switchboard
from switchboard import AgentSession
from switchboard.agent_events import AgentState, ContactConnected, ContactOffer

from services.kernel import events as ev
from services.kernel.messages import Reply
from tests.e2e.first_call.conftest import PhoneCaller, Stack, make_tenant
from tests.e2e.first_call.test_agent_connect import SWITCHBOARD
from tests.e2e.first_call.test_supervisor_monitor import Console, supervisor_key, switchboard_cli

pytestmark = pytest.mark.e2e


async def _next(agent: AgentSession, kind: type, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        event = await agent.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if event is None:
            raise AssertionError(f"no {kind.__name__} within {timeout} s")
        if isinstance(event, kind):
            return event


async def _routing_state(nats_url: str, tenant: uuid.UUID, agent_id: str) -> str:
    nc = await nats.connect(nats_url)
    try:
        query = ev.RoutingAgentStatus(tenant_id=tenant, agent_id=uuid.UUID(agent_id))
        msg = await nc.request(f"sb.{tenant}.cmd.routing.agent_status", msgspec.json.encode(query), timeout=5)
        reply = msgspec.json.decode(msg.data, type=Reply)
        return str(reply.data.get("state")) if reply.ok else f"refused:{reply.code}"
    finally:
        await nc.close()


async def _queued_contact(api: str, key: str, timeout: float = 15.0) -> str:
    async with httpx.AsyncClient(
        base_url=api, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = (await http.get("/v1/contacts", params={"limit": 5})).json()["items"]
            queued = [c["id"] for c in items if c["state"] == "queued"]
            if queued:
                return str(queued[0])
            await asyncio.sleep(0.1)
    raise AssertionError("the call never waited in line")


async def test_state_move_and_forced_signout(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    tenant = await asyncio.to_thread(make_tenant, stack.api, agents=2)
    admin = {"Authorization": f"Bearer {tenant.key}"}
    ann, bob = tenant.agents["agent0@example.com"], tenant.agents["agent1@example.com"]
    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
        sales = await http.post("/v1/queues", json={"name": "Sales", "skills": {"sales": 1}})
        assert sales.status_code == 201, sales.text
        r = await http.patch(f"/v1/agents/{bob}", json={"skills": {"sales": 5}})  # Bob: Sales only
        assert r.status_code == 200, r.text
        dev = (await http.post("/v1/keys", json={"role": "developer", "name": "dev"})).json()["key"]
    console = await Console.sign_in(stack.api, tenant.key, f"floor-{uuid.uuid4().hex[:8]}@example.com")
    key = await supervisor_key(stack.api, tenant.key)
    first = AgentSession(stack.api, tenant.token("agent0@example.com"), audio=False)
    second = AgentSession(stack.api, tenant.token("agent1@example.com"), auto_answer=True)
    caller = None
    try:
        for agent in (first, second):
            await agent.connect()
            await agent.login(state="available")

        # Ann away for coaching, from the console: her desk is told, routing has it.
        headers = {"Authorization": f"Bearer {await console.token()}"}
        body = {"state": "away", "reason": "training"}
        refused = await console.http.post(
            f"/v1/agents/{ann}/state", json=body, headers={"Authorization": f"Bearer {dev}"}
        )
        assert refused.status_code == 403, refused.text
        r = await console.http.post(f"/v1/agents/{ann}/state", json=body, headers=headers)
        assert r.status_code == 200 and r.json()["state"] == "away", r.text
        told = await _next(first, AgentState)
        while told.state != "away":
            told = await _next(first, AgentState)
        assert told.reason == "training"
        assert await _routing_state(stack.nats_url, tenant.id, ann) == "away"
        bad = await console.http.post(f"/v1/agents/{ann}/state", json={"state": "asleep"}, headers=headers)
        assert bad.status_code in (400, 422), bad.text

        # Nobody available in Support: the caller waits; moved to Sales (CLI), Bob is offered and answers.
        caller = PhoneCaller(stack.sip_port, tenant.number)
        await caller.dial()
        contact_id = await _queued_contact(stack.api, tenant.key)
        nowhere = await switchboard_cli_failing(
            stack.api, key, "contacts", "move", contact_id, "--queue", "Nope"
        )
        assert "queue" in nowhere
        moved = await switchboard_cli(stack.api, key, "contacts", "move", contact_id, "--queue", "Sales")
        assert moved["queue_id"] == sales.json()["id"], moved
        offer = await _next(second, ContactOffer)
        assert offer.contact_id == contact_id
        connected = await _next(second, ContactConnected)
        assert connected.contact_id == contact_id
        # Moving it again now that it is answered: a clear 409.
        async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
            with pytest.raises(switchboard.SwitchboardError) as late:
                await client.contacts.move(contact_id, "Support")
            assert "waiting in line" in str(late.value)
            # Ann signed out by the supervisor (SDK): her desk closes at once, routing has her out.
            ended = await client.agents.signout(ann)
        assert ended.sessions_ended == 0  # a key-issued token: no browser session, the socket still closes
        for _ in range(100):
            if first.close_code is not None:
                break
            await asyncio.sleep(0.05)
        assert first.close_code == 4401
        assert await _routing_state(stack.nats_url, tenant.id, ann) in (
            "logged_out",
            "offline",
            "refused:not_logged_in",
        )

        async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
            entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
        actions = [
            e["action"]
            for e in entries
            if e["action"] in ("agent.state_set", "contact.moved", "agent.signed_out")
        ]
        assert actions == ["agent.state_set", "contact.moved", "agent.signed_out"]
        assert all(e["actor_role"] == "supervisor" for e in entries if e["action"] in actions)
    finally:
        if caller is not None:
            await caller.hang_up()
            caller.close()
        for agent in (first, second):
            await agent.close()
        await console.close()


async def switchboard_cli_failing(api: str, key: str, *args: str) -> str:
    """A CLI command that must fail: its error message."""
    env = {**os.environ, "SB_API_URL": api, "SB_API_KEY": key}
    env.pop("SB_PROFILE", None)
    proc = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0, out.decode()
    return err.decode()


async def _waiting_contacts(api: str, key: str, count: int, timeout: float = 15.0) -> list[str]:
    """The ids of `count` contacts waiting in line, oldest first."""
    async with httpx.AsyncClient(
        base_url=api, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = (await http.get("/v1/contacts", params={"limit": 10})).json()["items"]
            queued = sorted((c for c in items if c["state"] == "queued"), key=lambda c: c["arrived_at"])
            if len(queued) >= count:
                return [str(c["id"]) for c in queued]
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} callers never waited in line")


async def _position(nats_url: str, tenant: uuid.UUID, contact_id: str) -> int | None:
    nc = await nats.connect(nats_url)
    try:
        query = ev.RoutingPosition(tenant_id=tenant, call_id=uuid.UUID(contact_id))
        msg = await nc.request(f"sb.{tenant}.cmd.routing.position", msgspec.json.encode(query), timeout=5)
        reply = msgspec.json.decode(msg.data, type=Reply)
        return reply.data.get("position") if reply.ok else None
    finally:
        await nc.close()


async def test_front_of_the_line_and_pull_to_oneself(first_call_stack: Stack, tmp_path: Path) -> None:
    """Two SIPp callers wait in Support while everyone is away: the supervisor puts the second at the front
    (CLI) and routing serves it first; the supervisor, who has an agent profile with their own email and is
    signed in as away, pulls the other caller to themselves from the console token and is offered it at
    once; a pull to a busy agent and a pull without an agent by an API key are refused; all audited."""
    from tests.e2e.first_call.test_supervisor_console import SippCaller

    stack = first_call_stack
    tenant = await asyncio.to_thread(make_tenant, stack.api)
    lead_email = f"lead-{uuid.uuid4().hex[:8]}@example.com"
    admin = {"Authorization": f"Bearer {tenant.key}"}
    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
        body = {"name": "The Lead", "email": lead_email, "skills": {"support": 1}}
        made = await http.post("/v1/agents", json=body)
        assert made.status_code == 201, made.text
    lead_id = tenant.agents[lead_email] = made.json()["id"]
    ann = tenant.agents["agent0@example.com"]
    console = await Console.sign_in(stack.api, tenant.key, lead_email)
    key = await supervisor_key(stack.api, tenant.key)
    agents = {
        "ann": AgentSession(stack.api, tenant.token("agent0@example.com"), auto_answer=True),
        "lead": AgentSession(stack.api, tenant.token(lead_email), auto_answer=True),
    }
    callers: list[SippCaller] = []
    try:
        for agent in agents.values():
            await agent.connect()
            await agent.login(state="away", reason="training")
        for n in (1, 2):
            (tmp_path / f"caller{n}").mkdir()
            callers.append(await SippCaller.dial(stack.sip_port, tenant.number, tmp_path / f"caller{n}"))
            await _waiting_contacts(stack.api, tenant.key, n)
        first, second = await _waiting_contacts(stack.api, tenant.key, 2)
        assert [await _position(stack.nats_url, tenant.id, c) for c in (first, second)] == [1, 2]

        fronted = await switchboard_cli(stack.api, key, "contacts", "front", second)
        assert fronted["position"] == 1, fronted
        assert [await _position(stack.nats_url, tenant.id, c) for c in (second, first)] == [1, 2]

        # An API key must name the agent; the console's own request pulls to the supervisor's profile.
        async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
            with pytest.raises(switchboard.SwitchboardError) as nameless:
                await client.contacts.pull(first)
            assert "name the agent" in str(nameless.value)
        headers = {"Authorization": f"Bearer {await console.token()}"}
        r = await console.http.post(f"/v1/contacts/{first}/pull", json={}, headers=headers)
        assert r.status_code == 200 and r.json()["agent_id"] == lead_id, r.text
        offer = await _next(agents["lead"], ContactOffer)
        assert offer.contact_id == first
        assert (await _next(agents["lead"], ContactConnected)).contact_id == first
        # The lead is on that call now: pulling the other one to them is refused and changes nothing.
        async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
            with pytest.raises(switchboard.SwitchboardError) as busy:
                await client.contacts.pull(second, lead_email)
            assert "no room" in str(busy.value), busy.value
        assert await _position(stack.nats_url, tenant.id, second) == 1
        # Ann back from training takes the one at the front.
        r = await console.http.post(f"/v1/agents/{ann}/state", json={"state": "available"}, headers=headers)
        assert r.status_code == 200, r.text
        assert (await _next(agents["ann"], ContactOffer)).contact_id == second

        async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
            entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
        done = [
            (e["action"], e["target_id"], e["detail"].get("agent_id"))
            for e in entries
            if e["action"] in ("contact.fronted", "contact.pulled")
        ]
        assert done == [("contact.fronted", second, None), ("contact.pulled", first, lead_id)]
    finally:
        for caller in callers:
            await caller.hang_up()
        for agent in agents.values():
            await agent.close()
        await console.close()
