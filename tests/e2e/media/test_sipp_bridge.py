"""A SIPp caller bridged to an aiortc agent in the test process, through the media worker.

Call 1: SIPp (uac_pcap, which offers PCMA) streams an A-law 600 Hz tone with rtp_stream; the agent hears
600 Hz. Call 2: SIPp echoes (-rtp_echo) whatever reaches it; the agent sends 1 kHz and hears it come back,
which it can only do if the tone crossed the bridge to the SIP side and back. Each call: answered with the
`answer` command, the agent's offer names the SIP call (so the same worker holds both), `bridge`, then
SIPp's BYE releases the bridge and ends only the SIP call.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import nats
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed
from services.media.rtp.g711 import G711, alaw_encode
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from services.runtime.embedded import free_port
from tests.sipp_uac import sipp_command, sipp_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

KINDS = {
    "arrived": ev.CallArrived,
    "ended": ev.CallEnded,
}


def _power(samples: np.ndarray, frequency: float, rate: int = 8000) -> float:
    """Share of the signal's energy at `frequency` (1.0: a pure tone)."""
    x = samples.astype(np.float64)
    if len(x) == 0:
        return 0.0
    n = np.arange(len(x))
    power = abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / rate))) ** 2
    return float(power / ((np.sum(x * x) * len(x) / 2) or 1.0))


def _uac_pcap() -> str:
    return sipp_scenario("uac_pcap")


def _replace_play(text: str, replacement: str) -> str:
    start = text.index("<!-- Play a pre-recorded PCAP file")
    end = text.index('<pause milliseconds="1000"/>') + len('<pause milliseconds="1000"/>')
    return text[:start] + replacement + text[end:]


class Agent:
    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.leg = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMA, on_audio=self.heard.append)

    def audio_since(self, start: int) -> np.ndarray:
        frames = self.heard[start:]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    async def send(self, samples: np.ndarray) -> None:
        for start in range(0, len(samples), 160):
            self.leg.send_audio(samples[start : start + 160].astype(np.int16))
            await asyncio.sleep(0.02)


class Bus:
    def __init__(self, nc: nats.NATS, tenant: uuid.UUID) -> None:
        self.nc, self.tenant = nc, tenant
        self.seen: list[object] = []

    async def start(self) -> None:
        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            kind = KINDS.get(msg.subject.rsplit(".", 1)[-1])
            if kind is not None:
                self.seen.append(decode(msg.data, kind))

        await self.nc.subscribe(f"sb.{self.tenant}.evt.call.*", cb=on_event)
        await flushed(self.nc)

    async def command(self, cmd: object, name: str) -> Reply:
        msg = await self.nc.request(f"sb.{self.tenant}.cmd.media.{name}", encode(cmd), timeout=10)  # type: ignore[arg-type]
        return decode(msg.data, Reply)

    async def wait_for(
        self, kind: type, pred: Callable[[object], bool] = lambda e: True, timeout: float = 15.0
    ):  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.05)):
            found = [e for e in self.seen if isinstance(e, kind) and pred(e)]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind.__name__}; saw {self.seen}")


async def _bridged_call(media_edge, bus: Bus, sipp_args: list[str], cwd: Path, during) -> None:  # type: ignore[no-untyped-def]
    """Run SIPp, answer its call, bridge an agent to it, run `during(agent)`, then wait for SIPp's BYE."""
    port = free_port()
    command = [*sipp_command(port), *sipp_args]
    sipp = asyncio.create_task(
        asyncio.to_thread(subprocess.run, command, cwd=cwd, capture_output=True, text=True, timeout=60)
    )
    agent = Agent()
    try:
        known = {e.call_id for e in bus.seen if isinstance(e, ev.CallArrived)}  # type: ignore[attr-defined]
        arrived = await bus.wait_for(ev.CallArrived, lambda e: e.call_id not in known)  # type: ignore[attr-defined]
        call_id = arrived.call_id
        assert arrived.codec == "PCMA"
        assert (await bus.command(ev.MediaAnswer(tenant_id=bus.tenant, call_id=call_id), "answer")).ok
        leg_id = uuid.uuid4()
        offer = ev.MediaWebRtcOffer(
            tenant_id=bus.tenant,
            leg_id=leg_id,
            agent_id="agent-7",
            sdp=await agent.leg.create_offer(),
            call_id=call_id,
        )
        reply = await bus.command(offer, "webrtc_offer")
        assert reply.ok, reply
        await agent.leg.accept_answer(str(reply.data["sdp"]))
        for _ in range(200):
            if agent.leg.state is LegState.CONNECTED:
                break
            await asyncio.sleep(0.05)
        assert agent.leg.state is LegState.CONNECTED
        assert agent.leg.codec == "PCMA"  # the SIP leg's law: no PCMU<->PCMA step
        bridge = ev.MediaBridge(tenant_id=bus.tenant, call_id=call_id, other_call_id=leg_id)
        bridged = await bus.command(bridge, "bridge")
        assert bridged.ok and bridged.data["path"] == "pcm", bridged
        await during(agent)
        result = await sipp
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        ended = await bus.wait_for(ev.CallEnded, lambda e: e.call_id == call_id)  # type: ignore[attr-defined]
        assert ended.cause == "remote_bye"
        # The bridge is released: the agent's leg is bridged to nothing (a mute needs a bridge).
        released = await bus.command(ev.MediaMute(tenant_id=bus.tenant, call_id=leg_id), "mute")
        assert not released.ok and released.code == "state", released
        # Only the SIP call ended: the agent's leg is still up until hung up.
        assert not [e for e in bus.seen if isinstance(e, ev.CallEnded) and e.call_id == leg_id]
        assert (await bus.command(ev.MediaHangup(tenant_id=bus.tenant, call_id=leg_id), "hangup")).ok
        await bus.wait_for(ev.CallEnded, lambda e: e.call_id == leg_id)  # type: ignore[attr-defined]
    finally:
        await agent.leg.close()
        if not sipp.done():
            await asyncio.wait([sipp], timeout=60)


async def test_sipp_caller_and_aiortc_agent_hear_each_other(media_edge, tmp_path: Path) -> None:
    nc = await nats.connect(media_edge.nats_url)
    bus = Bus(nc, media_edge.tenant_id)
    await bus.start()
    target = f"127.0.0.1:{media_edge.port}"
    try:
        # 1. SIP -> agent: 3 s of 600 Hz A-law, after 2.5 s for the agent to join.
        t = np.arange(3 * 8000) / 8000
        (tmp_path / "tone600.alaw").write_bytes(
            alaw_encode((8000 * np.sin(2 * np.pi * 600 * t)).astype(np.int16))
        )
        streamed = _replace_play(
            _uac_pcap(),
            '<pause milliseconds="2500"/><nop><action><exec rtp_stream="tone600.alaw,1,8"/></action></nop>'
            '<pause milliseconds="3500"/>',
        )
        (tmp_path / "stream.xml").write_text(streamed)

        async def listen(agent: Agent) -> None:
            start = len(agent.heard)
            await asyncio.sleep(4.5)
            heard = agent.audio_since(start)
            assert _power(heard, 600.0) > 0.2, "the agent did not hear the caller's 600 Hz"
            assert _power(heard, 1000.0) < 0.01

        args = ["-sf", "stream.xml", "-s", media_edge.flow_number, target, "-m", "1", "-timeout", "40"]
        await _bridged_call(media_edge, bus, [*args, "-timeout_error"], tmp_path, listen)

        # 2. agent -> SIP (and back through SIPp's echo): the agent's 1 kHz returns.
        echo_port = free_port()
        echoing = _replace_play(
            _uac_pcap().replace("[auto_media_port]", "[media_port]"), '<pause milliseconds="7000"/>'
        )
        (tmp_path / "echo.xml").write_text(echoing)

        async def talk(agent: Agent) -> None:
            await asyncio.sleep(0.5)
            quiet = agent.audio_since(len(agent.heard) - 20)
            assert _power(quiet, 1000.0) < 0.05  # nothing of 1 kHz before the agent speaks
            start = len(agent.heard)
            t1 = np.arange(int(2.0 * 8000)) / 8000
            await agent.send((8000 * np.sin(2 * np.pi * 1000 * t1)).astype(np.int16))
            await asyncio.sleep(0.5)
            heard = agent.audio_since(start)
            assert _power(heard, 1000.0) > 0.2, "the agent's tone did not come back through the SIP side"

        args = ["-sf", "echo.xml", "-s", media_edge.flow_number, target, "-m", "1", "-timeout", "40"]
        await _bridged_call(
            media_edge, bus, [*args, "-timeout_error", "-rtp_echo", "-mp", str(echo_port)], tmp_path, talk
        )
    finally:
        await nc.close()
