"""A caller reaches an agent and they talk: the real API, media, routing, IVR and contact coordinator, a SIP
caller (PhoneCaller, conftest.py) and the SDK's headless agent (switchboard.AgentSession over the agent
websocket, with an aiortc audio leg). Each failure path of issue 8 has a test here."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
import switchboard
from switchboard import AgentCommandError, AgentSession
from switchboard.agent_events import (
    AgentState,
    ContactConnected,
    ContactEnded,
    ContactOffer,
    ContactWithdrawn,
    Recorded,
)

from services.kernel import events as ev
from services.kernel.messages import decode
from services.runtime.demo import DEMO_FLOW
from services.runtime.embedded import free_port
from tests.e2e.first_call.conftest import (
    PhoneCaller,
    Stack,
    Watch,
    make_tenant,
    next_of,
    sipp_trace,
    sipp_uas,
    tone,
    tone_power,
    trunk_to,
    wait_contact,
)
from tests.e2e.first_call.test_recording_call import with_recording_service
from tests.sipp_uac import press, sipp_command, uac_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

AGENT_HZ = 1000.0
CALLER_HZ = 600.0
PCAPS = Path("/usr/share/sip-tester")

MENU_FLOW = """\
name: fc-menu
start: menu
fallback: bye
nodes:
  menu:
    type: menu
    prompt: {say: "For support, press 2."}
    options: {"2": support}
    timeout: 8
    retries: 1
    on_fail: bye
  support: {type: queue, queue: Support}
  bye: {type: hangup}
"""


def agent_wav(tmp_path: Path) -> Path:
    path = tmp_path / "agent-tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(AGENT_HZ, 1.0).tobytes())
    return path


def wav_samples(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


async def test_caller_reaches_agent_they_talk_and_the_timeline_is_stored(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    record = tmp_path / "heard-{contact_id}.wav"
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    try:
        async with AgentSession(
            stack.api,
            t.token("agent0@example.com"),
            auto_answer=True,
            play=agent_wav(tmp_path),
            play_loop=True,
            record=record,
        ) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            ctx = offer.context
            assert ctx.caller.number == "+15550100" and ctx.caller.name == "Ada Caller"
            assert ctx.dialled == t.number and ctx.queue is not None and ctx.queue.name == "Support"
            assert ctx.ivr is None and ctx.history.today == 0
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
            # Audio both ways: the caller hears the agent's 1 kHz; the agent's recording holds the caller's 600 Hz.
            await asyncio.sleep(0.5)
            mark = caller.mark()
            await asyncio.sleep(2.0)
            heard = caller.pcm_since(mark)
            assert len(heard) > 8000, len(heard)
            assert tone_power(heard, AGENT_HZ) > 0.5 and tone_power(heard, CALLER_HZ) < 0.05
            await caller.hang_up()
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "caller" and ended.duration > 2.0
            recorded = await next_of(agent, Recorded)
            samples = wav_samples(recorded.path)
            assert tone_power(samples[-16000:], CALLER_HZ) > 0.3
            await agent.wrap_up(offer.contact_id, "resolved", notes="asked about the bill")
            await next_of(agent, AgentState, lambda e: e.state == "available")
        done = await wait_contact(t, offer.contact_id, "ended")
        assert done["outcome"] == "handled" and done["disposition"] == "resolved"
        assert done["notes"] == "asked about the bill" and done["agent_id"] == t.agents["agent0@example.com"]
        assert done["talk_s"] > 2.0 and done["queue_s"] >= 0 and done["caller"] == "+15550100"
        events = [e["event"] for e in done["timeline"]]
        assert events[:3] == ["arrived", "queued", "offered"]
        assert (
            events.index("accepted")
            < events.index("connected")
            < events.index("wrap_up")
            < events.index("ended")
        )
        states = [
            e.new for e in watch.all(ev.ContactStateChanged, lambda e: str(e.call_id) == offer.contact_id)
        ]
        assert states == ["arrived", "queued", "offered", "connected", "wrap_up", "ended"]
        # A second call from the same caller today: the offer's context counts the first.
        async with AgentSession(
            stack.api, t.token("agent0@example.com"), auto_answer=False, audio=False
        ) as agent:
            await agent.login(state="available")
            again = PhoneCaller(stack.sip_port, t.number)
            await again.dial()
            second = await next_of(agent, ContactOffer)
            assert second.context.history.today == 1
            assert second.context.history.last[0].contact_id == offer.contact_id
            assert second.context.history.last[0].disposition == "resolved"
            await again.hang_up()
            again.close()
    finally:
        caller.close()
        await watch.close()


async def test_offer_context_shows_the_ivr_path_and_digits(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, flow=MENU_FLOW)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(
            stack.api, t.token("agent0@example.com"), auto_answer=False, audio=False
        ) as agent:
            await agent.login(state="available")
            await caller.dial()
            await asyncio.sleep(1.0)
            caller.press("2")
            offer = await next_of(agent, ContactOffer, timeout=20)
            assert offer.context.ivr is not None
            assert offer.context.ivr.flow.startswith("fc-menu@")
            assert "menu" in offer.context.ivr.path and offer.context.ivr.digits == "2"
            assert offer.context.waited.ivr_s > 0.5
            await caller.hang_up()
            withdrawn = await next_of(agent, ContactWithdrawn)
            assert withdrawn.reason == "caller_hung_up"
        record = await wait_contact(t, offer.contact_id, "abandoned")
        assert record["outcome"] == "abandoned_ringing" and record["ivr_digits"] == "2"
    finally:
        caller.close()


async def test_rejected_and_unanswered_offers_go_back_to_the_front(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2, offer_timeout_s=5)
    first, second = PhoneCaller(stack.sip_port, t.number), PhoneCaller(stack.sip_port, t.number)
    try:
        async with (
            AgentSession(stack.api, t.token("agent0@example.com"), audio=False) as a,
            AgentSession(stack.api, t.token("agent1@example.com"), audio=False) as b,
        ):
            await a.login(state="available")
            await b.login(state="away")
            await first.dial()
            offer = await next_of(a, ContactOffer)
            await second.dial()
            await asyncio.sleep(0.5)
            await a.reject(offer.contact_id, offer.offer_id)
            await next_of(a, AgentState, lambda e: e.state == "away" and e.reason == "missed")
            # The first caller is still first in line: B gets it, not the second caller.
            await b.set_state("available")
            again = await next_of(b, ContactOffer)
            assert again.contact_id == offer.contact_id
            # B lets it ring out: back to the front again, and B is away ("missed").
            withdrawn = await next_of(b, ContactWithdrawn, timeout=10)
            assert withdrawn.reason == "no_answer"
            await next_of(b, AgentState, lambda e: e.state == "away" and e.reason == "missed")
            # Still first in line: B, back, gets it again (A declined it, so A is not asked again; A gets the
            # second caller).
            await b.set_state("available")
            third = await next_of(b, ContactOffer)
            assert third.contact_id == offer.contact_id
            await a.set_state("available")
            fourth = await next_of(a, ContactOffer)
            assert fourth.contact_id not in (offer.contact_id, "")
            await first.hang_up()
            await second.hang_up()
    finally:
        first.close()
        second.close()


async def test_caller_hanging_up_while_ringing_withdraws_the_offer(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), audio=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await asyncio.sleep(0.5)  # the leg connects while it rings
            await caller.hang_up()
            withdrawn = await next_of(agent, ContactWithdrawn)
            assert withdrawn.reason == "caller_hung_up" and withdrawn.contact_id == offer.contact_id
            await next_of(agent, AgentState, lambda e: e.state == "available")
        record = await wait_contact(t, offer.contact_id, "abandoned")
        assert record["outcome"] == "abandoned_ringing"
    finally:
        caller.close()


async def test_agent_connection_lost_mid_call_requeues_the_caller_at_the_front(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with (
            AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as a,
            AgentSession(stack.api, t.token("agent1@example.com"), auto_answer=True) as b,
        ):
            await a.login(state="available")
            await b.login(state="away")
            await caller.dial()
            offer = await next_of(a, ContactOffer)
            await next_of(a, ContactConnected)
            # A's audio drops (its peer connection goes away without a word on the websocket).
            leg = a.leg(offer.contact_id)
            assert leg is not None
            mark = caller.mark()
            await leg.pc.close()
            lost = await watch.wait_for(
                ev.ContactStateChanged, lambda e: e.new == "queued" and e.cause == "agent_connection_lost"
            )
            assert str(lost.call_id) == offer.contact_id
            # The caller hears the message (speech, not silence), then waits; B takes the call.
            await asyncio.sleep(2.0)
            said = caller.pcm_since(mark)
            assert np.sqrt(np.mean(said.astype(np.float64) ** 2)) > 300
            await b.set_state("available")
            again = await next_of(b, ContactOffer)
            assert again.contact_id == offer.contact_id
            await next_of(b, ContactConnected)
            await caller.hang_up()
        record = await wait_contact(t, offer.contact_id, "wrap_up")
        assert record["agent_id"] == t.agents["agent1@example.com"]
        assert "agent_connection_lost" in [e["detail"].get("cause") for e in record["timeline"]]
    finally:
        caller.close()
        await watch.close()


async def test_two_tenants_never_see_each_others_contacts(first_call_stack: Stack) -> None:
    stack = first_call_stack
    x, y = make_tenant(stack.api), make_tenant(stack.api)
    callers = [PhoneCaller(stack.sip_port, x.number), PhoneCaller(stack.sip_port, y.number)]
    try:
        async with (
            AgentSession(stack.api, x.token("agent0@example.com"), auto_answer=True) as ax,
            AgentSession(stack.api, y.token("agent0@example.com"), auto_answer=True) as ay,
        ):
            await ax.login(state="available")
            await ay.login(state="available")
            await asyncio.gather(*(c.dial() for c in callers))
            ox, oy = await next_of(ax, ContactOffer), await next_of(ay, ContactOffer)
            assert ox.contact_id != oy.contact_id
            assert ox.context.dialled == x.number and oy.context.dialled == y.number
            await next_of(ax, ContactConnected)
            await next_of(ay, ContactConnected)
            # Y's agent cannot act on X's contact, and X's admin cannot read Y's record.
            with pytest.raises(Exception) as refused:
                await ay.hangup(ox.contact_id)
            assert "not_found" in str(refused.value) or "not yours" in str(refused.value)
            with x.client() as client:
                assert client.get(f"/v1/contacts/{oy.contact_id}").status_code == 404
                listed = [c["id"] for c in client.get("/v1/contacts").json()["items"]]
            assert ox.contact_id in listed and oy.contact_id not in listed
            await asyncio.gather(*(c.hang_up() for c in callers))
    finally:
        for c in callers:
            c.close()


async def test_number_route_queue_through_the_api_refuses_unknown_queues(first_call_stack: Stack) -> None:
    t = make_tenant(first_call_stack.api)
    with t.client() as client:
        r = client.post(f"/v1/numbers/{t.number}/route", json={"queue": "Nope"})
        assert r.status_code == 422 and "Nope" in r.text
        r = client.post(f"/v1/numbers/{t.number}/route", json={"queue": "Support", "flow": "x"})
        assert r.status_code == 422
        r = client.post(f"/v1/numbers/{t.number}/route", json={"queue": "Support"})
        assert r.status_code == 200 and r.json()["queue_id"] == t.queue_id and r.json()["flow_id"] is None


async def test_agent_at_a_sip_phone_is_rung_and_talks(first_call_stack: Stack, tmp_path: Path) -> None:
    """The agent's endpoint is a SIP address (a desk phone: SIPp's UAS, echoing what it hears). The
    coordinator rings it from the caller's worker; answering accepts the offer; the caller's own tone comes
    back through the bridge and the phone's leg, so audio crossed both ways."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    port = free_port()
    with t.client() as client:
        r = client.patch(
            f"/v1/agents/{t.agents['agent0@example.com']}", json={"endpoint": f"sip:ada@127.0.0.1:{port}"}
        )
        assert r.status_code == 200, r.text
    phone = await asyncio.create_subprocess_exec(
        *sipp_command(port),
        *["-sn", "uas", "-rtp_echo", "-m", "1", "-timeout", "40"],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        async with AgentSession(stack.api, t.token("agent0@example.com"), audio=False) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
            await asyncio.sleep(0.5)
            mark = caller.mark()
            await asyncio.sleep(1.5)
            echoed = caller.pcm_since(mark)
            assert len(echoed) > 6000 and tone_power(echoed, CALLER_HZ) > 0.5
            await caller.hang_up()
            await next_of(agent, ContactEnded)
        assert await asyncio.wait_for(phone.wait(), 10) == 0, (
            "the phone's call completed (answered, BYE received)"
        )
        record = await wait_contact(t, offer.contact_id, "ended")  # signing out ended the wrap-up
        assert record["outcome"] == "handled"
        assert "agent_phone_answered" in [e["event"] for e in record["timeline"]]
    finally:
        caller.close()
        if phone.returncode is None:
            phone.kill()
            await phone.wait()


async def test_coordinator_killed_while_it_rings_resumes_and_connects_once(first_call_stack: Stack) -> None:
    """kill -9 of the contact coordinator while the offer rings: the agent's accept while it is down is
    refused (every desk command goes through the coordinator: nothing changed, the offer still rings); the
    restarted one resumes the contact from its saved state, takes the accept, connects the call exactly
    once, and the timeline has no step twice."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), audio=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            leg = None
            for _ in range(100):
                leg = agent.leg(offer.contact_id)
                if leg is not None and leg.state == "connected":
                    break
                await asyncio.sleep(0.05)
            assert leg is not None and leg.state == "connected"
            stack.kill("contacts")
            with pytest.raises(AgentCommandError) as refused:
                await agent.accept(offer.contact_id, offer.offer_id)
            assert refused.value.code in ("contacts_unavailable", "contacts_timeout"), refused.value
            await asyncio.to_thread(stack.start, "contacts")
            for _ in range(40):  # until the restarted coordinator serves desk commands
                try:
                    await agent.accept(offer.contact_id, offer.offer_id)
                    break
                except AgentCommandError as exc:
                    assert exc.code in ("contacts_unavailable", "contacts_timeout"), exc
                    await asyncio.sleep(0.25)
            await next_of(agent, ContactConnected, timeout=20)
            await caller.hang_up()
            await next_of(agent, ContactEnded)
            await agent.wrap_up(offer.contact_id, "resolved")
        record = await wait_contact(t, offer.contact_id, "ended")
        events = [e["event"] for e in record["timeline"]]
        for step in ("arrived", "queued", "offered", "accepted", "connected", "wrap_up", "ended"):
            assert events.count(step) == 1, events
        connected = watch.all(
            ev.ContactStateChanged, lambda e: str(e.call_id) == offer.contact_id and e.new == "connected"
        )
        assert len(connected) == 1
    finally:
        caller.close()
        await watch.close()


async def test_a_number_routed_nowhere_plays_the_message_hangs_up_and_is_recorded_unrouted(
    first_call_stack: Stack,
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    nowhere = "+1555" + str(uuid.uuid4().int)[:8]
    with t.client() as client:
        assert client.post("/v1/numbers", json={"e164": nowhere}).status_code == 201
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, nowhere)
    try:
        await caller.dial()
        await asyncio.wait_for(caller.ended_by_platform.wait(), 15.0)
        heard = caller.pcm_since(0).astype(np.float64)
        assert len(heard) > 8000 and float(np.sqrt(np.mean(heard**2))) > 300  # the message was played
        arrived = await watch.wait_for(ev.CallArrived, lambda e: e.to_e164 == nowhere)
        done = await wait_contact(t, str(arrived.call_id), "ended")
        assert done["outcome"] == "unrouted" and done["cause"] == "unrouted" and done["dialled"] == nowhere
        assert [e["event"] for e in done["timeline"]] == ["arrived", "unrouted", "ended"]
        log = stack.logs["media"].read_text(errors="replace")
        assert f'"contact_id": "{arrived.call_id}"' in log and "call_unrouted" in log
        # The coordinator's lines for a person: arrival (and where it goes), end, once each, with the id.
        mine = [
            json.loads(line)
            for line in stack.logs["contacts"].read_text(errors="replace").splitlines()
            if str(arrived.call_id) in line and line.startswith("{")
        ]
        steps = [(line["event"], line["level"]) for line in mine]
        assert steps == [("call_arrived", "info"), ("call_ended", "info")], steps
        assert mine[0]["route"] == "nowhere (unrouted)" and mine[1]["outcome"] == "unrouted"
    finally:
        caller.close()
        await watch.close()


async def test_a_call_refused_by_the_tenants_call_limit_is_recorded(first_call_stack: Stack, infra) -> None:  # type: ignore[no-untyped-def]
    stack = first_call_stack
    t = make_tenant(stack.api)
    conn = await asyncpg.connect(infra.owner_url)
    try:
        await conn.execute("UPDATE tenants SET max_concurrent_calls = 0 WHERE id = $1", t.id)
    finally:
        await conn.close()
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        with pytest.raises(AssertionError, match="486"):
            await caller.dial()
    finally:
        caller.close()
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        with t.client() as client:
            items = client.get("/v1/contacts").json()["items"]
        if items and items[0]["state"] == "failed":
            break
        assert asyncio.get_running_loop().time() < deadline, items
        await asyncio.sleep(0.1)
    done = await wait_contact(t, items[0]["id"], "failed")
    assert (done["outcome"], done["cause"], done["dialled"]) == ("refused", "tenant_call_limit", t.number)
    assert [e["event"] for e in done["timeline"]] == ["arrived", "refused", "failed"]


# -- Queue rules and announcements (issue 16): set through the SDK, routed by the running services ---------


def _sdk(t: Any) -> switchboard.Client:
    return switchboard.Client(api_key=t.key, base_url=t.api)


async def _available(stack: Stack, t: Any, email: str) -> AgentSession:
    agent = AgentSession(stack.api, t.token(email), auto_answer=False, audio=False)
    await agent.__aenter__()
    await agent.login(state="available")
    return agent


async def test_a_queue_overflows_to_another_after_its_time(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    with _sdk(t) as client:
        billing = client.queues.create("Billing", skills={"billing": 1})
        client.agents.update(t.agents["agent1@example.com"], skills={"billing": 5})
        client.queues.set_rules(t.queue_id, overflow=[{"target_queue_id": billing.id, "after_seconds": 2}])
    caller = PhoneCaller(stack.sip_port, t.number)
    agent = await _available(stack, t, "agent1@example.com")  # Billing only: nobody staffs Support
    try:
        await caller.dial()
        dialled = time.monotonic()
        offer = await next_of(agent, ContactOffer, timeout=10)
        waited = time.monotonic() - dialled
        assert offer.context.queue is not None and offer.context.queue.name == "Billing"
        assert 1.8 < waited < 8.0, waited
        record = await wait_contact(t, offer.contact_id, "offered")
        moved = [e for e in record["timeline"] if e["event"] == "overflow"]
        assert moved and moved[0]["detail"]["to_queue_id"] == billing.id, record["timeline"]
    finally:
        await agent.__aexit__(None, None, None)
        caller.close()


async def test_most_skilled_picks_the_right_agent_among_three(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=3)
    with _sdk(t) as client:
        for email, level in (("agent0", 3), ("agent1", 9), ("agent2", 5)):
            client.agents.update(t.agents[f"{email}@example.com"], skills={"support": level})
        client.queues.set_rules(t.queue_id, strategy="most_skilled")
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    agents = []
    try:
        # The most skilled signs in last: longest-idle (the default) would pick agent0.
        for email in ("agent0", "agent2", "agent1"):
            agents.append(await _available(stack, t, f"{email}@example.com"))
        await caller.dial()
        offered = await watch.wait_for(ev.ContactOffered)
        assert offered.agent_id == t.agents["agent1@example.com"], offered
    finally:
        for agent in agents:
            await agent.__aexit__(None, None, None)
        caller.close()
        await watch.close()


async def test_a_drained_site_sends_its_calls_to_the_other(first_call_stack: Stack) -> None:
    """Support prefers Paris and never spills by time; Paris's agent is away, so the caller waits for
    Paris. Draining Paris (config.changed to the running routing) sends the waiting caller to Lyon at once."""
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    with _sdk(t) as client:
        paris = client.sites.create("Paris", timezone="Europe/Paris")
        lyon = client.sites.create("Lyon", timezone="Europe/Paris")
        client.agents.update(t.agents["agent0@example.com"], site_id=paris.id)
        client.agents.update(t.agents["agent1@example.com"], site_id=lyon.id)
        client.queues.update(t.queue_id, site_id=paris.id)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    paris_agent = AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=False, audio=False)
    lyon_agent = await _available(stack, t, "agent1@example.com")
    try:
        await paris_agent.__aenter__()
        await paris_agent.login(state="away", reason="break")
        await caller.dial()
        await watch.wait_for(ev.ContactQueued)
        await asyncio.sleep(1.0)
        assert watch.all(ev.ContactOffered) == []  # held for Paris: Lyon's free agent is not offered it
        with _sdk(t) as client:
            assert client.sites.drain(paris.id).drained_at is not None
        offered = await watch.wait_for(ev.ContactOffered, timeout=5)
        assert offered.agent_id == t.agents["agent1@example.com"]
        with _sdk(t) as client:
            assert client.sites.restore(paris.id).drained_at is None
    finally:
        for agent in (paris_agent, lyon_agent):
            await agent.__aexit__(None, None, None)
        caller.close()
        await watch.close()


async def test_a_holiday_closes_the_queue_and_the_caller_hears_its_message(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    today = datetime.now(UTC).date()  # the tenant's time zone is UTC; tomorrow too, should midnight pass
    with _sdk(t) as client:
        client.queues.set_rules(
            t.queue_id,
            holidays=[today.isoformat(), (today + timedelta(days=1)).isoformat()],
            closed_message="We are closed for the holiday. Goodbye.",
        )
    caller = PhoneCaller(stack.sip_port, t.number)
    watch = await Watch.start(stack.nats_url, t.id)
    try:
        await caller.dial()
        mark = caller.mark()
        await asyncio.wait_for(caller.ended_by_platform.wait(), 20)  # the platform hangs up after it
        heard = caller.pcm_since(mark)
        assert len(heard) > 8000 * 1.5, len(heard)  # the message: seconds of speech, not silence
        assert float(np.sqrt(np.mean(heard.astype(np.float64) ** 2))) > 300
        arrived = await watch.wait_for(ev.ContactStateChanged, lambda e: e.new == "arrived")
        record = await wait_contact(t, str(arrived.call_id), "ended")
        assert record["outcome"] == "closed" and record["queued_at"] is None, record
        assert "closed" in [e["event"] for e in record["timeline"]]
    finally:
        caller.close()
        await watch.close()


class _Sink(asyncio.DatagramProtocol):
    """Where the platform sends a SIPp caller's audio (kept when a list is given)."""

    def __init__(self, into: list[bytes] | None = None) -> None:
        self.into = into

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.into is not None:
            self.into.append(data)


async def test_a_vip_caller_jumps_the_line(first_call_stack: Stack, tmp_path: Path) -> None:
    """A caller waits; then a SIPp caller from a VIP number (a priority rule on `caller`); the agent who
    comes free gets the VIP first."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    with _sdk(t) as client:
        client.queues.set_rules(
            t.queue_id, priority_rules=[{"attribute": "caller", "equals": "+15550177", "raise_by": 30}]
        )
    watch = await Watch.start(stack.nats_url, t.id)
    first = PhoneCaller(stack.sip_port, t.number)
    loop = asyncio.get_running_loop()
    rtp, _ = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    scenario = uac_scenario(
        rtp_port=rtp.get_extra_info("sockname")[1],
        caller='"Vip" <sip:+15550177@[local_ip]:[local_port]>',
        hangup_after_ms=3000,
        name="vip",
    )
    (tmp_path / "vip.xml").write_text(scenario)
    sipp = None
    agent = None
    try:
        await first.dial()
        await watch.wait_for(ev.ContactQueued)
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", "vip.xml", "-s", t.number, f"127.0.0.1:{stack.sip_port}",
            "-m", "1", "-timeout", "20", "-timeout_error",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        await watch.wait_for(ev.ContactQueued, lambda e: len(watch.all(ev.ContactQueued)) == 2)
        agent = await _available(stack, t, "agent0@example.com")
        offer = await next_of(agent, ContactOffer, timeout=10)
        assert offer.context.caller.number == "+15550177", offer.context.caller
        out, _ = await asyncio.wait_for(sipp.communicate(), 20)
        assert sipp.returncode == 0, out.decode(errors="replace")[-2000:]
    finally:
        if sipp is not None and sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        if agent is not None:
            await agent.__aexit__(None, None, None)
        first.close()
        rtp.close()
        await watch.close()


async def test_a_caller_on_a_queue_number_hears_position_at_the_queues_interval(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """No IVR: the number goes straight to the queue. A SIPp caller waits; every 5 s (the queue's interval)
    media plays the position announcement to its end, and the music comes back in between."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    with _sdk(t) as client:
        client.queues.set_rules(t.queue_id, announce_seconds=5)
    watch = await Watch.start(stack.nats_url, t.id)
    finished: list[tuple[float, ev.CallPlayFinished]] = []
    two_said = asyncio.Event()

    async def on_finished(msg: Any) -> None:
        finished.append((time.monotonic(), decode(msg.data, ev.CallPlayFinished)))
        if len([e for _, e in finished if e.reason == "done"]) >= 2:
            two_said.set()

    await watch.nc.subscribe(f"sb.{t.id}.evt.call.play_finished", cb=on_finished)
    heard: list[bytes] = []
    rtp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Sink(heard), local_addr=("127.0.0.1", 0)
    )
    (tmp_path / "waiting.xml").write_text(
        uac_scenario(rtp_port=rtp.get_extra_info("sockname")[1], hangup_after_ms=14000, name="waiting")
    )
    sipp = await asyncio.create_subprocess_exec(
        *sipp_command(),
        "-sf", "waiting.xml", "-s", t.number, f"127.0.0.1:{stack.sip_port}",
        "-m", "1", "-timeout", "30", "-timeout_error",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        queued = await watch.wait_for(ev.ContactStateChanged, lambda e: e.new == "queued")
        start = time.monotonic()
        await asyncio.wait_for(two_said.wait(), 18.0)
        # Two announcements, each played to its end (its ~2 s of speech) after about 5 and 10 s in line.
        ends = [(at - start, e) for at, e in finished if e.reason == "done"]
        assert 5.0 < ends[0][0] < 10.0 and 4.0 < ends[1][0] - ends[0][0] < 6.5, ends
        record = await wait_contact(t, str(queued.call_id), "queued")
        said = [e for e in record["timeline"] if e["event"] == "announced"][:2]
        assert [e["detail"]["position"] for e in said] == ["1", "1"], record["timeline"]
        queued_at = datetime.fromisoformat(record["queued_at"])
        offsets = [(datetime.fromisoformat(e["at"]) - queued_at).total_seconds() for e in said]
        assert 4.5 < offsets[0] < 7.0 and 4.5 < offsets[1] - offsets[0] < 6.0, offsets
        # The music stopped for each announcement and came back after it (the loop never ends on its own).
        assert len([e for _, e in finished if e.reason == "stopped"]) >= 2, finished
        # SIPp's RTP port got the audio all along: 50 packets a second of music and speech.
        assert len(heard) > 50 * 10, len(heard)
        out, _ = await asyncio.wait_for(sipp.communicate(), 20)
        assert sipp.returncode == 0, out.decode(errors="replace")[-2000:]
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        rtp.close()
        await watch.close()


# -- callbacks (docs/routing.md, "Callbacks") ------------------------------------------------------------

BUSY_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy trunk">
  <recv request="INVITE"/>
  <send><![CDATA[

SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"""
CALLBACK_FLOW = """\
name: fc-callback
start: cb
fallback: bye
nodes:
  cb: {type: callback, queue: Support, next: bye}
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""


async def test_demo_flow_callback_offer_is_called_back_agent_first(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """The demo flow's callback offer (docs/examples/demo-flow.yaml, its wait shortened): a SIPp caller picks
    support, hears the offer while queued, presses 1 and hangs up. When an agent is free, the agent is
    offered the callback (its context says so), accepts, and the platform dials the caller's number through
    the tenant's trunk (SIPp UAS echoing) with the number the caller dialled as caller ID; the agent's 1 kHz
    comes back through the bridge."""
    stack = first_call_stack
    t = make_tenant(stack.api, flow=DEMO_FLOW.replace("callback_after: 60", "callback_after: 1"))
    port = free_port()
    trunk_to(t, port)
    uas = await sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo", "-m", "1")
    watch = await Watch.start(stack.nats_url, t.id)
    loop = asyncio.get_running_loop()
    sink, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    (tmp_path / "pcap").symlink_to(PCAPS)
    (tmp_path / "caller.xml").write_text(
        uac_scenario(
            rtp_port=sink.get_extra_info("sockname")[1],
            # 0 (a person: support) during the menu, then 1 for the callback while its offer plays (a second
            # after queueing). Two different keys: SIPp replays one capture with the same RTP timestamp, and a
            # repeat of one event is the same key press to media (RFC 4733).
            during=press("0", after_ms=4000) + press("1", after_ms=4000),
            hangup_after_ms=1500,
            name="callback caller",
        )
    )
    try:
        caller = await asyncio.create_subprocess_exec(
            *sipp_command(),
            *[
                "-sf",
                "caller.xml",
                "-s",
                t.number,
                f"127.0.0.1:{stack.sip_port}",
                "-m",
                "1",
                "-timeout",
                "30",
            ],
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(caller.wait(), 40) == 0
        waiting = await watch.wait_for(ev.ContactStateChanged, lambda e: e.new == "callback")
        contact_id = str(waiting.call_id)
        async with AgentSession(
            stack.api,
            t.token("agent0@example.com"),
            auto_answer=True,
            play=agent_wav(tmp_path),
            play_loop=True,
            record=tmp_path / "cb-{contact_id}.wav",
        ) as agent:
            await agent.login(state="available")
            offer = await next_of(agent, ContactOffer)
            assert offer.contact_id == contact_id and offer.call_id is None
            assert offer.context.attributes.get("callback_number") == "+15550142"
            await next_of(agent, ContactConnected, lambda e: e.contact_id == contact_id, timeout=20)
            await asyncio.sleep(2.5)
            await agent.hangup(contact_id)
            await next_of(agent, ContactEnded)
            recorded = await next_of(agent, Recorded)
            samples = wav_samples(recorded.path)
            assert tone_power(samples[-12000:], AGENT_HZ) > 0.3  # the customer's echo of the agent
            await agent.wrap_up(contact_id, "called back")
        assert await asyncio.wait_for(uas.wait(), 10) == 0, "the trunk's call was answered and hung up"
        done = await wait_contact(t, contact_id, "ended")
        assert done["outcome"] == "handled" and done["disposition"] == "called back"
        assert done["attributes"]["callback.attempts"] == "1" and done["ivr_path"][:3] == [
            "welcome",
            "menu",
            "support",
        ]
        events = [e["event"] for e in done["timeline"]]
        for name in ("callback_requested", "callback", "callback_dialing", "callback_answered", "connected"):
            assert name in events, (name, events)
        invite = sipp_trace(tmp_path)
        assert "INVITE sip:+15550142@" in invite and f"From: <sip:{t.number}@" in invite, invite[:800]
    finally:
        sink.close()
        await watch.close()
        if uas.returncode is None:
            uas.kill()
            await uas.wait()


async def test_callback_nobody_answers_is_retried_then_fails_customer_first(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """A callback node (confirm with 1), customer first, two attempts one second apart, and a trunk that is
    busy each time: both attempts are dialled, the agent is never offered anything, and the contact ends
    `callback_failed` with both attempts on its record."""
    stack = first_call_stack
    t = make_tenant(stack.api, flow=CALLBACK_FLOW)
    port = free_port()
    trunk_to(
        t,
        port,
        callback_mode="customer_first",
        callback_attempts=2,
        callback_retry_seconds=1,
        callback_ring_seconds=5,
    )
    (tmp_path / "busy.xml").write_text(BUSY_UAS)
    uas = await sipp_uas(tmp_path, port, "-sf", "busy.xml", "-m", "2")
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), audio=False) as agent:
            await agent.login(state="available")
            await caller.dial()
            await watch.wait_for(ev.IvrNodeEntered, lambda e: e.node == "cb")
            await asyncio.sleep(1.0)
            caller.press("1")
            await asyncio.wait_for(caller.ended_by_platform.wait(), 15)  # "Goodbye."
            waiting = await watch.wait_for(ev.ContactStateChanged, lambda e: e.new == "callback")
            done = await wait_contact(t, str(waiting.call_id), "ended", timeout=20)
            assert not [e for e in watch.all(ev.DeskPush) if e.kind == "contact_offer"]
        assert done["outcome"] == "callback_failed" and done["attributes"]["callback.attempts"] == "2"
        missed = [e for e in done["timeline"] if e["event"] == "callback_not_answered"]
        assert [m["detail"]["attempt"] for m in missed] == ["1", "2"], done["timeline"]
        assert await asyncio.wait_for(uas.wait(), 10) == 0, "the trunk saw both attempts"
    finally:
        caller.close()
        await watch.close()
        if uas.returncode is None:
            uas.kill()
            await uas.wait()


CLOSED_FLOW = """\
name: after-hours
start: sorry
nodes:
  sorry: {type: play, prompt: {say: "Our office is closed. Please call back tomorrow."}, next: bye}
  bye: {type: hangup}
"""


async def test_a_closed_queue_hands_its_callers_to_its_closed_flow(first_call_stack: Stack) -> None:
    """Closed every day (hours {}), closed treatment `flow`: the IVR takes the answered caller."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    with _sdk(t) as client:
        client.flows.deploy(CLOSED_FLOW)
        flow_id = next(f.id for f in client.flows.list().items if f.name == "after-hours")
        client.queues.set_rules(t.queue_id, hours={}, closed_treatment="flow", closed_flow_id=flow_id)
    caller = PhoneCaller(stack.sip_port, t.number)
    watch = await Watch.start(stack.nats_url, t.id)
    try:
        await caller.dial()
        await asyncio.wait_for(caller.ended_by_platform.wait(), 20)  # the flow's hangup node
        arrived = await watch.wait_for(ev.ContactStateChanged, lambda e: e.new == "arrived")
        record = await wait_contact(t, str(arrived.call_id), "ended")
        assert record["outcome"] == "self_served" and record["ivr_path"] == ["sorry", "bye"], record
        states = [e.new for e in watch.all(ev.ContactStateChanged)]
        assert states[:2] == ["arrived", "in_ivr"] and "queued" not in states, states
    finally:
        caller.close()
        await watch.close()


# -- outbound calls (docs/routing.md, "Outbound calls") ----------------------------------------------------


async def test_agent_dials_out_through_the_trunk_recorded_and_refusals(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """An agent places a call (AgentSession.dial): refused until an admin allows the agent to dial, and for
    a number on the do-not-call list; then dialled through the tenant's trunk (SIPp UAS echoing) from the
    tenant's number, bridged to the agent (its 1 kHz comes back), recorded (the queue records every
    call), and stored as an outbound contact. Then click-to-dial from the API (a CRM) to the same agent."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    port = free_port()
    trunk_to(t, port)
    agent_id = t.agents["agent0@example.com"]
    with t.client() as client:
        assert client.patch(f"/v1/queues/{t.queue_id}", json={"recording_percent": 100}).status_code == 200
        assert client.post("/v1/do-not-call", json={"e164": "+15550199", "note": "asked"}).status_code == 201
    uas = await sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo", "-m", "2")
    watch = await Watch.start(stack.nats_url, t.id)
    try:
        async with AgentSession(
            stack.api,
            t.token("agent0@example.com"),
            play=agent_wav(tmp_path),
            play_loop=True,
            record=tmp_path / "out-{contact_id}.wav",
        ) as agent:
            await agent.login(state="available")
            with pytest.raises(AgentCommandError) as refused:
                await agent.dial("+15550142")
            assert (
                refused.value.code == "forbidden" and "may not place outbound calls" in refused.value.reason
            )
            with t.client() as client:
                r = client.patch(f"/v1/agents/{agent_id}", json={"can_dial": True})
                assert r.status_code == 200 and r.json()["can_dial"] is True
            with pytest.raises(AgentCommandError) as refused:
                await agent.dial("+15550199")
            assert refused.value.code == "do_not_call" and "do-not-call list" in refused.value.reason
            placed = await agent.dial("+15550142")
            contact_id = placed["contact_id"]
            assert placed["caller_id"] == t.number
            offer = await next_of(agent, ContactOffer, lambda e: e.contact_id == contact_id)
            assert offer.outbound and offer.call_id is None
            await next_of(agent, ContactConnected, lambda e: e.contact_id == contact_id, timeout=20)
            await asyncio.sleep(2.5)
            await agent.hangup(contact_id)
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "agent"
            recorded = await next_of(agent, Recorded)
            assert tone_power(wav_samples(recorded.path)[-12000:], AGENT_HZ) > 0.3  # echoed by the far end
            await agent.wrap_up(contact_id, "called")
            await next_of(agent, AgentState, lambda e: e.state == "available")
            # Click-to-dial from a CRM: the agent's session takes its own call; the far end answers.
            with t.client() as client:
                r = client.post(f"/v1/agents/{agent_id}/dial", json={"to": "+15550177"})
                assert r.status_code == 201, r.text
                clicked = r.json()["contact_id"]
                assert client.post(f"/v1/agents/{agent_id}/dial", json={"to": "12"}).status_code == 422
            await next_of(agent, ContactConnected, lambda e: e.contact_id == clicked, timeout=20)
            await agent.hangup(clicked)
            await next_of(agent, ContactEnded, lambda e: e.contact_id == clicked)
            await agent.wrap_up(clicked, "crm")
        done = await wait_contact(t, contact_id, "ended")
        assert done["direction"] == "outbound" and done["outcome"] == "handled"
        assert done["dialled"] == "+15550142" and done["caller"] == t.number
        assert done["agent_id"] == agent_id and done["talk_s"] > 2.0
        customer = ev.CallRecording
        assert watch.all(customer, lambda e: e.state == "started"), "the outbound call was recorded"
        assert (await wait_contact(t, clicked, "ended"))["direction"] == "outbound"
        assert await asyncio.wait_for(uas.wait(), 10) == 0, "both calls answered and hung up"
        trace = sipp_trace(tmp_path)
        assert "INVITE sip:+15550142@" in trace and "INVITE sip:+15550177@" in trace
        assert f"From: <sip:{t.number}@" in trace and "+15550199" not in trace
    finally:
        await watch.close()
        if uas.returncode is None:
            uas.kill()
            await uas.wait()


# -- after the agent: a post-call survey (docs/ivr.md, "After the agent") --------------------------------

SURVEY_FLOW = """\
name: fc-survey
start: ask
fallback: bye
nodes:
  ask:
    type: survey
    questions:
      - {prompt: {say: "How did we do, from 1 to 5?"}, into: rating, min: 1, max: 5}
    timeout: 8
    next: bye
  bye: {type: hangup, prompt: {say: "Thank you."}}
"""


async def test_queue_survey_after_the_agent_hangs_up_lands_on_the_record(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """The queue names a post-call flow: the agent hangs up, the SIPp caller stays on the line, hears the
    survey, presses 4 and is thanked and hung up by the platform; the answer is on the contact record."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    with t.client() as client:
        assert client.post("/v1/flows", json={"definition": SURVEY_FLOW}).status_code == 201
        flow_id = next(f["id"] for f in client.get("/v1/flows").json()["items"] if f["name"] == "fc-survey")
        r = client.patch(f"/v1/queues/{t.queue_id}", json={"survey_flow_id": flow_id})
        assert r.status_code == 200 and r.json()["survey_flow_id"] == flow_id, r.text
        bad = client.patch(f"/v1/queues/{t.queue_id}", json={"survey_flow_id": str(uuid.uuid4())})
        assert bad.status_code == 422 and "no flow with id" in bad.text
    loop = asyncio.get_running_loop()
    sink, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    (tmp_path / "pcap").symlink_to(PCAPS)
    (tmp_path / "caller.xml").write_text(
        uac_scenario(
            rtp_port=sink.get_extra_info("sockname")[1],
            during=press("4", after_ms=9000),  # the agent has answered and left by then: the survey asks
            bye_timeout_ms=25000,
            name="survey caller",
        )
    )
    watch = await Watch.start(stack.nats_url, t.id)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            caller = await asyncio.create_subprocess_exec(
                *sipp_command(),
                *[
                    "-sf",
                    "caller.xml",
                    "-s",
                    t.number,
                    f"127.0.0.1:{stack.sip_port}",
                    "-m",
                    "1",
                    "-timeout",
                    "40",
                ],
                cwd=tmp_path,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
            await asyncio.sleep(1.0)
            await agent.hangup(offer.contact_id)
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "agent"
            await agent.wrap_up(offer.contact_id, "resolved")  # before the caller has answered the survey
            # SIPp exits 0 only if the platform hung it up (the flow's thank-you, then BYE).
            assert await asyncio.wait_for(caller.wait(), 35) == 0
        done = await wait_contact(t, offer.contact_id, "ended", timeout=15)
        assert done["attributes"]["survey.rating"] == "4" and done["disposition"] == "resolved", done
        assert done["outcome"] == "handled"
        events = [e["event"] for e in done["timeline"]]
        assert events.index("wrap_up") < events.index("post_call_flow") < events.index("survey_answered")
        assert events[-1] == "ended", events
    finally:
        sink.close()
        await watch.close()


VOICEMAIL_FLOW = """\
name: fc-voicemail
start: vm
nodes:
  vm: {type: voicemail, queue: Support, prompt: {say: "Leave a message."}, max_seconds: 2}
"""


@pytest.fixture
def recording_service(first_call_stack: Stack, infra: Any) -> Iterator[Any]:
    """The recording service beside the stack: it seals voicemails."""
    yield from with_recording_service(first_call_stack, infra)


async def test_a_voicemail_is_offered_to_an_agent_who_plays_it_and_closes_it(
    first_call_stack: Stack, recording_service: Any, infra: Any
) -> None:
    """A caller leaves a message (the IVR's voicemail node): it is a task of its own, offered through the desk
    like a call but without audio legs; the agent's token gets a signed, expiring URL of the message (sealed
    by the recording service, its plain file gone), hangs it up (done) and wraps it up with a disposition;
    the task's record names the call it was left on, whose contact links the message, listed as a recording
    of kind voicemail. Voicemails have a capacity of their own: at 2, a second caller's message is offered
    while the first is still open."""
    stack = first_call_stack
    t = await asyncio.to_thread(make_tenant, stack.api, flow=VOICEMAIL_FLOW)
    token = await asyncio.to_thread(t.token, "agent0@example.com")
    with _sdk(t) as sdk:
        agent_id = t.agents["agent0@example.com"]
        assert sdk.agents.get(agent_id).voicemail_capacity == 1
        assert sdk.agents.update(agent_id, voicemail_capacity=2).voicemail_capacity == 2
    caller = PhoneCaller(stack.sip_port, t.number, frequency=600.0)
    second = PhoneCaller(stack.sip_port, t.number, frequency=600.0)
    try:
        async with AgentSession(stack.api, token, auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer, timeout=20)
            assert (offer.task, offer.audio) == ("voicemail", "none")
            vm = offer.context.voicemail
            assert vm is not None and vm.seconds == 2.0 and offer.context.caller.number == "+15550100"
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
            assert agent.leg(offer.contact_id) is None  # nothing to make a leg for
            async with httpx.AsyncClient(base_url=stack.api, timeout=10) as http:
                signed = await http.get(vm.url, headers={"Authorization": f"Bearer {token}"})
                assert signed.status_code == 307, signed.text
                location = signed.headers["location"]
                assert location.startswith(f"/v1/recording-audio/{offer.contact_id}?") and "sig=" in location
                r = await http.get(location)  # the signed URL needs no token
                assert r.status_code == 200 and r.headers["content-type"].startswith("audio/wav"), r.text
                assert (await http.get(location.replace("sig=", "sig=x"))).status_code == 403
                assert (await http.get(vm.url)).status_code == 401
                other = f"/v1/desk/voicemails/{uuid.uuid4()}"
                assert (
                    await http.get(other, headers={"Authorization": f"Bearer {token}"})
                ).status_code == 404
            with wave.open(io.BytesIO(r.content), "rb") as w:
                audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            assert len(audio) == 16000 and tone_power(audio, 600.0) > 0.5  # the caller's 2 s
            await second.dial()
            offer2 = await next_of(agent, ContactOffer, timeout=20)  # the first one is still open
            assert offer2.task == "voicemail" and offer2.contact_id != offer.contact_id
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer2.contact_id)
            for task in (offer, offer2):
                await agent.hangup(task.contact_id)
                ended = await next_of(agent, ContactEnded, lambda e, c=task.contact_id: e.contact_id == c)
                assert ended.by == "agent"
            await agent.wrap_up(offer.contact_id, "follow_up", notes="call back tomorrow")
            await agent.wrap_up(offer2.contact_id, "follow_up")
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["disposition"] == "follow_up" and record["agent_id"] == t.agents["agent0@example.com"]
        assert record["attributes"]["kind"] == "voicemail" and record["attributes"]["voicemail_of"] == vm.of
        assert record["outcome"] == "handled"
        assert not (infra.data_dir / "voicemail" / f"{vm.of}.wav").exists()  # sealed: no plain copy left
        with _sdk(t) as sdk:
            assert [v["id"] for v in sdk.contacts.get(vm.of).voicemails] == [offer.contact_id]
            (listed,) = sdk.recordings.list(contact=vm.of, kind="voicemail").items
            assert (listed.id, listed.kind, listed.left_on, listed.law) == (
                offer.contact_id,
                "voicemail",
                vm.of,
                "L16",
            )
    finally:
        caller.close()
        second.close()
