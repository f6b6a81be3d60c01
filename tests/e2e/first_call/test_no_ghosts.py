"""No ghosts in media, with real processes (a SIP front, two media workers, routing, IVR, the coordinator):
SIPp callers killed with -9 (no BYE, their RTP just stops) are ended by RTP inactivity (cause
`media_timeout`, a 3 s setting here) and freed everywhere: the tenant's call limit takes a new caller again,
routing offers the new caller (not a ghost) to the agent, the records say why they ended. The caller of a
call lost with its media worker gets a BYE from the front. A SIPp caller that asks for an RFC 4028 session
timer and stops refreshing is hung up before it expires (session_expired). A connected call killed with every service is
recorded after the restart as connected with its agent, talk time up to the last moment known, outcome
platform_failure."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer

from services.kernel import events as ev
from tests.e2e.first_call.conftest import (
    SHARDED_MEDIA_TIMEOUT_S,
    SHARDED_MIN_SE,
    PhoneCaller,
    Stack,
    Watch,
    make_tenant,
    next_of,
    wait_contact,
)
from tests.e2e.first_call.test_worker_loss import worker_of
from tests.sipp_uac import sipp_command

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"
)

TIMEOUT_S = SHARDED_MEDIA_TIMEOUT_S  # the sharded stack's SB_MEDIA_TIMEOUT_S
GHOSTS = 20
MIN_SE = (
    SHARDED_MIN_SE  # the sharded stack's SB_SIP_MIN_SE (90 by default): a session timer lapses in seconds
)
SIPP = Path(__file__).resolve().parent / "sipp"


async def _set_limit(infra: Any, tenant: Any, limit: int) -> None:
    conn = await asyncpg.connect(infra.app_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
            await conn.execute("UPDATE tenants SET max_concurrent_calls = $1", limit)
    finally:
        await conn.close()


async def _final_status(caller: PhoneCaller) -> int:
    await caller.dial(answer=False)
    final = await caller._final(10.0)
    return int(final[8:11])


async def test_callers_killed_without_a_bye_are_freed_by_the_media_timeout(
    sharded_stack: Stack, infra: Any, tmp_path: Any
) -> None:
    stack = sharded_stack
    t = make_tenant(stack.api)
    await _set_limit(infra, t.id, GHOSTS)
    watch = await Watch.start(stack.nats_url, t.id)
    sipp = await asyncio.create_subprocess_exec(
        *sipp_command(),
        *("-sn", "uac", "-s", t.number, f"127.0.0.1:{stack.sip_port}", "-rtp_echo"),
        *("-m", str(GHOSTS), "-r", "20", "-l", str(GHOSTS), "-d", "120000"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    extra: list[PhoneCaller] = []
    try:
        deadline = time.monotonic() + 20
        while len(watch.all(ev.ContactStateChanged, lambda e: e.new == "queued")) < GHOSTS:
            assert time.monotonic() < deadline, "the SIPp calls were not all queued"
            await asyncio.sleep(0.1)
        # Alive (SIPp echoes our music back), they hold the tenant at its limit well past the timeout.
        await asyncio.sleep(TIMEOUT_S + 1.0)
        assert not watch.all(ev.CallEnded)
        extra.append(PhoneCaller(stack.sip_port, t.number))
        assert await _final_status(extra[-1]) == 486
        sipp.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await sipp.wait()
        ghosts = {str(e.call_id) for e in watch.all(ev.ContactStateChanged, lambda e: e.new == "queued")}
        while len(watch.all(ev.CallEnded, lambda e: str(e.call_id) in ghosts)) < GHOSTS:
            assert time.monotonic() - killed < TIMEOUT_S + 3.0, "ghost calls were not ended"
            await asyncio.sleep(0.05)
        freed = time.monotonic() - killed
        ended = watch.all(ev.CallEnded, lambda e: str(e.call_id) in ghosts)
        assert {e.cause for e in ended} == {"media_timeout"}
        for call_id in list(ghosts)[:3]:
            record = await wait_contact(t, call_id, "abandoned")
            assert record["outcome"] == "abandoned_in_queue" and record["cause"] == "media_timeout"
        # Freed everywhere: a new caller is answered (the limit), and offered to the agent (routing).
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            caller = PhoneCaller(stack.sip_port, t.number)
            extra.append(caller)
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected)
            assert offer.contact_id not in ghosts
        print(
            f"\nmeasured: {GHOSTS} vanished SIP callers ended {freed:.2f} s after kill -9 (timeout {TIMEOUT_S} s)"
        )
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        for c in extra:
            c.close()
        await watch.close()


async def test_the_caller_of_a_call_lost_with_its_worker_gets_a_bye(sharded_stack: Stack) -> None:
    stack = sharded_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected)
            worker, _ = await worker_of(stack, offer.contact_id)
            name = next(n for n, env in stack.envs.items() if env.get("SB_MEDIA_WORKER_ID") == worker)
            await asyncio.sleep(1.0)
            stack.kill(name)
            killed = time.monotonic()
            await asyncio.wait_for(caller.ended_by_platform.wait(), 5.0)
            bye_after = time.monotonic() - killed
            ended = await watch.wait_for(ev.CallEnded, lambda e: str(e.call_id) == offer.contact_id)
            assert ended.cause == "media_worker_lost"
            await next_of(agent, ContactEnded, lambda e: e.contact_id == offer.contact_id)
            await agent.wrap_up(offer.contact_id, "lost")
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["cause"] == "media_worker_lost" and record["agent_id"] == t.agents["agent0@example.com"]
        print(f"\nmeasured: BYE to the caller {bye_after:.3f} s after the worker's kill -9")
    finally:
        caller.close()
        await watch.close()
        name = next((n for n, p in stack.procs.items() if p.poll() is not None), None)
        if name is not None:
            stack.start(name)  # the module's next test gets both workers again


async def test_a_connected_call_killed_with_the_whole_platform_is_recorded_as_it_was(
    sharded_stack: Stack,
) -> None:
    stack = sharded_stack
    t = make_tenant(stack.api)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected)
            await asyncio.sleep(12.0)  # past one checkpoint of the coordinator (every 10 s)
            names = list(stack.procs)
            for name in names:  # kill -9 of every service at once (the API and the agent's client stay)
                os.kill(stack.procs[name].pid, signal.SIGKILL)
            for name in names:
                stack.procs[name].wait(5)
            caller.close()  # the caller's phone gives up too
            await asyncio.sleep(3.0)
            restarted = time.time()
            for name in names:
                stack.start(name)
            ended = await next_of(agent, ContactEnded, lambda e: e.contact_id == offer.contact_id, timeout=40)
            # The restarted SIP front knows the dead workers' calls (their last registrations) and ends
            # them as of then; without a front, the coordinator's reconciliation would (platform_restart).
            assert ended.by == "system" and ended.cause in ("media_worker_lost", "platform_restart")
            await agent.wrap_up(offer.contact_id, "lost")
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["outcome"] == "platform_failure" and record["cause"] == ended.cause
        assert record["agent_id"] == t.agents["agent0@example.com"]
        connected = datetime.fromisoformat(record["connected_at"]).timestamp()
        ended_at = datetime.fromisoformat(record["ended_at"]).timestamp()
        assert ended_at < restarted  # the last moment known alive, never the restart
        assert record["talk_s"] >= 9.0 and abs(record["talk_s"] - (ended_at - connected)) < 0.01
        assert not [e for e in record["timeline"] if e["event"].startswith("abandoned")]
        print(
            f"\nmeasured: talk time kept {record['talk_s']:.1f} s of ~12 s; ended {restarted - ended_at:.1f} s before the restart"
        )
    finally:
        caller.close()


def _invite(number: str, port: int, local: int, call_id: str, session_expires: int) -> bytes:
    sdp = (
        "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {local + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:{number}@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:+15550100@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:{local}>\r\n"
        f"Supported: timer\r\nSession-Expires: {session_expires}\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


async def test_a_session_timer_is_honoured_when_the_caller_asks(sharded_stack: Stack) -> None:
    stack = sharded_stack
    t = make_tenant(stack.api)
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if data.startswith(b"SIP/2.0 ") and int(data[8:11]) >= 200:
                replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    local = transport.get_extra_info("sockname")[1]
    try:
        transport.sendto(
            _invite(t.number, stack.sip_port, local, "se-small", MIN_SE - 1), ("127.0.0.1", stack.sip_port)
        )
        small = await asyncio.wait_for(replies.get(), 10)
        assert small.startswith(b"SIP/2.0 422") and f"Min-SE: {MIN_SE}".encode() in small
        transport.sendto(_invite(t.number, stack.sip_port, local, "se-ok", 90), ("127.0.0.1", stack.sip_port))
        ok = await asyncio.wait_for(replies.get(), 10)
        assert ok.startswith(b"SIP/2.0 200"), ok[:200]
        assert b"Session-Expires: 90;refresher=uac" in ok and b"Require: timer" in ok
    finally:
        transport.close()


def _sipp_errors(cwd: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in cwd.glob("*errors.log"))[-2000:]


async def test_a_caller_that_stops_refreshing_its_session_timer_is_ended_session_expired(
    sharded_stack: Stack, tmp_path: Path
) -> None:
    """A SIPp caller asks for Session-Expires 6 s (refresher: the caller), keeps its RTP flowing, and never
    refreshes: the platform sends it a BYE before the 6 s are up (RFC 4028 §10: at 6 - 6/3 = 4 s), and the
    call's record says session_expired."""
    stack = sharded_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    try:
        started = time.monotonic()
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(), "-sf", str(SIPP / "session-timer-lapses.xml"), "-set", "se", "6", "-s", t.number,
            f"127.0.0.1:{stack.sip_port}", "-m", "1", "-timeout", "40", "-timeout_error", "-trace_err",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sipp.communicate(), 45)
        took = time.monotonic() - started
        # SIPp succeeded only if the 200 named it the refresher and the BYE came (within its 15 s wait).
        assert sipp.returncode == 0, _sipp_errors(tmp_path) or out.decode(errors="replace")[-2000:]
        ended = await watch.wait_for(ev.CallEnded, lambda e: e.cause == "session_expired")
        # Nobody answered it (no agent signed in): it ended waiting in the queue, for that reason.
        record = await wait_contact(t, str(ended.call_id), "abandoned")
        assert record["outcome"] == "abandoned_in_queue" and record["cause"] == "session_expired", record
        # RFC 4028 §10: ended 6 - 6/3 = 4 s after the 200 OK (the arrival was a moment before it).
        assert 3.5 < record["queue_s"] < 9.0, record
        print(f"\nmeasured: the unrefreshed caller was hung up {took:.1f} s after dialling (timer 6 s)")
    finally:
        await watch.close()
