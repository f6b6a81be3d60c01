"""How many concurrent 8 kHz channels one core can run in-band DTMF detection for.

Each channel gets its own DtmfDetector, fed 20 ms frames the way the RTP adapter will feed it, and the
channels are interleaved tick by tick. CPU time (process time, so other load on the machine does not
count) per second of audio gives channels per core. Prints a table and writes .bench/dtmf.json.

Run: .venv/bin/python tests/bench/bench_dtmf.py   (or `make bench BENCH=dtmf`)
"""

from __future__ import annotations

import os

# One BLAS thread, as a media process must run (it scales by processes): OpenBLAS's worker threads
# otherwise spin on the larger products of DtmfBank and burn several times the CPU they save.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import statistics
import time
from pathlib import Path

import numpy as np

from services.media.dsp.dtmf import DtmfBank, DtmfConfig, DtmfDetector
from services.media.dsp.tones import dtmf_tone
from services.media.rtp.g711 import ulaw_decode, ulaw_encode

RATE = 8000
FRAME = 160
SECONDS = 10.0
CHANNELS = 40
BANK_CHANNELS = 400
# Detection should cost at most a tenth of a core at the media goal of 150 calls per core.
GOAL_CHANNELS = 1500


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Voiced syllables: harmonics of a gliding pitch shaped by two formants, with pauses."""
    out = []
    total = 0
    while total < seconds * RATE:
        n = int(rng.integers(1000, 3600))
        f0 = np.linspace(rng.uniform(90, 260), rng.uniform(90, 260), n)
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2400)
        syllable = np.zeros(n)
        for k in range(1, 30):
            freq = k * f0
            gain = (1 / (1 + ((freq - f1) / 60) ** 2) + 0.7 / (1 + ((freq - f2) / 80) ** 2)) / k
            syllable += gain * np.sin(k * phase)
        syllable *= 4000 / (np.sqrt(np.mean(syllable**2)) or 1)
        pause = np.zeros(int(rng.integers(200, 1200)))
        out += [syllable, pause]
        total += n + len(pause)
    return np.concatenate(out)[: int(seconds * RATE)]


def with_digits(signal: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Overlay a 70 ms digit every 2 s, as a caller keying in an account number would."""
    mixed = signal.copy()
    starts = []
    for when in np.arange(0.5, len(signal) / RATE - 0.2, 2.0):
        start = int(when * RATE)
        tone = dtmf_tone("0123456789"[int(rng.integers(10))], 0.07)
        mixed[start : start + len(tone)] = tone
        starts.append(start / RATE)
    return mixed, starts


def measure(signal: np.ndarray, config: DtmfConfig) -> tuple[float, int, list[float]]:
    """CPU seconds per audio second for one channel, digits found, and detection latencies."""
    pcm = ulaw_decode(ulaw_encode(signal))  # what arrives from a G.711 leg
    frames = [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    detectors = [DtmfDetector(config) for _ in range(CHANNELS)]
    found = 0
    latencies: list[float] = []
    started = time.process_time()
    for tick, frame in enumerate(frames):
        now = (tick + 1) * FRAME / RATE
        for index, detector in enumerate(detectors):
            digits = detector.feed(frame, now)
            if index == 0:
                found += len(digits)
                latencies += [digit.at - digit.start for digit in digits]
    cpu = time.process_time() - started
    return cpu / (CHANNELS * len(frames) * FRAME / RATE), found, latencies


def measure_bank(signal: np.ndarray) -> tuple[float, int]:
    """CPU seconds per channel-second with every channel in one DtmfBank, and digits on row 0.
    Each row hears the signal from another starting point, so tones do not line up across rows."""
    pcm = ulaw_decode(ulaw_encode(signal)).astype(np.float64)
    rows = np.stack([np.roll(pcm, 977 * channel) for channel in range(BANK_CHANNELS)])
    bank = DtmfBank(BANK_CHANNELS)
    ticks = rows.shape[1] // FRAME
    found = 0
    started = time.process_time()
    for tick in range(ticks):
        for channel, _ in bank.feed(rows[:, tick * FRAME : (tick + 1) * FRAME], (tick + 1) * FRAME / RATE):
            found += channel == 0
    cpu = time.process_time() - started
    return cpu / (BANK_CHANNELS * ticks * FRAME / RATE), found


def bulk_realtime_factor(signal: np.ndarray) -> float:
    pcm = ulaw_decode(ulaw_encode(signal))
    started = time.process_time()
    for _ in range(5):
        DtmfDetector().feed(pcm, len(pcm) / RATE)
    return 5 * len(pcm) / RATE / (time.process_time() - started)


def main() -> None:
    rng = np.random.default_rng(7)
    speech = speech_like(SECONDS, rng)
    speech_digits, starts = with_digits(speech, rng)
    silence = np.zeros(int(SECONDS * RATE))
    noise = rng.normal(0, 2000, int(SECONDS * RATE))

    rows = []
    results = []
    for name, signal in (
        ("speech+digits", speech_digits),
        ("speech", speech),
        ("noise", noise),
        ("silence", silence),
    ):
        for label, config in (("40 ms batches", DtmfConfig()), ("every 20 ms frame", DtmfConfig(batch=0))):
            cost, found, latencies = measure(signal, config)
            rows.append((name, label, cost, found, latencies))
            results.append((name, label, 1 / cost))
    realtime = bulk_realtime_factor(speech)
    bank_rows = []
    for name, signal in (("speech+digits", speech_digits), ("silence", silence)):
        cost, found = measure_bank(signal)
        bank_rows.append((name, cost, found))

    print(f"DTMF detection, {CHANNELS} interleaved channels x {SECONDS:.0f} s, 1 core (pid {os.getpid()})")
    print(
        f"{'signal':<15} {'analysis':<18} {'us per 20 ms':>12} {'channels/core':>14} {'digits':>7} {'latency ms':>11}"
    )
    for name, label, cost, found, latencies in rows:
        latency = f"{1000 * statistics.median(latencies):.0f}" if latencies else "-"
        print(f"{name:<15} {label:<18} {cost * 0.02 * 1e6:>12.1f} {1 / cost:>14.0f} {found:>7} {latency:>11}")
    for name, cost, found in bank_rows:
        label = f"bank of {BANK_CHANNELS}"
        print(f"{name:<15} {label:<18} {cost * 0.02 * 1e6:>12.1f} {1 / cost:>14.0f} {found:>7} {'-':>11}")
    print(f"bulk (whole-signal) analysis: {realtime:.0f}x real time per core")
    expected = len(starts)
    print(f"digits overlaid: {expected} per channel; speech alone must give 0")

    by_key = {(name, label): value for name, label, value in results}
    speech_latencies = next(r[4] for r in rows if r[0] == "speech+digits" and r[1] == "40 ms batches")
    figures = [
        {
            "metric": "channels_per_core_speech",
            "value": round(by_key[("speech+digits", "40 ms batches")]),
            "unit": "channels",
            "goal": GOAL_CHANNELS,
            "better": "higher",
        },
        {
            "metric": "channels_per_core_speech_20ms_frames",
            "value": round(by_key[("speech+digits", "every 20 ms frame")]),
            "unit": "channels",
            "goal": GOAL_CHANNELS,
            "better": "higher",
        },
        {
            "metric": "channels_per_core_silence",
            "value": round(by_key[("silence", "40 ms batches")]),
            "unit": "channels",
            "goal": GOAL_CHANNELS,
            "better": "higher",
        },
        {
            "metric": "channels_per_core_speech_bank",
            "value": round(1 / bank_rows[0][1]),
            "unit": "channels",
            "goal": GOAL_CHANNELS,
            "better": "higher",
        },
        {
            "metric": "bulk_realtime_factor",
            "value": round(realtime),
            "unit": "x",
            "goal": GOAL_CHANNELS,
            "better": "higher",
        },
        {
            "metric": "detection_latency_median_ms",
            "value": round(1000 * statistics.median(speech_latencies), 1) if speech_latencies else None,
            "unit": "ms",
            "goal": 80,
            "better": "lower",
        },
        {
            "metric": "digits_detected_of_overlaid",
            "value": next(r[3] for r in rows if r[0] == "speech+digits" and r[1] == "40 ms batches"),
            "unit": f"of {expected}",
            "goal": expected,
            "better": "higher",
        },
        {
            "metric": "false_digits_in_speech",
            "value": next(r[3] for r in rows if r[0] == "speech" and r[1] == "40 ms batches"),
            "unit": "digits",
            "goal": 0,
            "better": "lower",
        },
    ]
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "dtmf.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out / 'dtmf.json'}")


if __name__ == "__main__":
    main()
