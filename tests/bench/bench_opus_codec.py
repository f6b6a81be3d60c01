"""Opus on a WebRTC leg, per 20 ms frame (docs/media.md, "Opus at 8 kHz"): libopus direct at 8 kHz
(services/media/webrtc/opus.py) against the PyAV path it replaced (encode at 8 kHz, decode at 48 kHz and a
polyphase filter down to 8 kHz), at several encoder complexities; and what each complexity does to a
voice-like signal (SNR and log-spectral distance after a round trip). CPU time, best of `--repeat`
batches of 500 frames, the variants interleaved so a busy machine slows them alike.

    python tests/bench/bench_opus_codec.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from services.media.bridge.transcode import Resampler
from services.media.webrtc.opus import OpusDecoder, OpusEncoder, version

RATE = 8000
FRAME = 160
COMPLEXITIES = (0, 1, 2, 5, 10)


def voice_like(seconds: float = 10.0) -> np.ndarray:
    """Harmonics of a gliding pitch through two moving formants, in syllables, with a little noise."""
    rng = np.random.default_rng(1)
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    formant1 = 700 + 300 * np.sin(2 * np.pi * 1.3 * t)
    formant2 = 1800 + 500 * np.sin(2 * np.pi * 0.9 * t)
    signal = np.zeros_like(t)
    for k in range(1, 35):
        gain = 1 / (1 + ((k * f0 - formant1) / 150) ** 2) + 0.6 / (1 + ((k * f0 - formant2) / 150) ** 2)
        signal += np.sin(k * phase) * gain
    envelope = 0.2 + 0.8 * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, 1)
    signal = signal * envelope + 0.05 * rng.standard_normal(len(t)) * envelope
    return (7000 * signal / np.max(np.abs(signal))).astype(np.int16)


class PyAvOpus:
    """The path before: PyAV's libopus wrapper, which always decodes at 48 kHz."""

    def __init__(self, complexity: int) -> None:
        self.encoder: Any = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate, self.encoder.layout, self.encoder.format = RATE, "mono", "s16"
        self.encoder.bit_rate = 32000
        self.encoder.options = {"application": "voip", "compression_level": str(complexity)}
        self.decoder: Any = av.CodecContext.create("libopus", "r")
        self.decoder.sample_rate, self.decoder.layout, self.decoder.format = 48000, "mono", "s16"
        self.down = Resampler(48000, RATE)
        self.pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self.pts
        self.pts += len(samples)
        return bytes(self.encoder.encode(frame)[0])

    def decode(self, payload: bytes) -> np.ndarray:
        frames = self.decoder.decode(av.Packet(payload))
        return self.down(np.concatenate([f.to_ndarray().reshape(-1) for f in frames]))


def cpu_us(make: Callable[[], Callable[[Any], Any]], items: list[Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        step = make()
        start = time.process_time()
        for item in items:
            step(item)
        best = min(best, (time.process_time() - start) / len(items))
    return best * 1e6


def log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    distances = []
    window = np.hanning(256)
    for i in range(0, len(a) - 256, 128):
        pa = np.abs(np.fft.rfft(a[i : i + 256] * window)) ** 2 + 1e-3
        pb = np.abs(np.fft.rfft(b[i : i + 256] * window)) ** 2 + 1e-3
        if np.sum(pa) > 1e6:  # voiced windows only
            distances.append(np.sqrt(np.mean((10 * np.log10(pa / pb)) ** 2)))
    return float(np.mean(distances))


def round_trip_quality(signal: np.ndarray, complexity: int) -> tuple[float, float]:
    encoder = OpusEncoder(RATE, bitrate=32000, complexity=complexity)
    decoder = OpusDecoder(RATE)
    frames = [signal[i : i + FRAME] for i in range(0, len(signal) - FRAME + 1, FRAME)]
    out = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames]).astype(np.float64)
    x = signal[: len(out)].astype(np.float64)
    lag = max(range(200), key=lambda k: float(np.dot(x[1000:-1000], out[1000 + k : len(out) - 1000 + k])))
    y, x = out[lag:], x[: len(out) - lag]
    snr = 10 * np.log10(np.sum(x * x) / np.sum((x - y) ** 2))
    return float(snr), log_spectral_distance(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=9, help="batches per variant; the best counts")
    args = parser.parse_args()
    signal = voice_like()
    frames = [signal[i : i + FRAME] for i in range(0, 500 * FRAME, FRAME)]
    packets = [OpusEncoder(RATE, bitrate=32000, complexity=5).encode(f) for f in frames]
    print(f"{version()}; CPU per 20 ms frame, best of {args.repeat} x {len(frames)} frames")
    for complexity in COMPLEXITIES:
        before = cpu_us(lambda c=complexity: PyAvOpus(c).encode, frames, args.repeat)
        after = cpu_us(
            lambda c=complexity: OpusEncoder(RATE, bitrate=32000, complexity=c).encode, frames, args.repeat
        )
        snr, lsd = round_trip_quality(signal[: RATE * 4], complexity)
        print(
            f"  encode, complexity {complexity:2d}: PyAV {before:6.1f} us, direct {after:6.1f} us;"
            f" round trip SNR {snr:4.1f} dB, log-spectral distance {lsd:.2f} dB"
        )
    before = cpu_us(lambda: PyAvOpus(5).decode, packets, args.repeat)
    after = cpu_us(lambda: OpusDecoder(RATE).decode, packets, args.repeat)
    print(f"  decode: PyAV at 48 kHz + resampler {before:6.1f} us, direct at 8 kHz {after:6.1f} us")

    def concealing() -> Callable[[Any], Any]:
        decoder = OpusDecoder(RATE)
        decoder.decode(packets[0])
        return lambda _: decoder.conceal(FRAME)

    print(f"  a concealed frame (libopus PLC): {cpu_us(concealing, packets[:100], args.repeat):6.1f} us")


if __name__ == "__main__":
    main()
