"""A refused desk command changes nothing (docs/agent-protocol.md: an `error` means it was not done), with
real processes: each refusal below answers `error` and the call stays exactly as it was: connected to the
same agent, the caller still hearing it, no transfer in its record. The same transfer, once another
agent is signed in, is done."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from switchboard import AgentCommandError, AgentSession
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer

from tests.e2e.first_call.conftest import (
    PhoneCaller,
    Stack,
    make_tenant,
    next_of,
    tone_power,
    tone_wav,
    wait_contact,
)

AGENT_HZ = 1000.0


async def test_refused_commands_leave_the_contact_as_it_was(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    with t.client() as client:  # a queue nobody can take
        r = client.post("/v1/queues", json={"name": "Billing", "skills": {"billing": 1}})
        assert r.status_code == 201, r.text
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(
            stack.api,
            t.token("agent0@example.com"),
            play=tone_wav(tmp_path / "a.wav", AGENT_HZ),
            play_loop=True,
        ) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            contact = offer.contact_id
            refusals: list[tuple[str, dict[str, object], str]] = [
                ("hold", {"contact_id": contact, "on": True}, "state"),  # while it rings
                ("transfer", {"contact_id": contact, "queue": "Support"}, "state"),
            ]
            for command, fields, code in refusals:
                with pytest.raises(AgentCommandError) as refused:
                    await agent.request(command, **fields)
                assert refused.value.code == code, (command, refused.value)
            await asyncio.sleep(0.5)  # the leg connects while it rings
            await agent.accept(contact)
            await next_of(agent, ContactConnected)
            signed_out = t.agents["agent1@example.com"]
            refusals = [
                ("transfer", {"contact_id": contact, "agent_id": signed_out}, "agent_not_in_queue"),
                ("transfer", {"contact_id": contact, "agent_id": str(uuid.uuid4())}, "agent_not_in_queue"),
                ("transfer", {"contact_id": contact, "queue": "Billing"}, "no_agents"),
                ("transfer", {"contact_id": contact, "queue": "Support"}, "no_agents"),  # only itself
                ("transfer", {"contact_id": contact, "queue": "Nowhere"}, "not_found"),
                ("wrap_up", {"contact_id": contact, "disposition": "x"}, "state"),
                ("hold", {"contact_id": str(uuid.uuid4()), "on": True}, "not_found"),
            ]
            for command, fields, code in refusals:
                with pytest.raises(AgentCommandError) as refused:
                    await agent.request(command, **fields)
                assert refused.value.code == code, (command, fields, refused.value)
                record = await wait_contact(t, contact, "connected")
                assert record["agent_id"] == t.agents["agent0@example.com"] and record["transfers"] == []
            # Still talking: the caller hears the agent, and no contact_ended came.
            mark = caller.mark()
            await asyncio.sleep(1.0)
            assert tone_power(caller.pcm_since(mark), AGENT_HZ) > 0.5
            # The same transfer, once someone can take it, is done (and only then does the call move).
            async with AgentSession(stack.api, t.token("agent1@example.com"), auto_answer=True) as other:
                await other.login(state="available")
                done = await agent.transfer(contact, queue="Support", note="wants a refund")
                assert done["queue_id"] == t.queue_id
                ended = await next_of(agent, ContactEnded)
                assert ended.cause == "transferred" and ended.by == "agent"
                again = await next_of(other, ContactOffer)
                assert again.contact_id == contact and again.context.transfer is not None
                assert again.context.transfer.note == "wants a refund"
                await next_of(other, ContactConnected)
                await other.hangup(contact)
                await next_of(other, ContactEnded)
                await other.wrap_up(contact, "resolved")
        record = await wait_contact(t, contact, "ended")
        assert record["outcome"] == "handled" and record["agent_id"] == t.agents["agent1@example.com"]
        assert len(record["transfers"]) == 1
        events = [e["event"] for e in record["timeline"]]
        assert events.count("transferred") == 1 and events.count("connected") == 2, events
    finally:
        caller.close()
