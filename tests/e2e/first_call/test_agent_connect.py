"""`switchboard agent connect` (the SDK's AgentSession) answers a SIPp caller through the whole platform: a
number routed straight to a queue, routing's offer, the contact coordinator's bridge, media.

The CLI runs as a real subprocess with a profile made by `switchboard login`, as a tenant would run it:
`agent connect --auto-answer --play tone.wav --record out.wav --max-calls 1 --json`. SIPp places the call
and hangs up after a while; its SDP points the audio at a UDP socket of this test, which streams the
caller's 600 Hz (from the first packet the platform sends it: music on hold while queued) and keeps what
the caller hears. Checked: the JSON lines (the offer with its context, answered, connected, ended with
cause and duration, wrapped up, recorded), the agent's recording (16-bit mono, the caller's 600 Hz), the
caller hearing the agent's 1 kHz file, and the CLI exiting 0 after one call, signed out.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import sys
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.kernel.events import AgentStateChanged
from services.media.rtp.g711 import ulaw_decode, ulaw_encode
from services.runtime.embedded import free_port
from tests.e2e.first_call.conftest import Watch, make_tenant, sipp_uas, tone_power, trunk_to
from tests.sipp_uac import sipp_command, uac_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

SWITCHBOARD = Path(sys.executable).with_name("switchboard")
CALLER_HZ = 600.0
AGENT_HZ = 1000.0
TALK_MS = 7000  # SIPp hangs up this long after its ACK


class CallerRtp(asyncio.DatagramProtocol):
    """The caller's RTP: keeps what the platform sends and, once it knows where from, sends 600 Hz back from
    the same socket (the platform latches onto it, so both directions use this address)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.remote: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.talking: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) <= 12 or data[0] >> 6 != 2 or (data[1] & 0x7F) != 0:
            return  # PCMU only (not RTCP, not events)
        self.received.append((time.monotonic(), data[12 + 4 * (data[0] & 0x0F) :]))
        if self.remote is None:
            self.remote = addr
            self.talking = asyncio.ensure_future(self._talk())

    async def _talk(self) -> None:
        assert self.transport is not None and self.remote is not None
        start, i = time.monotonic(), 0
        while True:
            t = (np.arange(160) + i * 160) / 8000
            payload = ulaw_encode((8000 * np.sin(2 * np.pi * CALLER_HZ * t)).astype(np.int16))
            header = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 0x600600)
            self.transport.sendto(header + payload, self.remote)
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02 - time.monotonic()))

    def heard_between(self, start: float, end: float) -> np.ndarray:
        chunks = [ulaw_decode(p) for t, p in self.received if start <= t <= end]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        if self.talking is not None:
            self.talking.cancel()
        if self.transport is not None:
            self.transport.close()


def _scenario(rtp_port: int) -> str:
    """INVITE (PCMU, audio at this test's socket), ACK, talk for TALK_MS, BYE."""
    caller = '"Ada Caller" <sip:+15550177@[local_ip]:[local_port]>'
    return uac_scenario(rtp_port=rtp_port, caller=caller, hangup_after_ms=TALK_MS, name="first call")


def _tone_wav(path: Path, frequency: float, seconds: float) -> None:
    """16 kHz stereo on purpose: the agent resamples it to the leg's 8 kHz."""
    t = np.arange(int(16000 * seconds)) / 16000
    mono = (9000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(mono[:, None], 2, axis=1).tobytes())


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_agent_connect_answers_a_sipp_call_routed_to_a_queue(
    first_call_stack: Any, tmp_path: Path
) -> None:
    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    code, out, err = await _cli(env, "login", "--api-key", tenant.key, "--api-url", first_call_stack.api)
    assert code == 0, out + err
    _tone_wav(tmp_path / "tone.wav", AGENT_HZ, 10.0)
    record = tmp_path / "calls" / "{contact_id}.wav"

    agent = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD), "agent", "connect", "--email", "agent0@example.com", "--auto-answer",
        "--play", str(tmp_path / "tone.wav"), "--record", str(record), "--max-calls", "1", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[dict[str, Any]] = []
    at: dict[str, float] = {}

    async def read_until(event: str, timeout: float) -> dict[str, Any]:
        # Already printed? (`recorded` and `ended` reach the CLI by different paths, in either order.)
        for seen in lines:
            if seen["event"] == event:
                return seen
        assert agent.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(agent.stdout.readline(), max(0.01, deadline - time.monotonic()))
            if not raw:
                raise AssertionError(f"the CLI exited before {event!r}: {lines}")
            line = json.loads(raw)  # every stdout line is one JSON object
            lines.append(line)
            at.setdefault(line["event"], time.monotonic())
            if line["event"] == event:
                return line

    caller: CallerRtp | None = None
    sipp = None
    watch = await Watch.start(first_call_stack.nats_url, tenant.id)  # for the diagnosis of a failure
    try:
        await read_until("signed_in", 20)
        loop = asyncio.get_running_loop()
        rtp_port = free_port()
        _, caller = await loop.create_datagram_endpoint(CallerRtp, local_addr=("127.0.0.1", rtp_port))
        (tmp_path / "caller.xml").write_text(_scenario(rtp_port))
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", "caller.xml", "-s", tenant.number,
            f"127.0.0.1:{first_call_stack.sip_port}", "-m", "1", "-timeout", "40", "-timeout_error",
            "-trace_err", cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

        offer = await read_until("offer", 20)
        context = offer["context"]
        assert context["caller"]["number"].endswith("15550177"), context
        assert context["dialled"] == tenant.number
        assert context["queue"]["name"] == "Support" and context["queue"]["id"] == tenant.queue_id
        assert context["ivr"] is None  # straight to the queue, no flow
        assert context["waited"]["queue_s"] >= 0 and context["history"]["today"] >= 0
        contact_id = offer["contact_id"]
        assert offer["offer_id"].startswith(contact_id)

        assert (await read_until("answered", 15))["contact_id"] == contact_id
        connected = await read_until("connected", 15)
        assert connected["contact_id"] == contact_id and connected["leg_id"]
        ended = await read_until("ended", TALK_MS / 1000 + 15)
        assert ended["contact_id"] == contact_id
        assert ended["by"] == "caller" and ended["cause"], ended
        assert 2.0 < ended["duration"] < TALK_MS / 1000 + 2, ended
        wrapped = await read_until("wrapped_up", 10)
        assert wrapped["disposition"] == "auto"
        recorded = await read_until("recorded", 10)
        assert agent.stdout is not None and agent.stderr is not None
        rest, _ = await asyncio.wait_for(asyncio.gather(agent.stdout.read(), agent.wait()), 15)
        lines += [json.loads(line) for line in rest.decode().splitlines()]
        assert agent.returncode == 0, (lines, await agent.stderr.read())
        tail = [line["event"] for line in lines[lines.index(recorded) :]]
        assert tail[-1] == "signed_out", tail
        order = [line["event"] for line in lines]
        assert order.index("ended") < order.index("recorded"), order  # the file after the call's end
        # --max-calls reached: the agent went away at once and was never available again (no new offer).
        agent_id = tenant.agents["agent0@example.com"]
        after = [
            e.new
            for e in watch.all(AgentStateChanged, lambda e: e.agent_id == agent_id)
            if e.old in ("on_contact", "wrap_up", "away")
        ]
        assert after and "available" not in after, after

        sipp_out, _ = await asyncio.wait_for(sipp.communicate(), 20)
        assert sipp.returncode == 0, sipp_out.decode(errors="replace")[-2000:]

        # The agent's recording: the caller's voice, 16-bit mono at the leg's rate, one file per contact.
        path = Path(recorded["path"])
        assert path == Path(str(record).replace("{contact_id}", contact_id))
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
            rate = w.getframerate()
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert len(audio) / rate == pytest.approx(recorded["seconds"], abs=0.05)
        assert recorded["seconds"] > 2.0
        middle = audio[int(0.5 * rate) : int(2.5 * rate)]
        assert float(np.sqrt(np.mean(middle.astype(np.float64) ** 2))) > 1000, "the recording is near silent"
        assert tone_power(middle, CALLER_HZ, rate) > 0.3, "the caller's 600 Hz is not in the recording"

        # The caller heard the agent's file (1 kHz) while connected, and not before.
        talk = caller.heard_between(at["connected"] + 0.5, at["ended"] - 0.2)
        assert len(talk) > 8000, f"{len(talk)} samples reached the caller while connected"
        assert tone_power(talk, AGENT_HZ) > 0.3, "the caller did not hear the agent's tone"
        waiting = caller.heard_between(0, at["offer"])
        assert tone_power(waiting, AGENT_HZ) < 0.05
    except BaseException:
        for name, log in first_call_stack.logs.items():
            print(f"--- {name} log ---\n{log.read_text(errors='replace')[-2500:]}")
        print("--- bus ---", *(f"{name} {event}" for name, event in watch.seen), sep="\n")
        print("--- agent connect ---", lines)
        if agent.returncode is None:
            agent.kill()
        assert agent.stderr is not None
        print("--- agent connect stderr ---", (await agent.stderr.read()).decode(errors="replace")[-3000:])
        raise
    finally:
        for proc in (agent, sipp):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        if caller is not None:
            caller.close()
        await watch.close()


async def test_agent_connect_refuses_an_unknown_agent_with_one_line(
    first_call_stack: Any, tmp_path: Path
) -> None:
    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    assert (await _cli(env, "login", "--api-key", tenant.key, "--api-url", first_call_stack.api))[0] == 0
    code, out, err = await _cli(
        env, "agent", "connect", "--email", f"{uuid.uuid4().hex}@example.com", "--json"
    )
    assert code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1, (code, out, err)
    # `agents token` prints one JSON document with a token the websocket accepts (used by the agent page).
    code, out, err = await _cli(env, "agents", "token", "agent0@example.com", "--json")
    assert code == 0, err
    issued = json.loads(out)
    assert issued["agent_id"] == tenant.agents["agent0@example.com"] and issued["expires_in"] <= 900


async def test_agent_session_commands_errors_and_token_refresh(first_call_stack: Any) -> None:
    """The SDK's AgentSession against the real API: acks and errors come back by ref, and with a token
    source the session moves to a new socket before the token expires and keeps getting offers there."""
    import switchboard
    from switchboard import agent_events as ae

    from tests.e2e.first_call.conftest import PhoneCaller

    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    issued: list[str] = []

    async def token() -> str:
        issued.append(await asyncio.to_thread(tenant.token, "agent0@example.com"))
        return issued[-1]

    # Tokens last 600 s: a margin of 597 s moves to a new socket about 3 s after each connect.
    session = switchboard.AgentSession(first_call_stack.api, token, audio=False, refresh_margin=597.0)
    caller: PhoneCaller | None = None
    async with session:
        assert session.ready is not None and session.ready.agent_id == tenant.agents["agent0@example.com"]
        assert session.ready.ice_servers == []  # none configured: host candidates only
        assert (await session.login(state="away"))["state"] == "away"
        await session.ping()
        with pytest.raises(switchboard.AgentCommandError) as refused:
            await session.accept(str(uuid.uuid4()), "someone-else#0")
        assert refused.value.code == "not_found" and refused.value.command == "accept"
        with pytest.raises(switchboard.AgentCommandError) as bad:
            await session.dtmf(str(uuid.uuid4()), "12x")
        assert bad.value.code == "bad_message"
        with pytest.raises(switchboard.AgentCommandError):
            await session.hold(str(uuid.uuid4()))  # no such contact for this agent

        # The refresh: a second token was asked for and a new socket is ready; commands work on it.
        first_ready = session.ready
        renewed = None
        while not isinstance(renewed, ae.Ready):
            renewed = await asyncio.wait_for(session.next_event(), 10)
        assert session.ready is renewed and renewed is not first_ready and len(issued) == 2
        assert (await session.set_state("available"))["state"] == "available"
        try:
            caller = PhoneCaller(first_call_stack.sip_port, tenant.number)
            await caller.dial()
            offer = None
            while offer is None:
                event = await asyncio.wait_for(session.next_event(), 15)
                if isinstance(event, ae.ContactOffer):
                    offer = event
            assert offer.context.dialled == tenant.number and offer.context.queue is not None
            assert offer.context.queue.name == "Support"
            await caller.hang_up()
            while True:
                event = await asyncio.wait_for(session.next_event(), 15)
                assert not isinstance(event, ae.ContactOffer), "the offer came twice"
                if isinstance(event, ae.ContactWithdrawn):
                    assert event.contact_id == offer.contact_id and event.reason == "caller_hung_up"
                    break
        finally:
            if caller is not None:
                caller.close()
        await session.logout()
        assert not session.signed_in
    with pytest.raises(switchboard.AgentClosedError):
        await session.ping()


async def test_agent_connect_signs_out_on_ctrl_c(first_call_stack: Any, tmp_path: Path) -> None:
    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    assert (await _cli(env, "login", "--api-key", tenant.key, "--api-url", first_call_stack.api))[0] == 0
    watch = await Watch.start(first_call_stack.nats_url, tenant.id)
    agent = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD), "agent", "connect", "--email", "agent0@example.com", "--state", "away",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        first = b""
        while b"signed_in" not in first:
            first = await asyncio.wait_for(agent.stdout.readline(), 20)
            assert first, "the CLI exited before signing in"
        assert b"as away" in first  # human output: one line per event
        agent.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(agent.communicate(), 15)
        assert agent.returncode == 0, err
        assert out.decode().splitlines()[-1].split()[1] == "signed_out", out
        # Routing saw the sign-out: the seat is free again.
        await watch.wait_for(AgentStateChanged, lambda e: e.new == "logged_out", timeout=10)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
        await watch.close()


async def test_agent_connect_dials_one_outbound_call_and_exits(first_call_stack: Any, tmp_path: Path) -> None:
    """`agent connect --dial` (synthetic monitoring): a listed number is refused with the reason (exit 1);
    then one call through the tenant's trunk (SIPp UAS echoing), the agent's tone played and heard back in
    its recording, hung up after --hangup-after, wrapped up, signed out, exit 0."""
    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    port = free_port()
    await asyncio.to_thread(trunk_to, tenant, port)
    with tenant.client() as client:
        r = client.patch(f"/v1/agents/{tenant.agents['agent0@example.com']}", json={"can_dial": True})
        assert r.status_code == 200, r.text
        assert client.post("/v1/do-not-call", json={"e164": "+15550199"}).status_code == 201
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    code, out, err = await _cli(env, "login", "--api-key", tenant.key, "--api-url", first_call_stack.api)
    assert code == 0, out + err
    code, out, err = await _cli(
        env, "agent", "connect", "--email", "agent0@example.com", "--dial", "+15550199"
    )
    assert code == 1 and "do-not-call list" in err and err.startswith("error: "), (code, out, err)

    _tone_wav(tmp_path / "tone.wav", AGENT_HZ, 2.0)
    uas = await sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo", "-m", "1")
    try:
        code, out, err = await _cli(
            env, "agent", "connect", "--email", "agent0@example.com", "--dial", "+15550142",
            "--play", str(tmp_path / "tone.wav"), "--loop", "--record", str(tmp_path / "out.wav"),
            "--hangup-after", "2.5", "--json",
        )  # fmt: skip
        assert code == 0, (out, err)
        lines = [json.loads(line) for line in out.splitlines()]
        events = [line["event"] for line in lines]
        for name in (
            "dialled",
            "offer",
            "connected",
            "hung_up",
            "ended",
            "wrapped_up",
            "recorded",
            "signed_out",
        ):
            assert name in events, (name, events)
        dialled = next(line for line in lines if line["event"] == "dialled")
        assert dialled["to"] == "+15550142" and dialled["caller_id"] == tenant.number
        with wave.open(str(tmp_path / "out.wav"), "rb") as w:
            heard = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert tone_power(heard[-12000:], AGENT_HZ) > 0.3  # the far end echoed the agent's tone
        assert await asyncio.wait_for(uas.wait(), 10) == 0
    finally:
        if uas.returncode is None:
            uas.kill()
            await uas.wait()
