"""libopus at 8 kHz (services/media/webrtc/opus.py) and the Opus leg's playout (SrtpMedia.play): a tone keeps
its frequency and level through encode and decode, a lost packet is concealed from the decoder's own state,
packets of 10 to 60 ms and a browser's 48 kHz stereo stream play as 20 ms frames at 8 kHz."""

from __future__ import annotations

import ctypes.util

import av
import numpy as np
import pytest

from services.media.webrtc import opus
from services.media.webrtc.leg import _opus_voice_fmtp
from services.media.webrtc.opus import (
    OpusDecoder,
    OpusEncoder,
    OpusError,
    library_path,
    packet_samples,
    version,
)
from services.media.webrtc.srtp_media import SrtpMedia

from .test_webrtc_leg import band_energy, tone


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def frames_of(signal: np.ndarray, size: int) -> list[np.ndarray]:
    return [signal[i : i + size] for i in range(0, len(signal) - size + 1, size)]


def test_the_library_is_libopus() -> None:
    assert version().startswith("libopus 1.")


@pytest.mark.parametrize("complexity", [0, 2, 5])
@pytest.mark.parametrize("freq", [400, 1000, 3000])
def test_a_tone_keeps_its_frequency_and_level(complexity: int, freq: int) -> None:
    encoder = OpusEncoder(8000, bitrate=32000, complexity=complexity)
    decoder = OpusDecoder(8000)
    signal = tone(freq, 1.0, 8000)
    packets = [encoder.encode(f) for f in frames_of(signal, 160)]
    assert all(p[0] >> 3 < 12 for p in packets), "8 kHz input is coded as narrowband SILK"
    decoded = [decoder.decode(p) for p in packets]
    assert all(len(d) == 160 for d in decoded)
    steady = np.concatenate(decoded[10:])
    assert band_energy(steady, freq, 8000) > 0.8
    assert 0.7 < rms(steady) / rms(signal) < 1.3


def test_silence_stays_silent() -> None:
    encoder = OpusEncoder(8000, bitrate=32000, complexity=0)
    decoder = OpusDecoder(8000)
    out = [decoder.decode(encoder.encode(np.zeros(160, np.int16))) for _ in range(20)]
    assert max(int(np.abs(f).max()) for f in out) < 50


@pytest.mark.parametrize("ms", [10, 20, 40, 60])
def test_packets_of_10_to_60_ms(ms: int) -> None:
    size = 8 * ms
    encoder = OpusEncoder(8000, bitrate=32000, complexity=2)
    decoder = OpusDecoder(8000)
    packets = [encoder.encode(f) for f in frames_of(tone(1000, 1.0, 8000), size)]
    assert {packet_samples(p, 48000) for p in packets} == {48 * ms}
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert len(decoded) == len(packets) * size
    assert band_energy(decoded[800:], 1000, 8000) > 0.8


def test_a_browsers_48_khz_stereo_stream_decodes_to_8_khz_mono() -> None:
    # What Chromium may send: fullband, the stereo flag set. PyAV's encoder stands in for the browser.
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48000, "stereo", "s16", 64000
    mono = tone(1000, 1.0, 48000)
    stereo = np.repeat(mono, 2)  # interleaved left, right
    packets = []
    for i, chunk in enumerate(frames_of(stereo, 1920)):
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    assert packets and all(p[0] & 0x04 for p in packets), "the stereo flag is set"
    decoder = OpusDecoder(8000)
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert len(decoded) == 160 * len(packets)
    steady = decoded[1600:]
    assert band_energy(steady, 1000, 8000) > 0.8 and 0.7 < rms(steady) / rms(mono) < 1.3


def test_a_lost_packet_is_concealed_from_the_decoders_state_and_a_long_gap_fades() -> None:
    encoder = OpusEncoder(8000, bitrate=32000, complexity=2)
    decoder = OpusDecoder(8000)
    for f in frames_of(tone(600, 0.5, 8000), 160):
        decoder.decode(encoder.encode(f))
    first = decoder.conceal(160)
    assert len(first) == 160
    assert band_energy(first, 600, 8000) > 0.5 and rms(first) > 0.3 * 8000 / np.sqrt(2)
    gap = [decoder.conceal(160) for _ in range(15)]
    assert rms(gap[-1]) < 0.5 * rms(first)


def test_a_corrupt_packet_is_an_opus_error() -> None:
    with pytest.raises(OpusError):
        OpusDecoder(8000).decode(b"\xff\xff\xff")  # code 3 with a frame count of 63: over 120 ms
    with pytest.raises(OpusError, match="empty"):
        OpusDecoder(8000).decode(b"")
    with pytest.raises(OpusError):
        packet_samples(b"", 48000)
    with pytest.raises(ValueError, match="complexity"):
        OpusEncoder(8000, bitrate=32000, complexity=11)


class _Leg:
    """An Opus SrtpMedia's receive side without a connection: packets go into its jitter buffer as
    `receive` puts them there, and `play` runs as the worker's clock runs it."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.media = SrtpMedia(
            dtls=None,
            ssrc=1,
            codec="opus",
            payload_type=111,
            te_pt=None,
            on_audio=self.heard.append,
            on_digit=lambda d: None,
        )
        self.seq = 0
        self.ts = 0

    def push(self, payload: bytes, now: float) -> None:
        samples = self.media._opus_duration(payload)
        self.media.jitter.push(self.seq, self.ts, payload, now, samples=samples, ssrc=5)
        self.seq += 1
        self.ts += samples


@pytest.mark.parametrize("ms", [10, 20, 40, 60])
def test_the_leg_plays_packets_of_any_length_as_20_ms_frames_in_time(ms: int) -> None:
    leg = _Leg()
    encoder = OpusEncoder(8000, bitrate=32000, complexity=2)
    packets = [encoder.encode(f) for f in frames_of(tone(1000, 2.0, 8000), 8 * ms)]
    now, sent = 0.0, 0
    for tick in range(100):  # 2 s of the worker's clock, packets arriving on the sender's
        now = tick * 0.02
        while sent < len(packets) and sent * ms / 1000 <= now:
            leg.push(packets[sent], now)
            sent += 1
        leg.media.play(now)
    assert all(len(f) == 160 for f in leg.heard)
    # All of it plays, in time: no frame lost or concealed, at most the buffer's delay still to come.
    assert leg.media.concealer.concealed == 0
    assert 100 - 6 <= len(leg.heard) <= 100
    assert band_energy(np.concatenate(leg.heard[10:]), 1000, 8000) > 0.8


def test_the_leg_conceals_a_lost_packet_with_libopus() -> None:
    leg = _Leg()
    encoder = OpusEncoder(8000, bitrate=32000, complexity=2)
    packets = [encoder.encode(f) for f in frames_of(tone(600, 2.0, 8000), 160)]
    lost = 30
    for i, payload in enumerate(packets):
        if i == lost:
            leg.seq += 1
            leg.ts += 960
        else:
            leg.push(payload, i * 0.02)
        leg.media.play(i * 0.02)
    assert leg.media.concealer.concealed == 1
    assert len(leg.heard) >= len(packets) - 4  # the missing slot is played too
    # The lost slot carries the tone on (no gap); SILK's long-term predictor then rebuilds a pure tone
    # over a few hundred ms (speech, less periodic, recovers faster), and the tone is back.
    level = 8000 / np.sqrt(2)
    assert rms(leg.heard[lost]) > 0.3 * level and band_energy(leg.heard[lost], 600, 8000) > 0.5
    assert all(rms(f) > 0.7 * level for f in leg.heard[: lost - 1] + leg.heard[-3:])


def test_a_corrupt_packet_on_the_leg_is_counted_and_concealed() -> None:
    leg = _Leg()
    encoder = OpusEncoder(8000, bitrate=32000, complexity=2)
    for i, f in enumerate(frames_of(tone(600, 0.4, 8000), 160)):
        bad = {10: b"\xff\xff\xff", 14: b""}.get(i)
        leg.push(bad if bad is not None else encoder.encode(f), i * 0.02)
        leg.media.play(i * 0.02)
    assert leg.media.counters.malformed == 2
    assert all(len(f) == 160 for f in leg.heard) and len(leg.heard) >= 16


def test_the_library_falls_back_to_the_systems_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "av.libs" in library_path()  # PyAV's wheel brings one: no system package needed
    monkeypatch.setattr(opus.glob, "glob", lambda pattern: [])  # a PyAV built against the system's
    monkeypatch.setattr(
        opus.ctypes.util, "find_library", lambda name: "libopus.so.0" if name == "opus" else None
    )
    assert library_path() == "libopus.so.0"
    monkeypatch.setattr(opus.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(OpusError, match="apt-get install libopus0"):
        library_path()


@pytest.mark.skipif(ctypes.util.find_library("opus") is None, reason="no system libopus (Debian libopus0)")
def test_the_binding_works_with_the_systems_libopus_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian bookworm's libopus0 is 1.3.1, PyAV's 1.6: the six calls are the same.
    system = opus._ffi.dlopen(ctypes.util.find_library("opus"))
    monkeypatch.setattr(opus, "_lib", system)
    assert version().startswith("libopus 1.")
    encoder, decoder = OpusEncoder(8000, bitrate=32000, complexity=1), OpusDecoder(8000)
    decoded = np.concatenate(
        [decoder.decode(encoder.encode(f)) for f in frames_of(tone(1000, 0.5, 8000), 160)]
    )
    assert band_energy(decoded[800:], 1000, 8000) > 0.8 and len(decoder.conceal(160)) == 160


def test_our_path_tells_the_browser_it_codes_and_plays_8_khz() -> None:
    sdp = "\r\n".join(
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 stereo=1",
            "a=rtpmap:0 PCMU/8000",
        ]
    )
    ours = _opus_voice_fmtp(sdp, 32000, narrowband=True)
    aiortcs = _opus_voice_fmtp(sdp, 32000)
    fmtp = [line for line in ours.split("\r\n") if line.startswith("a=fmtp:111 ")]
    assert len(fmtp) == 1 and "maxplaybackrate=8000" in fmtp[0] and "sprop-maxcapturerate=8000" in fmtp[0]
    assert "stereo=1" not in ours and "stereo=0" in fmtp[0]
    # aiortc's own path encodes at 48 kHz: it claims no narrow band.
    assert "maxplaybackrate" not in aiortcs and "maxaveragebitrate=32000" in aiortcs
