"""WebRTC legs in the media worker, over NATS: an aiortc peer in the test process (the "browser", with the
same ICE host-address hook) offers through `webrtc_offer`, connects over DTLS-SRTP, its in-band DTMF is
detected by the worker, and a prompt the worker plays to the leg is heard by the peer (Goertzel)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed
from services.media.dsp.tones import dtmf_tone
from services.media.rtp.g711 import G711, ulaw_encode
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from tests.unit.media.webrtc.test_ice import deafen

from .harness import Events, tone_power


class Browser:
    """An aiortc peer that records what it hears (8 kHz int16)."""

    def __init__(self, law: G711 = G711.PCMU) -> None:
        self.heard: list[np.ndarray] = []
        self.leg = WebRtcLeg(WebRtcConfig(), peer_law=law, on_audio=self.heard.append)

    def audio_since(self, start: int) -> np.ndarray:
        frames = self.heard[start:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)

    async def send(self, samples: np.ndarray) -> None:
        """Queue audio in real time (the leg's outbound queue holds only 10 frames)."""
        for start in range(0, len(samples), 160):
            self.leg.send_audio(samples[start : start + 160].astype(np.int16))
            await asyncio.sleep(0.02)


async def signals(events: Events) -> list[ev.WebRtcSignal]:
    seen: list[ev.WebRtcSignal] = []

    async def on_signal(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(decode(msg.data, ev.WebRtcSignal))

    await events.nc.subscribe(f"sb.{events.tenant}.evt.webrtc.signal", cb=on_signal)
    await flushed(events.nc)
    return seen


async def offer(events: Events, browser: Browser, *, call_id: uuid.UUID | None = None) -> uuid.UUID:
    leg_id = uuid.uuid4()
    command = ev.MediaWebRtcOffer(
        tenant_id=events.tenant,
        leg_id=leg_id,
        agent_id="agent-1",
        sdp=await browser.leg.create_offer(),
        call_id=call_id,
    )
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.webrtc_offer", encode(command), timeout=10)
    reply = decode(msg.data, Reply)
    assert reply.ok, reply
    assert reply.data["leg_id"] == str(leg_id)
    answer = reply.data["sdp"]
    assert isinstance(answer, str) and "UDP/TLS/RTP/SAVPF" in answer and "a=fingerprint:sha-256" in answer
    await browser.leg.accept_answer(answer)
    return leg_id


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_a_browser_leg_connects_sends_digits_and_hears_a_prompt(media_edge, infra) -> None:
    folder = infra.data_dir / "test-prompts"
    folder.mkdir(exist_ok=True)
    t = np.arange(8000 * 2) / 8000
    (folder / "webrtc700.ulaw").write_bytes(
        ulaw_encode((8000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16))
    )
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    seen = await signals(events)
    browser = Browser()
    try:
        leg_id = await offer(events, browser)
        await wait_until(lambda: browser.leg.state is LegState.CONNECTED)
        browser.leg.assert_dtls_srtp()
        # The worker says the leg is up: webrtc.signal(state=connected) and call.answered for its call id.
        await wait_until(lambda: any(s.leg_id == leg_id and s.state == "connected" for s in seen))
        await events.wait_for(ev.CallAnswered, lambda e: e.call_id == leg_id)
        assert [s.agent_id for s in seen if s.leg_id == leg_id] == ["agent-1"]

        # A tone from the browser (DTMF "8", in-band) is detected by the worker.
        await browser.send(np.concatenate([np.zeros(1600), dtmf_tone("8", 0.1), np.zeros(1600)]))
        dtmf = await events.wait_for(ev.CallDtmf, lambda e: e.call_id == leg_id)
        assert (dtmf.digit, dtmf.source) == ("8", "inband")

        # A prompt played by the worker to the leg is heard by the browser.
        start = len(browser.heard)
        play = ev.MediaPlay(tenant_id=events.tenant, call_id=leg_id, file="test-prompts/webrtc700.ulaw")
        assert (await events.command(play)).ok
        done = await events.wait_for(ev.CallPlayFinished, lambda e: e.play_id == play.id)
        assert done.reason == "done"
        await asyncio.sleep(0.3)
        heard = browser.audio_since(start)
        assert tone_power(heard, 700.0) > 0.3 and tone_power(heard, 1200.0) < 0.01

        await _restart_over_a_new_path(events, browser, leg_id, folder)

        # Hangup ends the leg: call.ended and webrtc.signal(ended).
        assert (await events.command(ev.MediaHangup(tenant_id=events.tenant, call_id=leg_id))).ok
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == leg_id)
        assert ended.cause == "normal_clearing"
        # call.quality at the leg's end, from the leg's getStats (RTCP) figures.
        quality = await events.wait_for(ev.CallQuality, lambda e: e.call_id == leg_id)
        assert quality.packets_received > 50 and quality.packets_sent > 50 and 1.0 <= quality.mos <= 4.5
        await wait_until(lambda: any(s.leg_id == leg_id and s.kind == "ended" for s in seen))
    finally:
        await browser.leg.close()
        await events.close()


async def _restart(events: Events, leg_id: uuid.UUID, sdp: str, agent_id: str = "agent-1") -> Reply:
    command = ev.MediaWebRtcRestart(tenant_id=events.tenant, leg_id=leg_id, agent_id=agent_id, sdp=sdp)
    msg = await events.nc.request(f"sb.{events.tenant}.cmd.media.webrtc_restart", encode(command), timeout=10)
    return decode(msg.data, Reply)


async def _restart_over_a_new_path(events: Events, browser: Browser, leg_id: uuid.UUID, folder) -> None:  # type: ignore[no-untyped-def]
    """The browser's network path goes (its old sockets hear nothing) and it restarts ICE through the worker's
    `webrtc_restart`: a prompt is heard again over the new pair, the call never ended."""
    link = browser.leg.link
    assert link is not None
    deafen(browser.leg)
    offer = await browser.leg.create_restart_offer()
    assert not (await _restart(events, leg_id, offer, agent_id="agent-2")).ok  # not that agent's leg
    reply = await _restart(events, leg_id, offer)
    assert reply.ok and isinstance(reply.data["sdp"], str), reply
    await browser.leg.accept_answer(reply.data["sdp"])
    await wait_until(lambda: link.restarts == 1, timeout=5)
    refused = await _restart(events, leg_id, offer)  # the same credentials again: no restart
    assert not refused.ok and refused.code == "webrtc" and "only an ICE restart" in (refused.error or ""), (
        refused
    )
    start = len(browser.heard)
    play = ev.MediaPlay(tenant_id=events.tenant, call_id=leg_id, file="test-prompts/webrtc700.ulaw")
    assert (await events.command(play)).ok
    await events.wait_for(ev.CallPlayFinished, lambda e: e.play_id == play.id)
    await asyncio.sleep(0.3)
    assert tone_power(browser.audio_since(start), 700.0) > 0.3
    assert not events.all(ev.CallEnded, lambda e: e.call_id == leg_id)


async def test_a_bad_offer_gets_a_clear_error(media_edge) -> None:
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    try:
        command = ev.MediaWebRtcOffer(
            tenant_id=events.tenant, leg_id=uuid.uuid4(), agent_id="a", sdp="v=0\r\nnonsense"
        )
        msg = await events.nc.request(
            f"sb.{events.tenant}.cmd.media.webrtc_offer", encode(command), timeout=10
        )
        reply = decode(msg.data, Reply)
        assert not reply.ok and reply.code == "webrtc" and reply.error
        # An ICE candidate for a leg nobody holds gets no answer (the API times out into a clear error).
        ice = ev.MediaWebRtcIce(tenant_id=events.tenant, leg_id=uuid.uuid4(), agent_id="a", candidate="")
        try:
            await events.nc.request(f"sb.{events.tenant}.cmd.media.webrtc_ice", encode(ice), timeout=0.5)
            raise AssertionError("a worker answered for a leg it does not hold")
        except TimeoutError:
            pass
    finally:
        await events.close()


async def test_an_agent_signed_out_after_its_grace_loses_its_legs(media_edge) -> None:
    # Routing signs an agent out when its socket stayed away past the grace (reason "disconnected"); its
    # legs end with it. A sign-out for another reason, or of another agent, leaves them alone.
    events = await Events.connect(media_edge.nats_url, media_edge.tenant_id)
    browser = Browser()
    try:
        leg_id = await offer(events, browser)
        subject = f"sb.{events.tenant}.evt.agent.state_changed"
        for agent, reason in (("agent-2", "disconnected"), ("agent-1", "logout_requested")):
            change = ev.AgentStateChanged(
                tenant_id=events.tenant, agent_id=agent, old="available", new="logged_out", reason=reason
            )
            await events.nc.publish(subject, encode(change))
        lost = ev.AgentStateChanged(
            tenant_id=events.tenant, agent_id="agent-1", old="away", new="logged_out", reason="disconnected"
        )
        await asyncio.sleep(0.5)
        await events.nc.publish(subject, encode(lost))
        ended = await events.wait_for(ev.CallEnded, lambda e: e.call_id == leg_id)
        assert ended.cause == "agent_disconnected" and ended.ts >= lost.ts
    finally:
        await browser.leg.close()
        await events.close()
