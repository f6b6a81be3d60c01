"""An agent at a SIP desk phone (SIPp as the phone) with its client open: the client opens no WebRTC leg
(the offer says audio "phone"), the phone rings and its own pick-up (after 3 s) answers and carries the
audio both ways, the caller hanging up sends the phone a BYE, and an offer nobody answers is CANCELled."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer, ContactWithdrawn

from tests.e2e.first_call.conftest import (
    PhoneCaller,
    Stack,
    Tenant,
    make_tenant,
    next_of,
    tone_power,
    wait_contact,
)
from tests.service_procs import free_port
from tests.sipp_uac import sipp_command

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"
)

CALLER_HZ = 600.0
_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="desk phone">
  <recv request="INVITE"/>
  <send><![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
"""
PICK_UP_AFTER_3S = (
    _HEAD
    + """  <pause milliseconds="3000"/>
  <send retrans="500"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv request="ACK"/>
  <recv request="BYE" timeout="30000"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""
)
NEVER_ANSWERS = (
    _HEAD
    + """  <recv request="CANCEL" timeout="30000"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[

SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [cseq] INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"""
)


async def _phone(t: Tenant, tmp_path: Path, scenario: str) -> asyncio.subprocess.Process:
    port = free_port()
    with t.client() as client:
        r = client.patch(
            f"/v1/agents/{t.agents['agent0@example.com']}", json={"endpoint": f"sip:ada@127.0.0.1:{port}"}
        )
        assert r.status_code == 200, r.text
    (tmp_path / "phone.xml").write_text(scenario)
    phone = await asyncio.create_subprocess_exec(
        *sipp_command(port),
        *["-sf", "phone.xml", "-rtp_echo", "-m", "1", "-timeout", "40"],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.3)  # SIPp binds its port
    return phone


async def test_the_desk_phone_rings_its_pick_up_answers_and_it_gets_the_bye(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    phone = await _phone(t, tmp_path, PICK_UP_AFTER_3S)
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    try:
        # The desktop or `agent connect --auto-answer` is open too: it must neither make a leg nor answer.
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            assert offer.audio == "phone"
            await asyncio.sleep(2.0)
            assert agent.leg(offer.contact_id) is None
            ringing = await wait_contact(t, offer.contact_id, "offered")
            assert "agent_phone_answered" not in [e["event"] for e in ringing["timeline"]]
            await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
            await asyncio.sleep(0.5)
            mark = caller.mark()
            await asyncio.sleep(1.5)
            echoed = caller.pcm_since(mark)  # the caller's tone, back through the phone: both ways
            assert len(echoed) > 6000 and tone_power(echoed, CALLER_HZ) > 0.5
            await caller.hang_up()
            await next_of(agent, ContactEnded)
            assert await asyncio.wait_for(phone.wait(), 10) == 0, "the phone got no BYE"
        record = await wait_contact(t, offer.contact_id, "ended")
        events = {e["event"]: e["at"] for e in record["timeline"]}
        assert record["outcome"] == "handled"
        assert events["agent_phone_answered"] > events["offered"]
    finally:
        caller.close()
        if phone.returncode is None:
            phone.kill()
            await phone.wait()


async def test_a_desk_phone_nobody_answers_gets_a_cancel(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, offer_timeout_s=5)
    phone = await _phone(t, tmp_path, NEVER_ANSWERS)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            withdrawn = await next_of(agent, ContactWithdrawn, timeout=15)
            assert withdrawn.contact_id == offer.contact_id and withdrawn.reason == "no_answer"
            assert await asyncio.wait_for(phone.wait(), 10) == 0, "the phone was not CANCELled"
    finally:
        caller.close()
        if phone.returncode is None:
            phone.kill()
            await phone.wait()
