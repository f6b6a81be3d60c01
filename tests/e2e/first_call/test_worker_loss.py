"""The agent's media worker dies mid-call (kill -9, with the SIP front and two workers): the contact ends with
the cause `media_worker_lost`, the agent is told and freed (wrap-up, then available), and the call on the
other worker goes on. Without a front (one media process), the contact coordinator notices the dead
process by its registration and ends its call within seconds too, with no restart of anything."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
from switchboard import AgentSession
from switchboard.agent_events import AgentState, ContactConnected, ContactEnded, ContactOffer

from services.kernel import events as ev
from services.kernel.bus import Bus
from tests.e2e.first_call.conftest import PhoneCaller, Stack, Watch, make_tenant, next_of, wait_contact
from tests.sipp_uac import sipp_command

SIPP = Path(__file__).resolve().parent / "sipp"


def _sipp_errors(cwd: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in cwd.glob("*errors.log"))[-2000:]


async def worker_of(stack: Stack, call_id: str) -> tuple[str, str]:
    """The worker whose registration lists the call as answered (the front dispatches; the KV bucket says
    where), and the call's SIP Call-ID. Answered: the front knows a call's answer time from the registration
    alone (re-put within 0.2 s of a change), and a worker killed before that put ends its call with duration
    0; the agent's ContactConnected can come first (it did, 0.1 s after the answer, in a full run)."""
    nc = await nats.connect(stack.nats_url)
    try:
        for _ in range(50):
            # Bus.kv_latest: a bounded read (nats-py's KeyValue.keys() can wait for ever).
            for key, value in await Bus(nc).kv_latest("sb_media_workers"):
                calls = json.loads(value or b"{}").get("calls", [])
                for call in calls:
                    if call.get("call_id") == call_id and call.get("answered_at") is not None:
                        return key, str(call.get("sip_call_id"))
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    raise AssertionError(f"no worker lists call {call_id}")


async def test_media_worker_dying_ends_its_contact_and_frees_the_agent(sharded_stack: Stack) -> None:
    stack = sharded_stack
    t = make_tenant(stack.api, agents=2)
    watch = await Watch.start(stack.nats_url, t.id)
    callers = [PhoneCaller(stack.sip_port, t.number), PhoneCaller(stack.sip_port, t.number)]
    try:
        async with (
            AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as a,
            AgentSession(stack.api, t.token("agent1@example.com"), auto_answer=True) as b,
        ):
            await a.login(state="available")
            await b.login(state="available")
            for caller in callers:
                await caller.dial()
            agents = {}
            for agent in (a, b):
                offer = await next_of(agent, ContactOffer)
                agents[offer.contact_id] = agent
                await next_of(agent, ContactConnected)
            where = {cid: await worker_of(stack, cid) for cid in agents}
            assert len({w for w, _ in where.values()}) == 2, where  # least-loaded: one call on each worker
            doomed_id, survivor = list(agents)
            doomed_worker = where[doomed_id][0]
            name = next(n for n, env in stack.envs.items() if env.get("SB_MEDIA_WORKER_ID") == doomed_worker)
            stack.kill(name)
            ended = await watch.wait_for(
                ev.CallEnded, lambda e: str(e.call_id) == doomed_id and e.cause == "media_worker_lost"
            )
            assert ended.duration > 0
            agent = agents[doomed_id]
            told = await next_of(agent, ContactEnded, lambda e: e.contact_id == doomed_id)
            assert told.cause == "media_worker_lost" and told.by == "system"
            await agent.wrap_up(doomed_id, "lost")
            await next_of(agent, AgentState, lambda e: e.state == "available")
            record = await wait_contact(t, doomed_id, "ended")
            assert record["cause"] == "media_worker_lost"
            # The other worker's call goes on: its caller still receives RTP, and it has not ended.
            caller = next(c for c in callers if c.call_id == where[survivor][1])
            mark = caller.mark()
            await asyncio.sleep(1.0)
            assert len(caller.pcm_since(mark)) > 4000
            assert not watch.all(ev.CallEnded, lambda e: str(e.call_id) == survivor)
    finally:
        for c in callers:
            c.close()
        await watch.close()


async def test_a_single_media_process_killed_ends_its_call_within_seconds(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    caller = PhoneCaller(stack.sip_port, t.number)
    try:
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected)
            connected = time.monotonic()
            worker, _ = await worker_of(stack, offer.contact_id)
            assert worker.startswith("alone-"), worker  # registered with no front
            await asyncio.sleep(1.0)
            stack.kill("media")
            killed = time.monotonic()
            ended = await watch.wait_for(
                ev.CallEnded, lambda e: str(e.call_id) == offer.contact_id, timeout=10.0
            )
            noticed = time.monotonic() - killed
            # Its registration is refreshed every second and lost after 5 s without one.
            assert ended.cause == "media_worker_lost" and noticed < 8.0, (ended, noticed)
            # Talk time up to its last registration (refreshed every second), never up to the notice 5 s on.
            assert 0 < ended.duration < killed - connected + 1.0, (ended.duration, killed - connected)
            told = await next_of(agent, ContactEnded, lambda e: e.contact_id == offer.contact_id)
            assert told.cause == "media_worker_lost" and told.by == "system"
            await agent.wrap_up(offer.contact_id, "lost")
            await next_of(agent, AgentState, lambda e: e.state == "available")
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["cause"] == "media_worker_lost" and record["agent_id"] == t.agents["agent0@example.com"]
        print(f"\nmeasured: a lone media process's call ended {noticed:.2f} s after its kill -9")
    finally:
        caller.close()
        await watch.close()
        if stack.procs["media"].poll() is not None:
            stack.start("media")  # the module's next tests need media again


async def test_a_single_media_process_killed_hangs_up_its_sip_caller(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """A lone media process (no SIP front) holds its callers' dialogs itself: killed -9, it cannot send them
    a BYE. It leaves in its registration the BYE that ends each answered dialog, and the contacts
    coordinator, noticing the loss, sends it: the SIPp caller (waiting in the queue, answered) gets its BYE
    and ends cleanly, and its call ends media_worker_lost."""
    stack = first_call_stack
    t = make_tenant(stack.api)
    watch = await Watch.start(stack.nats_url, t.id)
    sipp = await asyncio.create_subprocess_exec(
        *sipp_command(), "-sf", str(SIPP / "waits-for-bye.xml"), "-s", t.number, f"127.0.0.1:{stack.sip_port}",
        "-m", "1", "-timeout", "40", "-timeout_error", "-trace_err",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        arrived = await watch.wait_for(ev.CallArrived, lambda e: True, timeout=15.0)
        await watch.wait_for(ev.ContactQueued, lambda e: True, timeout=10.0)  # answered, music on hold
        await asyncio.sleep(1.5)  # a registration or two carry the answered dialog
        stack.kill("media")
        killed = time.monotonic()
        out, _ = await asyncio.wait_for(sipp.communicate(), 30)
        hung_up = time.monotonic() - killed
        # SIPp exits 0 only when the BYE came (its 200 OK to it goes nowhere: nobody is left to take it).
        assert sipp.returncode == 0, _sipp_errors(tmp_path) or out.decode(errors="replace")[-2000:]
        ended = await watch.wait_for(ev.CallEnded, lambda e: e.call_id == arrived.call_id, timeout=10.0)
        assert ended.cause == "media_worker_lost", ended
        print(
            f"\nmeasured: the lone media process's SIP caller got its BYE {hung_up:.2f} s after the kill -9"
        )
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()
        await watch.close()
        if stack.procs["media"].poll() is not None:
            stack.start("media")  # the module's next tests need media again
