# Transcoding for the bridge when the legs do not share a G.711 law: G.711 <-> linear PCM (for Opus legs,
# whose aiortc track takes and gives int16 frames) and 8 kHz <-> 48 kHz. PCMU<->PCMA never goes through
# linear samples (relay.py uses the translate tables). The resampler is a windowed-sinc polyphase FIR
# (scipy is not a dependency): good enough for telephone-band speech, with the 4 kHz band edge respected.
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from services.media.rtp.g711 import G711

__all__ = ["Resampler", "g711_to_pcm", "pcm_to_g711"]

Samples = npt.NDArray[np.int16]


def g711_to_pcm(law: G711, payload: bytes) -> Samples:
    return law.decode(payload)


def pcm_to_g711(law: G711, samples: npt.ArrayLike) -> bytes:
    return law.encode(samples)


def _lowpass(taps: int, cutoff: float) -> npt.NDArray[np.float64]:
    """Windowed-sinc low-pass, `cutoff` as a fraction of the sample rate, unity gain at DC."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * n) * np.blackman(taps)
    return np.asarray(h / h.sum(), dtype=np.float64)


class Resampler:
    """Streaming integer-ratio resampler (8 kHz <-> 48 kHz: factor 6). Keeps its filter history between
    calls so frame boundaries leave no clicks."""

    def __init__(self, from_rate: int, to_rate: int, *, taps_per_phase: int = 16) -> None:
        if from_rate == to_rate or max(from_rate, to_rate) % min(from_rate, to_rate):
            raise ValueError(f"only integer ratios are supported, not {from_rate} -> {to_rate}")
        self.up = to_rate > from_rate
        self.factor = max(from_rate, to_rate) // min(from_rate, to_rate)
        taps = taps_per_phase * self.factor
        # Cut just below the lower rate's Nyquist frequency, measured at the higher rate.
        self._h = _lowpass(taps, 0.45 / self.factor) * (self.factor if self.up else 1)
        self._history = np.zeros(taps - 1)

    def __call__(self, samples: npt.ArrayLike) -> Samples:
        x = np.asarray(samples, dtype=np.float64)
        if self.up:
            stuffed = np.zeros(len(x) * self.factor)
            stuffed[:: self.factor] = x
            x = stuffed
        data = np.concatenate([self._history, x])
        filtered = np.convolve(data, self._h, mode="valid")
        self._history = data[len(data) - len(self._h) + 1 :]
        if not self.up:
            filtered = filtered[:: self.factor]
        return np.clip(np.rint(filtered), -32768, 32767).astype(np.int16)
