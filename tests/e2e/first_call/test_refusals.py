"""A refused desk command changes nothing (docs/agent-protocol.md: an `error` means it was not done), with
real processes: each refusal below answers `error` and the call stays exactly as it was: connected to the
same agent, the caller still hearing it, no transfer in its record. The same transfer, once another
agent is signed in, is done. And an attended transfer (docs/agent-protocol.md, "Attended transfer"): agent 0
consults agent 1, who first declines (agent 0 is back with the caller), then takes the consultation: the
caller hears music while the agents talk, agent 0 completes, the caller hears agent 1, agent 0 wraps up with
a code, and the contact's record names both."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from switchboard import AgentCommandError, AgentSession
from switchboard.agent_events import ConsultUpdate, ContactConnected, ContactEnded, ContactOffer

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


FIRST_HZ, SECOND_HZ = 1000.0, 1400.0


async def _answered(agent: AgentSession, caller: PhoneCaller) -> str:
    """The agent signs in, the caller dials, the agent answers: the contact's id once they are connected."""
    await agent.login(state="available")
    await caller.dial()
    contact = str((await next_of(agent, ContactOffer)).contact_id)
    await asyncio.sleep(0.5)  # the leg connects while it rings
    await agent.accept(contact)
    await next_of(agent, ContactConnected)
    return contact


async def _hears(caller: PhoneCaller, hz: float, seconds: float = 0.8) -> float:
    mark = caller.mark()
    await asyncio.sleep(seconds)
    return tone_power(caller.pcm_since(mark), hz)


async def test_consult_declined_then_completed_hands_the_caller_to_the_second_agent(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    first_id, second_id = t.agents["agent0@example.com"], t.agents["agent1@example.com"]
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with (
            AgentSession(
                stack.api,
                t.token("agent0@example.com"),
                play=tone_wav(tmp_path / "a.wav", FIRST_HZ),
                play_loop=True,
            ) as first,
            AgentSession(
                stack.api,
                t.token("agent1@example.com"),
                play=tone_wav(tmp_path / "b.wav", SECOND_HZ),
                play_loop=True,
            ) as second,
        ):
            contact = await _answered(first, caller)
            assert await _hears(caller, FIRST_HZ) > 0.5

            # Agent 1 declines: agent 0 is told and is back with the caller.
            await second.login(state="available")
            started = await first.consult(contact, agent_id=second_id, note="refund over 500")
            consult_id = started["consult_id"]
            ringing = await next_of(second, ContactOffer)
            assert ringing.contact_id == consult_id and ringing.call_id == contact
            assert ringing.context.consult is not None and ringing.context.consult.note == "refund over 500"
            await second.reject(consult_id, ringing.offer_id)
            cancelled = await next_of(first, ConsultUpdate)
            assert (cancelled.state, cancelled.reason) == ("cancelled", "rejected")
            assert await _hears(caller, FIRST_HZ) > 0.5

            # Agent 1 takes the second consultation: the agents talk, the caller hears neither.
            await second.set_state("available")
            started = await first.consult(contact, agent_id=second_id)
            consult_id = started["consult_id"]
            ringing = await next_of(second, ContactOffer, lambda e: e.contact_id == consult_id)
            await asyncio.sleep(0.5)
            await second.accept(consult_id, ringing.offer_id)
            talking = await next_of(first, ConsultUpdate)
            assert (talking.state, talking.to_agent_id) == ("talking", second_id)
            joined = await next_of(second, ContactConnected)
            assert joined.contact_id == consult_id and joined.consult
            mark = caller.mark()
            await asyncio.sleep(0.8)
            held = caller.pcm_since(mark)
            assert tone_power(held, FIRST_HZ) < 0.2 and tone_power(held, SECOND_HZ) < 0.2

            await first.complete_transfer(contact)
            ended = await next_of(first, ContactEnded)
            assert (ended.cause, ended.wrap_up) == ("transferred", True)
            done = await next_of(second, ConsultUpdate)
            assert done.state == "completed"
            assert await _hears(caller, SECOND_HZ) > 0.5
            record = await wait_contact(t, contact, "connected")
            assert record["agent_id"] == second_id
            assert await first.wrap_up(contact, "escalated", notes="to billing") == {
                "disposition": "escalated"
            }

            await second.hangup(consult_id)
            await next_of(second, ContactEnded)
            await second.wrap_up(consult_id, "resolved")
        record = await wait_contact(t, contact, "ended")
        assert record["outcome"] == "handled" and record["disposition"] == "resolved"
        [move] = record["transfers"]
        assert (move["kind"], move["from_agent_id"], move["to_agent_id"]) == ("attended", first_id, second_id)
        assert move["disposition"] == "escalated" and move["notes"] == "to billing"
        events = [e["event"] for e in record["timeline"]]
        assert events.count("consult_ended") == 1 and events.count("transferred") == 1, events
    finally:
        caller.close()


async def test_consulted_agent_leaves_then_the_caller_hangs_up_mid_consultation(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """The unhappy paths through media: the consulted agent hangs up while talking (media puts agent 0 back
    with the caller), then the caller hangs up during a second consultation (both agents are let go)."""
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    second_id = t.agents["agent1@example.com"]
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with (
            AgentSession(
                stack.api,
                t.token("agent0@example.com"),
                play=tone_wav(tmp_path / "a.wav", FIRST_HZ),
                play_loop=True,
            ) as first,
            AgentSession(stack.api, t.token("agent1@example.com"), auto_answer=True) as second,
        ):
            contact = await _answered(first, caller)
            await second.login(state="available")

            consult_id = (await first.consult(contact, agent_id=second_id))["consult_id"]
            assert (await next_of(first, ConsultUpdate)).state == "talking"
            await next_of(second, ContactConnected, lambda e: e.contact_id == consult_id)
            await second.hangup(consult_id)
            back = await next_of(first, ConsultUpdate)
            assert (back.state, back.reason) == ("cancelled", "target_left")
            assert (await next_of(second, ContactEnded)).cause == "consult_target_left"
            assert await _hears(caller, FIRST_HZ) > 0.5

            consult_id = (await first.consult(contact, agent_id=second_id))["consult_id"]
            assert (await next_of(first, ConsultUpdate)).state == "talking"
            await caller.hang_up()
            assert (await next_of(first, ContactEnded)).by == "caller"
            gone = await next_of(second, ContactEnded, lambda e: e.contact_id == consult_id)
            assert gone.cause == "consult_caller_hung_up"
            await first.wrap_up(contact, "resolved")
        record = await wait_contact(t, contact, "ended")
        assert record["agent_id"] == t.agents["agent0@example.com"] and record["transfers"] == []
        events = [e["event"] for e in record["timeline"]]
        assert events.count("consult_ended") == 2, events
    finally:
        caller.close()
