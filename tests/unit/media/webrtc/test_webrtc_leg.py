"""A real aiortc peer pair in the test process on loopback (host-address hook, no ICE servers): DTLS-SRTP,
codec choice, a 1 kHz tone one way, RFC 4733 digits through the pinned patch, the data-channel fallback,
and quality figures."""

from __future__ import annotations

import asyncio
import json

import aioice
import numpy as np
import pytest
from aiortc import RTCRtpSender

from services.media.dsp.dtmf import goertzel_power
from services.media.rtp.g711 import G711
from services.media.webrtc import (
    DigitSource,
    IceServer,
    LegState,
    UnsupportedVersionError,
    WebRtcConfig,
    WebRtcError,
    WebRtcLeg,
    rtc_configuration,
)
from services.media.webrtc import config as config_module

LOCAL = WebRtcConfig()
TIMEOUT = 10.0


def tone(freq: float, seconds: float, rate: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def toned(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames heard that carry the test's tone (amplitude 8000). A leg sends silence whenever nothing
    is queued, so the last frames heard are silence once the test's task runs late (a loaded machine): the
    tone is looked for where it is, not in whatever came last."""
    return [frame for frame in frames if np.abs(frame).max() > 2000]


def band_energy(samples: np.ndarray, freq: float, rate: int) -> float:
    """Goertzel power at `freq` relative to the signal's energy (1.0: a pure tone)."""
    x = samples.astype(np.float64)
    power = float(goertzel_power(x[None, :], (freq,), rate)[0, 0]) if False else _dft_power(x, freq, rate)
    energy = float(np.sum(x * x)) * len(x) / 2 or 1.0
    return power / energy


def _dft_power(x: np.ndarray, freq: float, rate: int) -> float:
    n = np.arange(len(x))
    return float(abs(np.sum(x * np.exp(-2j * np.pi * freq * n / rate))) ** 2)


async def wait_for(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Pair:
    """`browser` offers; with browser_codecs=True it offers what a browser does (Opus, G.722, PCMU, PCMA,
    telephone-event) rather than its own preference."""

    def __init__(
        self, *, offer_law: G711 | None, answer_law: G711 | None, browser_codecs: bool = False
    ) -> None:
        self.heard: list[np.ndarray] = []
        self.digits: list[tuple[str, DigitSource]] = []
        self.browser = WebRtcLeg(LOCAL, peer_law=offer_law)
        self.server = WebRtcLeg(
            LOCAL,
            peer_law=answer_law,
            on_audio=self.heard.append,
            on_digit=lambda d, s: self.digits.append((d, s)),
        )
        if browser_codecs:
            self.browser._add_transceiver().setCodecPreferences([])

    async def connect(self) -> None:
        offer = await self.browser.create_offer()
        answer = await self.server.accept_offer(offer)
        await self.browser.accept_answer(answer)
        await wait_for(
            lambda: self.server.state is LegState.CONNECTED and self.browser.state is LegState.CONNECTED
        )

    async def close(self) -> None:
        await self.browser.close()
        await self.server.close()


def test_configuration_never_names_a_stun_server() -> None:
    assert rtc_configuration(LOCAL).iceServers == []
    turn = WebRtcConfig(ice_servers=(IceServer(("turn:127.0.0.1:3478",), "u", "p"),))
    servers = rtc_configuration(turn).iceServers
    assert servers is not None and [s.urls for s in servers] == [["turn:127.0.0.1:3478"]]
    with pytest.raises(ValueError):
        IceServer(("http://example.invalid",))
    with pytest.raises(ValueError):
        WebRtcConfig(host_addresses=("not-an-ip",))


def test_host_hook_refuses_an_unknown_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice, "__version__", "0.99.0")
    with pytest.raises(UnsupportedVersionError, match=r"0\.99\.0"):
        config_module.set_host_addresses(["127.0.0.1"])


async def test_pcmu_call_dtls_tone_digits_and_quality() -> None:
    pair = Pair(offer_law=G711.PCMU, answer_law=G711.PCMU)
    try:
        await pair.connect()
        # No ICE server of any kind, and only loopback candidates.
        gatherer = pair.server.sender.transport.transport.iceGatherer
        assert gatherer._connection.stun_server is None and gatherer._connection.turn_server is None
        assert [c.ip for c in gatherer.getLocalCandidates()] == ["127.0.0.1"]
        pair.server.assert_dtls_srtp()
        pair.browser.assert_dtls_srtp()
        sdp = pair.server.pc.localDescription.sdp
        assert "UDP/TLS/RTP/SAVPF" in sdp and "a=fingerprint:sha-256" in sdp
        assert pair.server.codec == "PCMU" and pair.browser.codec == "PCMU"
        assert pair.server.telephone_event_payload_type is not None

        # A 1 kHz tone from the browser side is heard as 1 kHz on the server side.
        pair.browser.send_audio(tone(1000, 0.2, 8000))
        for _ in range(10):
            pair.browser.send_audio(tone(1000, 0.2, 8000))
            await asyncio.sleep(0.15)
        await wait_for(lambda: len(toned(pair.heard)) >= 25)
        audio = np.concatenate(toned(pair.heard)[-25:])
        assert len(audio) >= 8000 * 0.4
        assert band_energy(audio, 1000, 8000) > 0.5
        assert band_energy(audio, 1500, 8000) < 0.01

        # RFC 4733 digits through the patch, then the data-channel fallback.
        for digit in "5#":
            await pair.browser.send_digit(digit)
        await wait_for(lambda: len(pair.digits) >= 2)
        assert pair.digits == [("5", DigitSource.RFC4733), ("#", DigitSource.RFC4733)]
        pair.browser.send_channel_digit("7")
        await wait_for(lambda: len(pair.digits) >= 3)
        assert pair.digits[2] == ("7", DigitSource.DATA_CHANNEL)

        # A bad fallback message gets an error back, and the next good one still counts.
        replies: list[str] = []
        assert pair.browser.channel is not None
        pair.browser.channel.on("message", replies.append)
        pair.browser.channel.send(json.dumps({"type": "dtmf", "digit": "x"}))
        pair.browser.channel.send("not json")
        pair.browser.send_channel_digit("9")
        await wait_for(lambda: len(replies) >= 2 and len(pair.digits) >= 4)
        assert [json.loads(r)["type"] for r in replies] == ["error", "error"]
        assert pair.digits[3] == ("9", DigitSource.DATA_CHANNEL)

        quality = await pair.server.quality()
        assert quality.packets_received > 40 and quality.packets_sent > 40
        assert quality.loss_percent < 5 and 4.0 <= quality.mos <= 4.5
    finally:
        await pair.close()


async def test_opus_when_the_other_leg_is_not_g711() -> None:
    pair = Pair(offer_law=None, answer_law=None)
    try:
        await pair.connect()
        assert pair.server.codec == "opus"
        assert "maxaveragebitrate=32000" in (await asyncio.sleep(0, pair.server._outgoing_sdp()))
        for _ in range(8):
            pair.browser.send_audio(tone(1000, 0.2, 48000))
            await asyncio.sleep(0.15)
        await wait_for(lambda: len(toned(pair.heard)) >= 20)
        audio = np.concatenate(toned(pair.heard)[-20:])
        assert band_energy(audio, 1000, 48000) > 0.3
    finally:
        await pair.close()


async def test_pcma_preferred_over_opus_in_a_browser_style_offer() -> None:
    # The browser offers Opus first (no preference); the server leg bridges to a PCMA caller.
    pair = Pair(offer_law=None, answer_law=G711.PCMA, browser_codecs=True)
    try:
        offer = await pair.browser.create_offer()
        assert offer.index("opus/48000") < offer.index("PCMA/8000")
        await pair.browser.accept_answer(await pair.server.accept_offer(offer))
        await wait_for(lambda: pair.server.state is LegState.CONNECTED)
        assert pair.server.codec == "PCMA"
        assert pair.browser.codec == "PCMA"
        assert pair.server.telephone_event_payload_type == 126
    finally:
        await pair.close()


def only(leg: WebRtcLeg, *mimes: str) -> None:
    """Make `leg` offer exactly these codecs (a browser that has nothing else)."""
    capabilities = RTCRtpSender.getCapabilities("audio").codecs
    leg._add_transceiver().setCodecPreferences([c for c in capabilities if c.mimeType in mimes])


async def test_an_opus_only_offer_is_answered_with_opus_even_next_to_a_g711_leg() -> None:
    pair = Pair(offer_law=None, answer_law=G711.PCMA)
    only(pair.browser, "audio/opus", "audio/telephone-event")
    try:
        await pair.connect()
        answer = pair.server.pc.localDescription.sdp
        assert pair.server.codec == "opus" and pair.browser.codec == "opus"
        assert pair.server.rate == 48000 and pair.server.outbound.frame_samples == 960
        assert "PCMA/8000" not in answer and "maxaveragebitrate=32000" in pair.server._outgoing_sdp()
        # aiortc's offer has telephone-event at 8 kHz only: not kept next to Opus (48 kHz clock).
        assert pair.server.telephone_event_payload_type is None
        for _ in range(8):
            pair.browser.send_audio(tone(1000, 0.2, 48000))
            await asyncio.sleep(0.15)
        await wait_for(lambda: len(toned(pair.heard)) >= 20)
        audio = np.concatenate(toned(pair.heard)[-20:])
        assert len(pair.heard[-1]) == 960 and band_energy(audio, 1000, 48000) > 0.3
    finally:
        await pair.close()


async def test_prefer_opus_takes_opus_from_a_browser_style_offer_and_g711_when_alone() -> None:
    pair = Pair(offer_law=None, answer_law=G711.PCMU, browser_codecs=True)
    pair.server.prefer_opus = True
    g711 = Pair(offer_law=None, answer_law=G711.PCMU)
    g711.server.prefer_opus = True
    only(g711.browser, "audio/PCMU")
    try:
        await pair.connect()
        assert pair.server.codec == "opus" and pair.server.rate == 48000
        await g711.connect()
        assert g711.server.codec == "PCMU" and g711.server.rate == 8000 and g711.browser.rate == 8000
    finally:
        await pair.close()
        await g711.close()


async def test_an_offer_without_a_common_audio_codec_is_refused() -> None:
    browser = WebRtcLeg(LOCAL, peer_law=None)
    server = WebRtcLeg(LOCAL, peer_law=G711.PCMU)
    other = WebRtcLeg(LOCAL)
    only(browser, "audio/G722", "audio/telephone-event")
    try:
        offer = await browser.create_offer()  # G.722 and telephone-event only
        with pytest.raises(WebRtcError, match="no audio codec in common"):
            await server.accept_offer(offer)
        with pytest.raises(WebRtcError):
            await other.accept_offer("v=0\r\nnonsense")
    finally:
        await other.close()
        await browser.close()
        await server.close()
