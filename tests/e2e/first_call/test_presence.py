"""Presence that matches reality (docs/agent-protocol.md, Reconnecting), with real processes: a headless agent
killed with -9 is signed out at the end of its tenant's grace and its seat freed; an agent whose socket is
cut for a few seconds mid-call keeps the same call and its audio both ways; one cut for longer than the
grace is signed out, and its caller hears a message and is answered by another agent. An API process
stopped (SIGSTOP: a starved CPU) past its presence lease keeps its agents when back within the grace, and
past the grace its agents are told they were signed out.

The cuts go through a small TCP proxy in front of the API (the agent's network, not the platform, fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
from switchboard import AgentSession
from switchboard.agent import RECONNECT_BACKOFF_S
from switchboard.agent_events import (
    AgentEvent,
    AgentState,
    ContactConnected,
    ContactEnded,
    ContactOffer,
    Disconnected,
    Reconnected,
    Session,
)

from services.kernel import events as ev
from tests.e2e.first_call.conftest import (
    REPO,
    PhoneCaller,
    Stack,
    Tenant,
    make_tenant,
    next_of,
    tone_power,
    tone_wav,
    wait_contact,
)
from tests.service_procs import start_api

AGENT_HZ, CALLER_HZ = 1000.0, 600.0


class CuttableProxy:
    """127.0.0.1:port -> the API. `cut(seconds)` drops every open connection and refuses new ones for that
    long, as a Wi-Fi drop would (the client sees its socket close and cannot reconnect until it is over)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refuse_until = 0.0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links.difference_update((writer, up_writer))

    def cut(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds
        for writer in list(self.links):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut(0)
        self.server.close()


def _grace(t: Tenant, seconds: int) -> None:
    with t.client() as client:
        r = client.patch("/v1/me/settings", json={"agent_grace_seconds": seconds})
        assert r.status_code == 200 and r.json()["agent_grace_seconds"] == seconds, r.text


def _logged_in(t: Tenant) -> int:
    with t.client() as client:
        return int(client.get("/v1/seats").json()["logged_in"])


AGENT_SCRIPT = """
import asyncio, os, sys
from switchboard import AgentSession
async def main():
    async with AgentSession(os.environ["API"], os.environ["TOKEN"], audio=False) as agent:
        await agent.login(state="available")
        print("signed-in", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_an_agent_killed_is_signed_out_at_the_end_of_its_grace_and_can_sign_in_again(
    first_call_stack: Stack,
) -> None:
    t = make_tenant(first_call_stack.api)
    _grace(t, 3)
    env = {**os.environ, "API": first_call_stack.api, "TOKEN": t.token("agent0@example.com")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT_SCRIPT, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"signed-in"
        assert _logged_in(t) == 1
        proc.kill()  # SIGKILL: no logout, the socket just closes
        killed = time.monotonic()
        await asyncio.sleep(2.0)
        assert _logged_in(t) == 1, "signed out before the grace ended"
        while _logged_in(t) != 0:
            assert time.monotonic() - killed < 8.0, "the seat was never freed"
            await asyncio.sleep(0.1)
        freed = time.monotonic() - killed
        assert 2.9 <= freed < 5.0, freed
        print(f"\nmeasured: seat of an agent killed -9 freed {freed:.2f} s after (grace 3 s)")
        async with AgentSession(first_call_stack.api, t.token("agent0@example.com"), audio=False) as again:
            assert (await again.login(state="available"))["state"] == "available"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


CUT_S = 5.0
# The SDK's first try after the cut ends (the back-off's running sum): 6.85 s today. Bounds measured from the
# cut get a second beyond it for the connect itself on a loaded machine (it took 7.002 s in all once at load 19,
# against a fixed 7 s bound that left 0.15 s).
RETRY_AFTER_CUT_S = next(
    sum(RECONNECT_BACKOFF_S[: i + 1])
    for i in range(len(RECONNECT_BACKOFF_S))
    if sum(RECONNECT_BACKOFF_S[: i + 1]) > CUT_S
)


async def test_a_socket_cut_mid_call_keeps_the_same_call_and_its_audio(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    _grace(t, 20)
    proxy = CuttableProxy(int(stack.api.rsplit(":", 1)[1]))
    via = await proxy.start()
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    try:
        async with AgentSession(
            via,
            t.token("agent0@example.com"),
            auto_answer=True,
            play=tone_wav(tmp_path / "agent.wav", AGENT_HZ),
            play_loop=True,
            record=tmp_path / "heard-{contact_id}.wav",
        ) as agent:
            assert not (await next_of(agent, Session)).logged_in  # the first socket's
            await agent.login(state="available")
            await caller.dial()
            offer = await next_of(agent, ContactOffer)
            await next_of(agent, ContactConnected)
            await asyncio.sleep(0.5)
            proxy.cut(CUT_S)
            cut_at = time.monotonic()
            await next_of(agent, Disconnected, timeout=3)
            mark = caller.mark()
            await asyncio.sleep(3.0)
            heard = caller.pcm_since(mark)  # while the socket is down
            assert len(heard) > 16000 and tone_power(heard, AGENT_HZ) > 0.5
            back = await next_of(agent, Reconnected, timeout=10)
            session = await next_of(agent, Session, timeout=5)
            assert time.monotonic() - cut_at < RETRY_AFTER_CUT_S + 1.0
            assert session.logged_in and session.resumed and session.state == "on_contact"
            assert [(c.contact_id, c.phase) for c in session.contacts] == [(offer.contact_id, "connected")]
            leg = agent.leg(offer.contact_id)
            assert leg is not None and leg.recorder is not None
            before = leg.recorder.seconds
            mark = caller.mark()
            await asyncio.sleep(1.5)
            assert tone_power(caller.pcm_since(mark), AGENT_HZ) > 0.5  # still heard after the reconnect
            assert leg.recorder.seconds > before + 1.0  # and the agent still hears the caller
            await agent.hangup(offer.contact_id)
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "agent" and ended.duration > 8.0
            await agent.wrap_up(offer.contact_id, "resolved")
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["outcome"] == "handled" and record["agent_id"] == t.agents["agent0@example.com"]
        assert abs(record["talk_s"] - ended.duration) < 0.5
        assert back.seconds < RETRY_AFTER_CUT_S + 1.0  # the first try after the cut got through
    finally:
        caller.close()
        await proxy.close()


async def test_a_cut_longer_than_the_grace_requeues_the_caller_to_another_agent(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api, agents=2)
    _grace(t, 2)
    proxy = CuttableProxy(int(stack.api.rsplit(":", 1)[1]))
    via = await proxy.start()
    caller = PhoneCaller(stack.sip_port, t.number, frequency=CALLER_HZ)
    play = tone_wav(tmp_path / "agent.wav", AGENT_HZ)
    try:
        async with (
            AgentSession(
                via, t.token("agent0@example.com"), auto_answer=True, play=play, play_loop=True
            ) as a,
            AgentSession(stack.api, t.token("agent1@example.com"), auto_answer=True) as b,
        ):
            await next_of(a, Session)  # the first socket's
            await a.login(state="available")
            await caller.dial()
            offer = await next_of(a, ContactOffer)
            await next_of(a, ContactConnected)
            await b.login(state="available")
            proxy.cut(6.0)
            # Past the grace the caller goes back in line and the other agent takes the call.
            again = await next_of(b, ContactOffer, timeout=10)
            assert again.contact_id == offer.contact_id
            await next_of(b, ContactConnected, timeout=10)
            # The first agent's client comes back after the cut: signed out meanwhile, it signs in again.
            await next_of(a, Reconnected, timeout=15)
            session = await next_of(a, Session, timeout=5)
            assert not session.logged_in
            assert session.contacts == []
            await next_of(a, AgentState, lambda e: e.state == "available", timeout=10)
            assert a.leg(offer.contact_id) is None  # its old leg was ended
            # Read while the other agent holds the call: leaving the block ends its leg too (and the caller
            # goes back in line, at once now that no step waits for a hangup nobody answers).
            record = await wait_contact(t, offer.contact_id, "connected")
            assert record["agent_id"] == t.agents["agent1@example.com"]
            events = [e["event"] for e in record["timeline"]]
            assert "queued" in events[events.index("connected") :], events
            causes = [e["detail"].get("cause") for e in record["timeline"]]
            assert "agent_disconnected" in causes, record["timeline"]
    finally:
        caller.close()
        await proxy.close()


def test_settings_refuse_a_grace_out_of_range(first_call_stack: Stack) -> None:
    t = make_tenant(first_call_stack.api)
    with t.client() as client:
        r = client.patch("/v1/me/settings", json={"agent_grace_seconds": 601})
        assert r.status_code in (400, 422), r.text
        assert client.get("/v1/me/settings").json()["agent_grace_seconds"] == 20  # unchanged by the refusal
    with httpx.Client(base_url=first_call_stack.api) as anon:
        assert anon.patch("/v1/me/settings", json={"agent_grace_seconds": 5}).status_code == 401


async def test_a_frozen_agent_is_noticed_in_seconds_and_signed_out_after_its_grace(
    first_call_stack: Stack,
) -> None:
    """SIGSTOP: the process is alive and its socket open, but it answers nothing (a frozen laptop, a cut
    network): the API's websocket pings notice it, then the grace runs."""
    t = make_tenant(first_call_stack.api)
    _grace(t, 2)
    env = {**os.environ, "API": first_call_stack.api, "TOKEN": t.token("agent0@example.com")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT_SCRIPT, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"signed-in"
        proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        while _logged_in(t) != 0:
            assert time.monotonic() - frozen < 15.0, "a frozen agent kept its seat"
            await asyncio.sleep(0.2)
        freed = time.monotonic() - frozen
        assert freed >= 2.0, freed
        print(
            f"\nmeasured: seat of a frozen agent (SIGSTOP) freed {freed:.2f} s after (pings 5 s + grace 2 s)"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _child_api_pid(port: int) -> int:
    """The pid of the `python -m services.api` this test process started on `port`."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().split()[3] != str(os.getpid()):
                continue
            if f"SB_HTTP_PORT={port}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no API child on port {port}")


async def _routing_state(nc: Any, t: Tenant, agent_id: str) -> str:
    cmd = ev.RoutingAgentStatus(tenant_id=t.id, agent_id=uuid.UUID(agent_id))
    reply = await nc.request(f"sb.{t.id}.cmd.routing.agent_status", msgspec.json.encode(cmd), timeout=3)
    return str(msgspec.json.decode(reply.data)["data"]["state"])


async def _events_until(agent: AgentSession, seconds: float, stop: Any) -> list[AgentEvent]:
    seen: list[AgentEvent] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(stop(e) for e in seen):
        event = await agent.next_event(timeout=max(0.05, deadline - time.monotonic()))
        if event is not None:
            seen.append(event)
    return seen


async def test_an_api_process_starved_past_its_lease_keeps_its_agents_within_the_grace(
    first_call_stack: Stack, infra: Any
) -> None:
    """SIGSTOP of the API process holding the agent's socket, for longer than its presence lease (beats
    every 0.5 s here, lease 1.5 s; grace 3 s): routing shows the agent away "disconnected" meanwhile, and
    the process's first report after SIGCONT resumes it, available (offerable) with the same socket. Stopped
    past the lease and the grace, routing signs the agent out, and the agent is told so (`agent_state`
    logged_out, reason disconnected) instead of its client showing it signed in."""
    t = make_tenant(first_call_stack.api)
    _grace(t, 3)
    agent_id = t.agents["agent0@example.com"]
    nc = await nats.connect(first_call_stack.nats_url)
    began = time.monotonic()
    with start_api(infra, SB_PRESENCE_BEAT_S="0.5") as api:
        print(f"\nAPI started in {time.monotonic() - began:.2f} s")
        pid = _child_api_pid(int(api.rsplit(":", 1)[1]))
        async with AgentSession(api, t.token("agent0@example.com"), audio=False) as agent:
            try:
                await agent.login(state="available")
                assert await _routing_state(nc, t, agent_id) == "available"
                await asyncio.sleep(1.2)  # a beat or two: the sign-in's own lease is the default 15 s
                # Within the grace: away "disconnected" from the lease's end, then back as it was.
                os.kill(pid, signal.SIGSTOP)
                stopped, seen = time.monotonic(), set()
                try:
                    while time.monotonic() - stopped < 3.0:
                        seen.add(await _routing_state(nc, t, agent_id))
                        await asyncio.sleep(0.2)
                finally:
                    os.kill(pid, signal.SIGCONT)
                assert seen == {"available", "away"} or seen == {"away"}, seen
                back = time.monotonic()
                while await _routing_state(nc, t, agent_id) != "available":
                    assert time.monotonic() - back < 3.0, "the agent did not resume after SIGCONT"
                    await asyncio.sleep(0.1)
                print(f"\nmeasured: agent available again {time.monotonic() - back:.2f} s after SIGCONT")
                events = await _events_until(
                    agent, 2.0, lambda e: isinstance(e, AgentState) and e.reason == "reconnected"
                )
                states = [(e.state, e.reason) for e in events if isinstance(e, AgentState)]
                assert ("away", "disconnected") in states and states[-1] == ("available", "reconnected"), (
                    states
                )
                assert agent.signed_in and agent.reconnects == 0

                # Past the lease and the grace: signed out, and told so.
                os.kill(pid, signal.SIGSTOP)
                try:
                    stopped = time.monotonic()
                    while await _routing_state(nc, t, agent_id) != "logged_out":
                        assert time.monotonic() - stopped < 8.0, "routing kept an agent it could not see"
                        await asyncio.sleep(0.2)
                finally:
                    os.kill(pid, signal.SIGCONT)
                told = await _events_until(
                    agent,
                    5.0,
                    lambda e: (
                        isinstance(e, AgentState) and (e.state, e.reason) == ("logged_out", "disconnected")
                    ),
                )
                assert any(
                    isinstance(e, AgentState) and (e.state, e.reason) == ("logged_out", "disconnected")
                    for e in told
                ), told
                print(f"measured: told {time.monotonic() - stopped:.2f} s after SIGSTOP: {told}")
                # The client and routing agree afterwards (the SDK signs in again after a reconnect).
                await asyncio.sleep(1.0)
                assert agent.signed_in == (await _routing_state(nc, t, agent_id) != "logged_out")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    await nc.close()
