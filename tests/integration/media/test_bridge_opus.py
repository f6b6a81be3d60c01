"""A SIP G.711 caller bridged to an Opus WebRTC agent: the agent's aiortc peer offers Opus only, the worker
answers Opus (48 kHz inside aiortc, resampled to and from the worker's 8 kHz), and each party hears the
other's tone at the right frequency and level (a missing or wrong resampling step moves a tone by a factor
of six); the recording tap still writes two PCMU channels."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
from aiortc import RTCRtpSender

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.media.rtp.g711 import G711, ulaw_decode
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from services.recording.chunks import shipped_spool

from .harness import Events, answered_call, send_audio, tone_power

AMPLITUDE = 8000.0
SEND_QUEUE_FRAMES = 100  # 2 s of 48 kHz frames waiting in the agent's leg: a whole tone, sent on its clock


def _tone(frequency: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (AMPLITUDE * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


class OpusAgent:
    """An aiortc peer that offers Opus (and telephone-event) and nothing else, hearing 48 kHz frames."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.connected = asyncio.Event()
        self.leg = WebRtcLeg(
            WebRtcConfig(),
            peer_law=None,
            on_audio=self.heard.append,
            on_state=lambda state: self.connected.set() if state is LegState.CONNECTED else None,
            send_queue_frames=SEND_QUEUE_FRAMES,
        )
        capabilities = RTCRtpSender.getCapabilities("audio").codecs
        self.leg._add_transceiver().setCodecPreferences(
            [c for c in capabilities if c.mimeType in ("audio/opus", "audio/telephone-event")]
        )

    def since(self, start: int) -> np.ndarray:
        frames = self.heard[start:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)

    async def send(self, samples: np.ndarray) -> None:
        """All at once: the leg's own 20 ms clock paces them. A loop here pushing a frame every 20 ms ran
        late on a loaded machine, and the leg sent silence meanwhile (gaps of 5-12 frames in the tone)."""
        assert len(samples) <= SEND_QUEUE_FRAMES * 960
        self.leg.send_audio(samples)


async def _command(events: Events, cmd) -> Reply:  # type: ignore[no-untyped-def]
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.{cmd.name}", encode(cmd), timeout=10)
    return decode(msg.data, Reply)


async def test_sip_pcmu_caller_bridged_to_an_opus_agent(media_edge, infra) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    cid, tenant = caller.platform_call_id, events.tenant
    listening = asyncio.create_task(asyncio.to_thread(caller.rtp.receive_for, 15.0))
    agent = OpusAgent()
    try:
        leg_id = uuid.uuid4()
        offer = await agent.leg.create_offer()
        assert "PCMU/8000" not in offer and "opus/48000" in offer
        reply = await _command(
            events, ev.MediaWebRtcOffer(tenant_id=tenant, leg_id=leg_id, agent_id="a", sdp=offer, call_id=cid)
        )
        assert reply.ok, reply
        assert reply.data["codec"] == "opus"
        # Voice settings asked of the browser: mono, about 32 kbit/s.
        assert "stereo=0" in reply.data["sdp"] and "maxaveragebitrate=32000" in reply.data["sdp"]
        await agent.leg.accept_answer(str(reply.data["sdp"]))
        assert agent.leg.codec == "opus" and agent.leg.rate == 48000
        await asyncio.wait_for(agent.connected.wait(), 10)
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == leg_id)

        bridged = await _command(events, ev.MediaBridge(tenant_id=tenant, call_id=cid, other_call_id=leg_id))
        assert bridged.ok and bridged.data["path"] == "pcm"
        record = await _command(events, ev.MediaRecordStart(tenant_id=tenant, call_id=cid))
        assert record.ok and record.data["spool"] == str(cid)
        await asyncio.sleep(0.3)

        # The caller says 600 Hz (8 kHz PCMU), the agent 1 kHz (48 kHz into Opus), at the same time.
        a0, c0 = len(agent.heard), len(caller.rtp.packets)
        await asyncio.gather(
            asyncio.to_thread(send_audio, caller, _tone(600, 1.2, 8000), lead_silence=0.0),
            agent.send(_tone(1000, 1.2, 48000)),
        )
        await asyncio.sleep(0.3)
        heard_by_agent = agent.since(a0)
        packets = [p for p in caller.rtp.packets[c0:] if p.payload_type == 0]
        heard_by_caller = ulaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)

        assert len(agent.heard[-1]) == 960  # 48 kHz frames on the Opus side
        assert tone_power(heard_by_agent, 600, 48000) > 0.2
        assert tone_power(heard_by_agent, 1000, 48000) < 0.01
        assert tone_power(heard_by_agent, 3600, 48000) < 0.01  # 600 Hz played 6x fast
        assert tone_power(heard_by_caller, 1000) > 0.2 and tone_power(heard_by_caller, 600) < 0.01
        # Levels survive both resampling steps and Opus (the loudest 0.5 s against the tone's RMS).
        sent_rms = AMPLITUDE / np.sqrt(2)
        loud_agent = np.sort(np.abs(heard_by_agent))[-24000:]
        loud_caller = np.sort(np.abs(heard_by_caller))[-4000:]
        assert 0.5 * sent_rms < _rms(loud_agent) < 1.6 * sent_rms
        assert 0.5 * sent_rms < _rms(loud_caller) < 1.6 * sent_rms

        unbridged = await _command(events, ev.MediaUnbridge(tenant_id=tenant, call_id=leg_id))
        assert unbridged.ok and unbridged.data["path"] == "pcm"
        spool = await shipped_spool(events.nc.jetstream(), tenant, cid)
        assert spool.complete and spool.law is G711.PCMU
        frames = np.frombuffer(spool.frames, dtype=np.uint8)
        caller_channel = ulaw_decode(frames[0::2].tobytes()).astype(np.float64)
        agent_channel = ulaw_decode(frames[1::2].tobytes()).astype(np.float64)
        assert tone_power(caller_channel, 600) > 0.1 and tone_power(caller_channel, 1000) < 0.01
        assert tone_power(agent_channel, 1000) > 0.05 and tone_power(agent_channel, 600) < 0.01

        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=leg_id))).ok
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == leg_id)
        await caller.bye()
    finally:
        listening.cancel()
        await agent.leg.close()
        await events.close()
