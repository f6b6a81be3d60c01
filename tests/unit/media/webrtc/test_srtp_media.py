"""Our own RTP/SRTP path on a WebRTC leg (issue 21 item 2), against a real aiortc peer on loopback: aiortc
does ICE and DTLS, then media runs through services.media.rtp with aiortc's DTLS-keyed pylibsrtp sessions.
Audio both ways (PCMU and Opus), RFC 4733 both ways, RTCP (our reports give the peer an RTT), and a
tampered SRTP packet is refused, counted, and never reaches the audio handler."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from services.media.rtp.g711 import G711
from services.media.webrtc import DigitSource, WebRtcConfig, WebRtcLeg

from .test_webrtc_leg import Pair as LegPair
from .test_webrtc_leg import band_energy, tone, wait_for

OURS = WebRtcConfig(own_media=True)
AIORTC = WebRtcConfig()


class Pair:
    """`server` on our path (as the media worker runs it), `browser` on aiortc's or ours."""

    def __init__(self, *, law: G711 | None, browser_own: bool = False) -> None:
        self.heard: list[np.ndarray] = []
        self.browser_heard: list[np.ndarray] = []
        self.digits: list[str] = []
        self.browser_digits: list[str] = []
        self.server = WebRtcLeg(
            OURS,
            peer_law=law,
            on_audio=self.heard.append,
            on_digit=lambda d, s: self.digits.append(d) if s is DigitSource.RFC4733 else None,
        )
        self.browser = WebRtcLeg(
            OURS if browser_own else AIORTC,
            peer_law=law,
            on_audio=self.browser_heard.append,
            on_digit=lambda d, s: self.browser_digits.append(d),
        )

    # The same offer/answer and teardown as aiortc's pair.
    connect = LegPair.connect
    close = LegPair.close


def loud(frames: list[np.ndarray]) -> np.ndarray:
    """The frames that carry the tone (not the silence around it), at least 20 of them."""
    voiced = [f for f in frames if np.sqrt(np.mean(f.astype(np.float64) ** 2)) > 2000]
    assert len(voiced) >= 20, f"only {len(voiced)} of {len(frames)} frames carry audio"
    return np.concatenate(voiced[5:])


async def _talk(pair: Pair, seconds: float) -> None:
    """1 kHz from the browser, 600 Hz from the server, 20 ms at a time on each side's clock."""
    browser_rate = pair.browser.rate
    a = tone(1000, seconds, browser_rate)
    b = tone(600, seconds, 8000)
    step_a, step_b = browser_rate // 50, 160
    for i in range(int(seconds * 50)):
        pair.browser.send_audio(a[i * step_a : (i + 1) * step_a])
        pair.server.send_audio(b[i * step_b : (i + 1) * step_b])
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("law", [G711.PCMU, None], ids=["pcmu", "opus"])
async def test_both_ways_against_aiortc_with_digits_and_rtcp(law: G711 | None) -> None:
    pair = Pair(law=law)
    try:
        await pair.connect()
        pair.server.assert_dtls_srtp()
        media = pair.server.media
        assert media is not None and pair.browser.media is None
        assert pair.server.codec == ("PCMU" if law else "opus")
        assert pair.server.rate == 8000  # our path gives the worker 8 kHz whatever the codec

        await _talk(pair, 1.6)
        await wait_for(lambda: len(pair.heard) > 40 and len(pair.browser_heard) > 40)
        assert band_energy(loud(pair.heard), 1000, 8000) > 0.4, "the browser's tone is heard by our path"
        assert band_energy(loud(pair.browser_heard), 600, pair.browser.rate) > 0.4, "our tone reaches aiortc"

        if law is not None:  # two aiortc-made Opus SDPs share no telephone-event (a browser's does)
            await pair.browser.send_digit("5")
            await pair.server.send_digit("#")
            await wait_for(lambda: pair.digits == ["5"] and pair.browser_digits == ["#"])

        # RTCP both ways: aiortc's receiver reports about our stream give our sender an RTT.
        await wait_for(lambda: media.tx.rtt is not None and media.counters.rtcp_received > 0, 6.0)
        quality = await pair.server.quality()
        assert quality.packets_received > 60 and quality.packets_sent > 60
        # Measured and sane; loopback RTT is well under a millisecond, a loaded test machine's loop is not.
        assert quality.rtt_ms is not None and 0 <= quality.rtt_ms < 1000
        assert media.counters.srtp_rejected == 0
    finally:
        await pair.close()


async def test_our_path_on_both_sides() -> None:
    pair = Pair(law=G711.PCMA, browser_own=True)
    try:
        await pair.connect()
        assert pair.browser.media is not None and pair.server.codec == "PCMA"
        media = pair.server.media
        assert media is not None
        # SRTP goes from aioice's sockets straight to our path, not through its STUN parse and
        # data_received (which still carry STUN and DTLS).
        protocols = list(media._connection.connection._protocols)
        via_aioice: list[bytes] = []
        original = media._connection.data_received
        media._connection.data_received = lambda data, component: (
            via_aioice.append(data) if 127 < data[0] < 192 else None,
            original(data, component),
        )
        await _talk(pair, 1.0)
        await wait_for(lambda: len(pair.heard) > 30 and len(pair.browser_heard) > 30)
        assert band_energy(loud(pair.heard), 1000, 8000) > 0.4
        assert band_energy(loud(pair.browser_heard), 600, 8000) > 0.4
        assert media.counters.rtp_received > 30 and via_aioice == []
        media._connection.data_received = original
    finally:
        await pair.close()
    # Closed: aioice's sockets are its own again.
    assert all("datagram_received" not in vars(p) for p in protocols)


async def test_ice_sockets_are_read_on_the_tick_and_dtls_still_reaches_aiortc() -> None:
    # The server leg reads its ICE sockets on its own tick (TickReader; the worker's clock does the
    # same for its legs): SRTP goes to our path with its arrival time, the data channel's DTLS records
    # still reach aiortc (a digit over the channel), and at the end aioice reads its sockets again.
    pair = Pair(law=G711.PCMU)
    channel_digits: list[str] = []
    pair.server.on_digit = lambda d, s: channel_digits.append(d) if s is DigitSource.DATA_CHANNEL else None
    try:
        await pair.connect()
        media, reader = pair.server.media, pair.server._own_reader
        assert media is not None and reader is not None and media.reader is reader
        protocols = list(media._connection.connection._protocols)
        assert protocols
        for protocol in protocols:
            assert reader.holds(protocol.transport._sock) and not protocol.transport.is_reading()
        read_before = reader.datagrams
        await _talk(pair, 0.6)
        await wait_for(lambda: len(pair.heard) > 20)
        assert band_energy(loud(pair.heard), 1000, 8000) > 0.4
        assert reader.datagrams - read_before >= 20 and media.counters.rtp_received >= 20
        await wait_for(lambda: pair.browser.channel is not None and pair.browser.channel.readyState == "open")
        pair.browser.send_channel_digit("7")
        await wait_for(lambda: channel_digits == ["7"])
    finally:
        await pair.close()
    assert all(p.transport.is_closing() or p.transport.is_reading() for p in protocols)
    assert reader.count == 0


async def test_tampered_srtp_is_refused_counted_and_never_heard() -> None:
    pair = Pair(law=G711.PCMU)
    try:
        await pair.connect()
        media = pair.server.media
        assert media is not None
        # Capture what the browser really sends (SRTP from aiortc's sender, DTLS-keyed), as aioice's
        # socket hands it to our path.
        captured: list[bytes] = []
        original = media.receive
        media.receive = lambda data, now: (captured.append(data), original(data, now))  # type: ignore[method-assign]
        await _talk(pair, 0.4)
        await wait_for(lambda: len(captured) > 5)
        media.receive = original  # type: ignore[method-assign]
        genuine = next(p for p in captured if not 192 <= p[1] <= 223)

        heard_before = len(pair.heard)
        received_before = media.counters.rtp_received
        now = asyncio.get_running_loop().time()
        for flip in (20, len(genuine) - 1):  # a payload octet; the authentication tag
            tampered = bytearray(genuine)
            tampered[flip] ^= 0x40
            media.receive(bytes(tampered), now)
        media.receive(genuine, now)  # a replay of a packet already taken
        forged = bytes(genuine[:12]) + bytes(len(genuine) - 12)  # a header with no valid tag
        media.receive(forged, now)
        assert media.counters.srtp_rejected == 4
        assert media.counters.rtp_received == received_before
        pushed = media.jitter.stats.accepted
        for _ in range(5):
            media.tick(asyncio.get_running_loop().time())
        assert media.jitter.stats.accepted == pushed
        assert len(pair.heard) - heard_before <= 5  # only frames already buffered before the tampering
    finally:
        await pair.close()


def test_the_path_is_off_unless_configured() -> None:
    assert dataclasses.replace(AIORTC).own_media is False and OURS.own_media is True
