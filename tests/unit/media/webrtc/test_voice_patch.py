"""The pinned aiortc voice patch: the audio level computed by numpy equals aiortc's own loop; our Opus
encoder sends mono packets at about the asked bit rate that aiortc's decoder plays back at the right
frequency; and a G.711 leg pair runs without aiortc's encoder and decoder threads."""

from __future__ import annotations

import asyncio
import fractions
import threading

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame

from services.media.rtp.g711 import G711
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg, voice_patch

from .test_webrtc_leg import band_energy, tone, toned, wait_for

ORIGINAL_LEVEL = voice_patch.AIORTC_AUDIO_LEVEL


def _frame(samples: np.ndarray, rate: int, pts: int = 0) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, fractions.Fraction(1, rate)
    return frame


@pytest.mark.parametrize("amplitude", [0, 1, 30, 1000, 32767])
def test_audio_level_matches_aiortc(amplitude: int) -> None:
    rng = np.random.default_rng(amplitude)
    for rate in (8000, 48000):
        samples = rng.integers(-amplitude, amplitude + 1, rate // 50).astype(np.int16)
        frame = _frame(samples, rate)
        assert voice_patch.audio_level_dbov(frame) == ORIGINAL_LEVEL(frame)


def test_opus_encoder_sends_mono_voice_that_decodes_to_the_same_tone() -> None:
    voice_patch.install(32000)
    encoder, decoder = voice_patch.VoiceOpusEncoder(), OpusDecoder()
    audio = tone(1000, 1.0, 48000)
    sizes, decoded = [], []
    for i in range(50):
        packets, timestamp = encoder.encode(_frame(audio[i * 960 : (i + 1) * 960], 48000, i * 960))
        for packet in packets:
            assert packet[0] & 0x04 == 0  # TOC byte: the stereo flag is off
            sizes.append(len(packet))
            for frame in decoder.decode(JitterFrame(data=packet, timestamp=timestamp)):
                decoded.append(frame.to_ndarray().reshape(-1)[0::2])
    assert len(sizes) >= 45
    assert np.mean(sizes) * 8 * 50 < 70000  # aiortc's own encoder: about 140 kbit/s on this tone
    heard = np.concatenate(decoded[5:]).astype(np.float64)
    assert band_energy(heard, 1000, 48000) > 0.5


async def test_a_pcmu_pair_needs_no_codec_threads() -> None:
    before = {t.name for t in threading.enumerate() if t.is_alive()}
    heard: list[np.ndarray] = []
    a = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU)
    b = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU, on_audio=heard.append)
    try:
        await a.accept_answer(await b.accept_offer(await a.create_offer()))
        await wait_for(lambda: a.state is LegState.CONNECTED and b.state is LegState.CONNECTED)
        assert a.outbound.law is G711.PCMU  # packets, not frames, to aiortc's sender
        for _ in range(8):
            a.send_audio(tone(1000, 0.06, 8000))
            await asyncio.sleep(0.06)
        await wait_for(lambda: len(toned(heard)) >= 10)
        assert all(len(frame) == 160 and frame.dtype == np.int16 for frame in heard)
        assert band_energy(np.concatenate(toned(heard)[-10:]), 1000, 8000) > 0.5
        # aiortc's decoder threads still exist but sit idle; no encoder pool was started.
        started = {t.name for t in threading.enumerate() if t.is_alive()} - before
        assert not any(name.startswith("ThreadPoolExecutor") for name in started), started
    finally:
        await a.close()
        await b.close()
