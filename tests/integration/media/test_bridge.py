"""The bridge over the wire: a raw SIP caller (PCMU) bridged to an aiortc agent in the test process, each
party's audio checked by what the other actually hears (Goertzel): both directions, mute, hold of the
agent (the agent hears music, the caller nothing), the recording tap (two channels, a pause leaves a gap
marker and none of the paused audio), unbridge, and the end of a leg releasing the bridge."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import numpy as np

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.media.rtp.g711 import G711, ulaw_decode
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from services.recording.chunks import shipped_spool

from .harness import Events, answered_call, send_audio, send_rfc4733, tone_power
from .sipclient import UdpSip, sdp


def _recv_request(client: UdpSip, method: str) -> bytes | None:
    """The next request of `method`, skipping late provisional responses of earlier transactions."""
    for _ in range(10):
        data = client.recv(3.0)
        if data is None or data.startswith(method.encode() + b" "):
            return data
    return None


def _ok(req: bytes, body: bytes) -> bytes:
    head = req.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    out = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContact: <sip:caller@127.0.0.1>\r\n"
    if body:
        out += "Content-Type: application/sdp\r\n"
    return (out + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


class Agent:
    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.leg = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU, on_audio=self.heard.append)

    def since(self, start: int) -> np.ndarray:
        frames = self.heard[start:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)

    async def send(self, samples: np.ndarray) -> None:
        for start in range(0, len(samples), 160):
            self.leg.send_audio(samples[start : start + 160])
            await asyncio.sleep(0.02)


class CallerEar:
    """Everything the caller receives, in a thread, as decoded PCMU (silence packets included)."""

    def __init__(self, caller) -> None:  # type: ignore[no-untyped-def]
        self.caller = caller

    def mark(self) -> int:
        return len(self.caller.rtp.packets)

    def since(self, start: int) -> np.ndarray:
        packets = [p for p in self.caller.rtp.packets[start:] if p.payload_type == 0]
        return ulaw_decode(b"".join(p.payload for p in packets)).astype(np.float64)


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _command(events: Events, cmd) -> Reply:  # type: ignore[no-untyped-def]
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.{cmd.name}", encode(cmd), timeout=10)
    return decode(msg.data, Reply)


async def _both_talk(events: Events, caller, agent: Agent, ear: CallerEar, seconds: float = 1.2):  # type: ignore[no-untyped-def]
    """The caller says 600 Hz while the agent says 1 kHz; returns (agent heard, caller heard)."""
    a0, c0 = len(agent.heard), ear.mark()
    await asyncio.gather(
        asyncio.to_thread(send_audio, caller, _tone(600, seconds), lead_silence=0.0),
        agent.send(_tone(1000, seconds)),
    )
    await asyncio.sleep(0.3)
    return agent.since(a0), ear.since(c0)


async def test_caller_and_agent_bridged_mute_hold_record_unbridge(media_edge, infra) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    extra: list[object] = []

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        extra.append(decode(msg.data, ev.CallRecording))

    await events.nc.subscribe(f"sb.{events.tenant}.evt.call.recording", cb=on_event)
    caller = await answered_call(media_edge.port, media_edge.flow_number, events)
    cid, tenant = caller.platform_call_id, events.tenant
    listening = asyncio.create_task(asyncio.to_thread(caller.rtp.receive_for, 25.0))
    ear = CallerEar(caller)
    agent = Agent()
    try:
        leg_id = uuid.uuid4()
        offer = ev.MediaWebRtcOffer(
            tenant_id=tenant,
            leg_id=leg_id,
            agent_id="agent-2",
            sdp=await agent.leg.create_offer(),
            call_id=cid,
        )
        reply = await _command(events, offer)
        assert reply.ok, reply
        await agent.leg.accept_answer(str(reply.data["sdp"]))
        await _wait(lambda: agent.leg.state is LegState.CONNECTED)
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == leg_id)

        # Bad bridges are refused clearly; a good one joins both ways.
        self_bridge = await _command(events, ev.MediaBridge(tenant_id=tenant, call_id=cid, other_call_id=cid))
        assert not self_bridge.ok and self_bridge.code == "invalid"
        nowhere = await _command(
            events, ev.MediaBridge(tenant_id=tenant, call_id=cid, other_call_id=uuid.uuid4())
        )
        assert not nowhere.ok and nowhere.code == "not_found"
        not_bridged = await _command(events, ev.MediaMute(tenant_id=tenant, call_id=cid))
        assert not not_bridged.ok and not_bridged.code == "state"
        bridged = await _command(events, ev.MediaBridge(tenant_id=tenant, call_id=cid, other_call_id=leg_id))
        assert bridged.ok and bridged.data["path"] == "pcm", bridged
        again = await _command(events, ev.MediaBridge(tenant_id=tenant, call_id=leg_id, other_call_id=cid))
        assert not again.ok and again.code == "conflict"

        record = await _command(events, ev.MediaRecordStart(tenant_id=tenant, call_id=cid))
        assert record.ok and record.data["spool"] == str(cid)

        # Both ways.
        heard_by_agent, heard_by_caller = await _both_talk(events, caller, agent, ear)
        assert tone_power(heard_by_agent, 600) > 0.2 and tone_power(heard_by_agent, 1000) < 0.01
        assert tone_power(heard_by_caller, 1000) > 0.2 and tone_power(heard_by_caller, 600) < 0.01

        # Mute the caller: the agent hears nothing of them; the caller still hears the agent.
        assert (await _command(events, ev.MediaMute(tenant_id=tenant, call_id=cid))).ok
        heard_by_agent, heard_by_caller = await _both_talk(events, caller, agent, ear)
        assert tone_power(heard_by_agent, 600) < 0.01
        assert tone_power(heard_by_caller, 1000) > 0.2
        assert (await _command(events, ev.MediaUnmute(tenant_id=tenant, call_id=cid))).ok
        heard_by_agent, _ = await _both_talk(events, caller, agent, ear, seconds=0.6)
        assert tone_power(heard_by_agent, 600) > 0.2

        # A recording pause: nothing of the paused span reaches the spool.
        assert (await _command(events, ev.MediaRecordPause(tenant_id=tenant, call_id=cid))).ok
        await _both_talk(events, caller, agent, ear, seconds=0.8)
        assert (await _command(events, ev.MediaRecordResume(tenant_id=tenant, call_id=cid))).ok

        # Hold the agent: the agent hears music, the caller hears nothing of the agent.
        assert (await _command(events, ev.MediaHold(tenant_id=tenant, call_id=leg_id))).ok
        await events.wait_for(ev.CallHeld, lambda e: e.call_id == leg_id and e.held)
        await asyncio.sleep(0.3)
        heard_by_agent, heard_by_caller = await _both_talk(events, caller, agent, ear)
        assert np.sqrt(np.mean(heard_by_agent**2)) > 300, "no music for the held agent"
        assert tone_power(heard_by_agent, 600) < 0.05
        assert tone_power(heard_by_caller, 1000) < 0.01
        assert (await _command(events, ev.MediaUnhold(tenant_id=tenant, call_id=leg_id))).ok
        heard_by_agent, heard_by_caller = await _both_talk(events, caller, agent, ear)
        assert tone_power(heard_by_agent, 600) > 0.2 and tone_power(heard_by_caller, 1000) > 0.2

        # Unbridge: both legs stay up, the recording stops.
        assert (await _command(events, ev.MediaUnbridge(tenant_id=tenant, call_id=leg_id))).ok
        unbridged = await _command(events, ev.MediaMute(tenant_id=tenant, call_id=cid))
        assert not unbridged.ok and unbridged.code == "state"
        await _wait(lambda: any(isinstance(e, ev.CallRecording) and e.state == "stopped" for e in extra))
        states = [e.state for e in extra if isinstance(e, ev.CallRecording)]
        assert states == ["started", "paused", "resumed", "stopped"]
        heard_by_agent, _ = await _both_talk(events, caller, agent, ear, seconds=0.6)
        assert tone_power(heard_by_agent, 600) < 0.01

        spool = await shipped_spool(events.nc.jetstream(), tenant, cid)
        assert spool.complete and spool.law is G711.PCMU and len(spool.pauses) == 1
        frames = np.frombuffer(spool.frames, dtype=np.uint8)
        caller_channel = ulaw_decode(frames[0::2].tobytes()).astype(np.float64)
        agent_channel = ulaw_decode(frames[1::2].tobytes()).astype(np.float64)
        assert tone_power(caller_channel, 600) > 0.1 and tone_power(caller_channel, 1000) < 0.01
        assert tone_power(agent_channel, 1000) > 0.05 and tone_power(agent_channel, 600) < 0.01
        start, end = spool.pauses[0]
        assert end - start > 0.5 * 8000  # the paused span is silence, kept only as a gap
        assert not np.any(frames[2 * start : 2 * end] != G711.PCMU.silence)

        # Bridge again, then the caller hangs up: the bridge is released, only the caller's call ends.
        assert (
            await _command(events, ev.MediaBridge(tenant_id=tenant, call_id=cid, other_call_id=leg_id))
        ).ok
        await caller.bye()
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == cid)
        assert ended.cause == "remote_bye"
        released = await _command(events, ev.MediaMute(tenant_id=tenant, call_id=leg_id))
        assert not released.ok and released.code == "state", released
        assert not events.all(ev.CallEnded, lambda e: e.call_id == leg_id)
        assert (await _command(events, ev.MediaHangup(tenant_id=tenant, call_id=leg_id))).ok
        await events.wait_for(ev.CallEnded, lambda e: e.call_id == leg_id)
    finally:
        listening.cancel()
        await agent.leg.close()
        await events.close()


async def test_two_sip_callers_are_relayed_without_decoding(media_edge) -> None:
    """SIP<->SIP, both PCMU: payloads pass untouched (the relay's counters and the legs' decode counters
    prove no decode), headers rewritten into each leg's own stream, RFC 4733 digits relayed, mute, and
    hold of one caller (music for them, silence for the other) and unhold."""
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    alice = await answered_call(media_edge.port, media_edge.flow_number, events)
    bob = await answered_call(media_edge.port, media_edge.flow_number, events)
    tenant = events.tenant
    ears = [asyncio.create_task(asyncio.to_thread(c.rtp.receive_for, 20.0)) for c in (alice, bob)]
    alice_ear, bob_ear = CallerEar(alice), CallerEar(bob)
    try:
        bridge = ev.MediaBridge(
            tenant_id=tenant, call_id=alice.platform_call_id, other_call_id=bob.platform_call_id
        )
        reply = await _command(events, bridge)
        assert reply.ok and reply.data["path"] == "passthrough"
        await asyncio.sleep(0.2)
        a0, b0 = alice_ear.mark(), bob_ear.mark()
        await asyncio.gather(
            asyncio.to_thread(send_audio, alice, _tone(600, 1.2), lead_silence=0.0),
            asyncio.to_thread(send_audio, bob, _tone(1000, 1.2), lead_silence=0.0),
        )
        await asyncio.sleep(0.3)
        heard_by_bob, heard_by_alice = bob_ear.since(b0), alice_ear.since(a0)
        assert tone_power(heard_by_bob, 600) > 0.2 and tone_power(heard_by_bob, 1000) < 0.01
        assert tone_power(heard_by_alice, 1000) > 0.2 and tone_power(heard_by_alice, 600) < 0.01
        # Bob receives one stream (the SSRC of his leg) whose sequence numbers keep rising.
        relayed = [p for p in bob.rtp.packets[b0:] if p.payload_type == 0]
        assert len({p.ssrc for p in relayed}) == 1
        seqs = [p.sequence_number for p in relayed]
        assert all((b - a) % 65536 < 100 for a, b in itertools.pairwise(seqs))

        # A digit from Alice reaches Bob as RFC 4733 (and is reported as Alice's call.dtmf).
        t0 = bob_ear.mark()
        await asyncio.to_thread(send_rfc4733, alice, "9")
        await events.wait_for(ev.CallDtmf, lambda e: e.call_id == alice.platform_call_id and e.digit == "9")
        await asyncio.sleep(0.2)
        assert any(p.payload_type == 101 for p in bob.rtp.packets[t0:])

        # Mute Alice: Bob hears nothing of her.
        assert (await _command(events, ev.MediaMute(tenant_id=tenant, call_id=alice.platform_call_id))).ok
        b1 = bob_ear.mark()
        await asyncio.to_thread(send_audio, alice, _tone(600, 0.8), lead_silence=0.0)
        await asyncio.sleep(0.2)
        assert tone_power(bob_ear.since(b1), 600) < 0.01

        assert (await _command(events, ev.MediaUnmute(tenant_id=tenant, call_id=alice.platform_call_id))).ok

        # Hold Bob (our sendonly re-INVITE): Bob hears music instead of Alice, Alice hears nothing of Bob.
        for command, answer in ((ev.MediaHold, "recvonly"), (ev.MediaUnhold, "sendrecv")):
            assert (await _command(events, command(tenant_id=tenant, call_id=bob.platform_call_id))).ok
            reinvite = await asyncio.to_thread(_recv_request, bob.client, "INVITE")
            assert reinvite is not None
            bob.client.send(_ok(reinvite, sdp(bob.rtp.port, direction=answer)))
            ack = await asyncio.to_thread(_recv_request, bob.client, "ACK")
            assert ack is not None
            await asyncio.sleep(0.3)
            a2, b2 = alice_ear.mark(), bob_ear.mark()
            await asyncio.gather(
                asyncio.to_thread(send_audio, alice, _tone(600, 1.0), lead_silence=0.0),
                asyncio.to_thread(send_audio, bob, _tone(1000, 1.0), lead_silence=0.0),
            )
            await asyncio.sleep(0.3)
            heard_by_bob, heard_by_alice = bob_ear.since(b2), alice_ear.since(a2)
            if command is ev.MediaHold:
                assert np.sqrt(np.mean(heard_by_bob**2)) > 300, "no music for the held caller"
                assert tone_power(heard_by_bob, 600) < 0.05
                assert tone_power(heard_by_alice, 1000) < 0.01
            else:
                assert tone_power(heard_by_bob, 600) > 0.2 and tone_power(heard_by_alice, 1000) > 0.2

        done = await _command(events, ev.MediaUnbridge(tenant_id=tenant, call_id=bob.platform_call_id))
        assert done.ok
        work = done.data
        assert work["forwarded"] > 100 and work["translated"] == 0  # type: ignore[operator]
        assert work["relay_decoded"] == 0 and work["frames_decoded"] == 0
        await alice.bye()
        await bob.bye()
    finally:
        for ear in ears:
            ear.cancel()
        await events.close()
