"""ICE consent freshness (RFC 7675) and ICE restarts (RFC 8445 9) on real legs on loopback: the server leg on
our media path (as the worker runs it), the browser a leg on aiortc's RTP path (so both data paths go
through the restartable ICE link).

- Consent: a browser that keeps answering the worker's checks stays up across many intervals; one that
  stops answering them loses its leg within the configured bound (and not before the checks could have
  failed), through the worker's leg-loss path (call.ended ice_failed, the `ended` signal).
- Restart: mid-call the old pair goes deaf both ways (a Wi-Fi drop, or a move to another network), audio
  stops; the browser offers new ICE credentials, the server answers with its own, and audio is back both
  ways over a new pair, on the same DTLS transport with the same SRTP sessions (no new handshake).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import Any, cast

import aioice.ice
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.messages import Event
from services.media.rtp.g711 import G711
from services.media.rtp.session import MediaClock
from services.media.webrtc import LegState, WebRtcConfig, WebRtcError, WebRtcLeg
from services.media.webrtc.calls import WebRtcCalls
from services.media.webrtc.ice import (
    DEFAULT_CONSENT_FAILURES,
    DEFAULT_CONSENT_INTERVAL_S,
    consent_bound_s,
    set_consent,
)

from .test_webrtc_leg import band_energy, tone, wait_for

INTERVAL = 0.1
FAILURES = 3
SCHEDULING_SLACK_S = 1.0
OURS = WebRtcConfig(own_media=True, consent_interval_s=INTERVAL, consent_failures=FAILURES)
AIORTC = WebRtcConfig(consent_interval_s=INTERVAL, consent_failures=FAILURES)


@pytest.fixture(autouse=True)
def _aioice_consent_restored() -> object:
    yield
    set_consent(DEFAULT_CONSENT_INTERVAL_S, DEFAULT_CONSENT_FAILURES)  # process-wide: leave aioice's own


class Pair:
    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.browser_heard: list[np.ndarray] = []
        self.server_states: list[LegState] = []
        self.server = WebRtcLeg(
            OURS, peer_law=G711.PCMU, on_audio=self.heard.append, on_state=self.server_states.append
        )
        self.browser = WebRtcLeg(AIORTC, peer_law=G711.PCMU, on_audio=self.browser_heard.append)

    async def connect(self) -> None:
        answer = await self.server.accept_offer(await self.browser.create_offer(data_channel=False))
        await self.browser.accept_answer(answer)
        await wait_for(lambda: self.server.media is not None and self.browser.state is LegState.CONNECTED)

    async def talk(self, seconds: float) -> None:
        """1 kHz from the browser, 600 Hz from the server, 20 ms at a time."""
        a, b = tone(1000, seconds, 8000), tone(600, seconds, 8000)
        for i in range(int(seconds * 50)):
            self.browser.send_audio(a[i * 160 : (i + 1) * 160])
            self.server.send_audio(b[i * 160 : (i + 1) * 160])
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.browser.close()
        await self.server.close()


def _tone_in(frames: list[np.ndarray], freq: float) -> float:
    voiced = [f for f in frames if np.abs(f).max() > 2000]
    assert len(voiced) >= 15, f"only {len(voiced)} of {len(frames)} frames carry audio"
    return band_energy(np.concatenate(voiced[3:]), freq, 8000)


def deafen(leg: WebRtcLeg) -> None:
    """Everything arriving on the leg's current ICE sockets is lost (its network went away): each socket
    is connected to a port nobody sends from, so the kernel drops every other source's datagrams, whoever
    reads the socket (the event loop, or the worker's tick). Sending still works (Linux UDP)."""
    assert leg.link is not None
    for protocol in leg.link.connection._protocols:
        with socket.socket(fileno=os.dup(protocol.transport.get_extra_info("socket").fileno())) as sock:
            sock.connect(("127.0.0.1", 9))


async def test_consent_keeps_an_answering_peer_and_ends_a_silent_ones_leg_within_the_bound() -> None:
    # The worker's own WebRTC legs (WebRtcCalls on a MediaClock), so the end is the worker's leg-loss
    # path: call.ended (cause ice_failed) and the `ended` signal naming the caller's call, on which the
    # coordinator puts a connected caller back in line (tests/unit/contacts/test_lifecycle.py
    # test_agent_connection_lost_mid_call_requeues_with_a_message).
    emitted: list[tuple[float, Event]] = []
    calls = WebRtcCalls(
        OURS,
        emit=lambda events: emitted.extend((time.monotonic(), e) for e in events),
        clock=MediaClock(),
        now=time.time,
    )
    tenant, leg_id, caller = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    browser = WebRtcLeg(AIORTC, peer_law=G711.PCMU)
    try:
        answer = await calls.offer(
            tenant_id=tenant,
            leg_id=leg_id,
            agent_id="agent-1",
            sdp=await browser.create_offer(data_channel=False),
            for_call_id=caller,
        )
        await browser.accept_answer(answer)
        await wait_for(
            lambda: browser.state is LegState.CONNECTED and calls.sessions[leg_id].call.answered_at
        )
        assert aioice.ice.CONSENT_INTERVAL == INTERVAL and aioice.ice.CONSENT_FAILURES == FAILURES
        # The leg's ICE sockets are read on the worker's tick, not by the event loop: the consent checks
        # below are answered through it.
        await wait_for(lambda: calls.sessions[leg_id].leg.media is not None)
        server_link = calls.sessions[leg_id].leg.link
        assert server_link is not None
        for protocol in server_link.connection._protocols:
            transport = cast(Any, protocol.transport)  # asyncio's selector transport
            assert calls.clock.reader.holds(transport._sock) and not transport.is_reading()
        checks: list[float] = []
        assert browser.link is not None
        browser_ice = browser.link.connection
        answering = browser_ice.request_received

        def counted(message, addr, protocol):  # type: ignore[no-untyped-def]
            checks.append(time.monotonic())
            answering(message, addr, protocol)

        browser_ice.request_received = counted  # type: ignore[method-assign]
        # Ten intervals with the browser answering: checks come, the leg stays.
        await asyncio.sleep(10 * INTERVAL)
        assert len(checks) >= 5, checks
        assert leg_id in calls.sessions and not [e for _, e in emitted if isinstance(e, ev.CallEnded)]

        # The tab vanishes: the server's checks go unanswered.
        browser_ice.request_received = lambda message, addr, protocol: None  # type: ignore[method-assign]
        silent_at = time.monotonic()
        bound = consent_bound_s(INTERVAL, FAILURES)
        await wait_for(lambda: leg_id not in calls.sessions, timeout=bound + 3.0)
        ended_at, ended = next((t, e) for t, e in emitted if isinstance(e, ev.CallEnded))
        assert ended.call_id == leg_id and ended.cause == "ice_failed", ended
        # Each of the FAILURES checks waits one STUN timeout (0.5 s) for its answer: no sooner than that;
        # and no later than the bound, give or take a loaded machine's late timers (SCHEDULING_SLACK_S).
        lost_after = ended_at - silent_at
        assert FAILURES * aioice.stun.RETRY_RTO <= lost_after <= bound + SCHEDULING_SLACK_S, (
            lost_after,
            bound,
        )
        signal = next(e for _, e in emitted if isinstance(e, ev.WebRtcSignal) and e.kind == "ended")
        assert signal.leg_id == leg_id and signal.call_id == caller and signal.agent_id == "agent-1"
    finally:
        await browser.close()
        await calls.stop()


async def test_ice_restart_brings_the_audio_back_on_a_new_pair_with_the_same_srtp_session() -> None:
    pair = Pair()
    try:
        await pair.connect()
        server_ice, browser_ice = pair.server.link, pair.browser.link
        assert server_ice is not None and browser_ice is not None
        dtls = pair.server.sender.transport
        media = pair.server.media
        assert media is not None
        keys = (dtls._rx_srtp, dtls._tx_srtp)
        first_pair = server_ice.connection._nominated[1]
        # The leg reads its ICE sockets on its tick (its own reader: no worker clock here).
        reader = pair.server._own_reader
        assert reader is not None
        old_sockets = [cast(Any, p.transport)._sock for p in server_ice.connection._protocols]
        assert old_sockets and all(reader.holds(s) for s in old_sockets)
        await pair.talk(0.6)
        assert _tone_in(pair.heard, 1000) > 0.5 and _tone_in(pair.browser_heard, 600) > 0.5

        # The network goes: nothing arrives on the old pair either way; audio stops.
        deafen(pair.server)
        deafen(pair.browser)
        await pair.talk(0.3)
        heard, browser_heard = len(pair.heard), len(pair.browser_heard)
        received = media.counters.rtp_received
        await pair.talk(0.3)
        assert media.counters.rtp_received == received  # nothing over the dead pair

        # The browser restarts ICE: new credentials both ways, a new pair, the same DTLS and SRTP.
        offer = await pair.browser.create_restart_offer()
        answer = await pair.server.restart_ice(offer)
        await pair.browser.accept_answer(answer)
        await wait_for(lambda: server_ice.restarts == 1 and browser_ice.restarts == 1, timeout=5.0)
        assert server_ice.connection._nominated[1] is not first_pair
        assert pair.server.sender.transport is dtls and dtls.state == "connected"
        assert (dtls._rx_srtp, dtls._tx_srtp) == keys and pair.server.media is media
        sent_before = media.counters.rtp_sent
        await pair.talk(0.8)
        assert _tone_in(pair.heard[heard:], 1000) > 0.5
        assert _tone_in(pair.browser_heard[browser_heard:], 600) > 0.5
        assert media.counters.rtp_received > received and media.counters.rtp_sent > sent_before
        assert media.counters.srtp_rejected == 0  # the same sessions: every packet authenticated
        # The new pair's sockets are read on the tick too; the replaced Connection's left the reader.
        new_sockets = [cast(Any, p.transport)._sock for p in server_ice.connection._protocols]
        assert all(reader.holds(s) for s in new_sockets)
        assert not any(reader.holds(s) for s in old_sockets) and reader.count == len(new_sockets)
        assert pair.server.state is LegState.CONNECTED and LegState.FAILED not in pair.server_states

        # A re-offer that is no restart (the same credentials) is refused with the reason.
        with pytest.raises(WebRtcError, match="only an ICE restart"):
            await pair.server.restart_ice(offer)
    finally:
        await pair.close()
