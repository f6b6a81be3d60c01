"""Test signals for the DTMF detector: noise at a chosen SNR, a G.711 round trip, and signals that
must NOT be taken for digits (talk-off): vowel-like harmonic speech, chirps, noise, music chords.
Deterministic: every generator takes a numpy Generator. Tests reach them through the `synth` fixture
(the suite imports test modules in importlib mode, so this folder is not on sys.path)."""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from services.media.dsp.tones import DBM0_PEAK
from services.media.rtp.g711 import ulaw_decode, ulaw_encode

Floats = npt.NDArray[np.float64]
RATE = 8000

# (F1, F2, F3) in Hz for a handful of vowels, adult voices (Peterson & Barney averages, rounded).
VOWELS = {
    "i": (270, 2290, 3010),
    "e": (530, 1840, 2480),
    "a": (730, 1090, 2440),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
    "ae": (660, 1720, 2410),
    "uh": (640, 1190, 2390),
    "er": (490, 1350, 1690),
}


def add_noise(signal: Floats, snr_db: float, rng: np.random.Generator) -> Floats:
    power = float(np.mean(signal**2))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), signal.shape)
    return signal + noise


def ulaw_round_trip(signal: Floats) -> Floats:
    return ulaw_decode(ulaw_encode(signal)).astype(np.float64)


def scale_to_dbm0(signal: Floats, dbm0: float) -> Floats:
    """Scale to an RMS level in dBm0 (0 dBm0 is a sine of peak DBM0_PEAK)."""
    rms = float(np.sqrt(np.mean(signal**2))) or 1.0
    return signal * (DBM0_PEAK / np.sqrt(2) * 10 ** (dbm0 / 20) / rms)


def _envelope(freqs: Floats, formants: tuple[float, float, float], bandwidth: float) -> Floats:
    gain = np.zeros_like(freqs)
    for i, f in enumerate(formants):
        gain += (0.7**i) / (1 + ((freqs - f) / (bandwidth / 2)) ** 2)
    return gain


def vowel(
    f0_start: float,
    f0_end: float,
    formants: tuple[float, float, float],
    duration: float,
    rng: np.random.Generator,
    *,
    bandwidth: float = 90.0,
    telephone_band: bool = True,
) -> Floats:
    """A voiced vowel: harmonics of a gliding f0 with vibrato and jitter, shaped by three formants
    and a -6 dB/octave source tilt, band-limited to 300-3400 Hz like a phone line."""
    n = round(duration * RATE)
    t = np.arange(n) / RATE
    f0 = np.linspace(f0_start, f0_end, n) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    f0 *= 1 + 0.003 * np.cumsum(rng.normal(0, 0.05, n)) / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out = np.zeros(n)
    for k in range(1, int(3800 / min(f0_start, f0_end)) + 1):
        freqs = k * f0
        gain = _envelope(freqs, formants, bandwidth) / k
        if telephone_band:
            gain = gain * ((freqs > 300) & (freqs < 3400))
        if not gain.any():
            continue
        out += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    attack = np.minimum(1.0, t / 0.03) * np.minimum(1.0, (duration - t) / 0.05)
    return out * attack


def speech_like(duration: float, rng: np.random.Generator) -> Floats:
    """Syllables of random vowels and pitch glides (80-300 Hz), with short pauses, at -15 dBm0."""
    parts = []
    total = 0.0
    names = list(VOWELS)
    while total < duration:
        length = float(rng.uniform(0.12, 0.45))
        f0a = float(rng.uniform(80, 300))
        f0b = f0a * float(rng.uniform(0.8, 1.25))
        formants = VOWELS[names[rng.integers(len(names))]]
        f1, f2, f3 = (f * float(rng.uniform(0.9, 1.1)) for f in formants)
        syllable = vowel(f0a, f0b, (f1, f2, f3), length, rng, bandwidth=float(rng.uniform(60, 120)))
        parts.append(scale_to_dbm0(syllable, float(rng.uniform(-25, -8))))
        pause = float(rng.uniform(0.02, 0.15))
        parts.append(np.zeros(round(pause * RATE)))
        total += length + pause
    return np.concatenate(parts)


def talk_off_vowels(rng: np.random.Generator) -> Floats:
    """The hard cases: steady vowels whose harmonics sit on a DTMF row and column at once
    (e.g. f0 = 174.5 Hz: 4 f0 = 698 Hz, 7 f0 = 1221 Hz) with formants right on those harmonics."""
    parts = []
    for row in (697.0, 770.0, 852.0, 941.0):
        for col in (1209.0, 1336.0, 1477.0, 1633.0):
            for m in range(2, 9):
                f0 = row / m
                n = round(col / f0)
                if f0 < 75 or abs(n * f0 - col) / col > 0.015:
                    continue
                formants = (row, col, 2500.0)
                sound = vowel(f0, f0, formants, 0.4, rng, bandwidth=70.0)
                parts.append(scale_to_dbm0(sound, -12.0))
                parts.append(np.zeros(800))
    return np.concatenate(parts)


def chirps(duration: float, rng: np.random.Generator) -> Floats:
    """Linear and exponential sweeps across 200-3400 Hz, some with harmonics, various speeds."""
    parts = []
    total = 0.0
    while total < duration:
        length = float(rng.uniform(0.2, 2.0))
        n = round(length * RATE)
        a, b = rng.uniform(200, 3400, 2)
        if rng.random() < 0.5:
            freq = np.linspace(a, b, n)
        else:
            freq = a * (b / a) ** np.linspace(0, 1, n)
        phase = 2 * np.pi * np.cumsum(freq) / RATE
        sound = np.sin(phase)
        if rng.random() < 0.5:
            sound = sound + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase)
        parts.append(scale_to_dbm0(sound, float(rng.uniform(-25, -5))))
        total += length
    return np.concatenate(parts)


def noises(duration: float, rng: np.random.Generator) -> Floats:
    """White noise, low-passed (pinkish) noise and noise bursts at various levels."""
    parts = []
    total = 0.0
    while total < duration:
        length = float(rng.uniform(0.3, 3.0))
        n = round(length * RATE)
        sound = rng.normal(0, 1, n)
        kind = rng.integers(3)
        if kind == 1:
            sound = np.convolve(sound, np.ones(4) / 4, mode="same")
        elif kind == 2:
            sound = sound * (rng.random(n // 400 + 1).repeat(400)[:n] > 0.5)
        parts.append(scale_to_dbm0(sound, float(rng.uniform(-35, -3))))
        total += length
    return np.concatenate(parts)


def music(duration: float, rng: np.random.Generator) -> Floats:
    """Chords of 2-4 notes (MIDI 55-96) with instrument-like harmonics (1/k, up to the 6th), ADSR
    envelopes and occasional vibrato; plus the chords closest to DTMF pairs, e.g. F5 + E6."""
    parts = []
    total = 0.0
    near_dtmf = [(77, 88), (79, 90), (81, 91), (82, 92)]  # F5+E6, G5+F#6, A5+G6, A#5+G#6
    while total < duration:
        length = float(rng.uniform(0.2, 1.2))
        n = round(length * RATE)
        t = np.arange(n) / RATE
        if rng.random() < 0.15:
            notes = list(near_dtmf[rng.integers(len(near_dtmf))])
        else:
            notes = list(rng.integers(55, 97, rng.integers(2, 5)))
        vibrato = 1 + (0.004 * np.sin(2 * np.pi * 6 * t) if rng.random() < 0.3 else 0)
        sound = np.zeros(n)
        for note in notes:
            freq = 440.0 * 2 ** ((note - 69) / 12)
            phase = 2 * np.pi * np.cumsum(freq * vibrato) / RATE
            brightness = float(rng.uniform(0.6, 1.4))
            for k in range(1, 7):
                if k * freq < 3800:
                    sound += np.sin(k * phase) / k**brightness
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * float(rng.uniform(0.5, 3)))
        parts.append(scale_to_dbm0(sound * envelope, float(rng.uniform(-25, -6))))
        total += length
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def synth() -> ModuleType:
    return sys.modules[__name__]
