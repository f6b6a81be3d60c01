# Transcoding for the bridge when the legs do not share a G.711 law: G.711 <-> linear PCM (for Opus legs,
# whose aiortc track takes and gives int16 frames) and 8 kHz <-> 48 kHz. PCMU<->PCMA never goes through
# linear samples (relay.py uses the translate tables). The resampler is a windowed-sinc polyphase FIR
# (scipy is not a dependency): good enough for telephone-band speech, with the 4 kHz band edge respected.
from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

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
    calls so frame boundaries leave no clicks.

    Polyphase: only the products that count are computed (upsampling skips the stuffed zeros, downsampling
    the outputs it would drop), as one small matrix product per frame: 16 taps per output sample instead
    of 96, 12-16 us for a 20 ms frame each way instead of 20-30 (the bridge runs one per direction
    on every Opus leg)."""

    def __init__(self, from_rate: int, to_rate: int, *, taps_per_phase: int = 16) -> None:
        if from_rate == to_rate or max(from_rate, to_rate) % min(from_rate, to_rate):
            raise ValueError(f"only integer ratios are supported, not {from_rate} -> {to_rate}")
        self.up = to_rate > from_rate
        self.factor = max(from_rate, to_rate) // min(from_rate, to_rate)
        taps = taps_per_phase * self.factor
        # Cut just below the lower rate's Nyquist frequency, measured at the higher rate.
        self._h = _lowpass(taps, 0.45 / self.factor) * (self.factor if self.up else 1)
        reversed_h = self._h[::-1]
        if self.up:
            # Output 6n+p sums input n+r times tap (5-p)+6r (r < taps_per_phase): one column per phase.
            f = self.factor
            self._phases = np.array(
                [[reversed_h[(f - 1 - p) + f * r] for p in range(f)] for r in range(taps_per_phase)]
            )
            self._history = np.zeros(taps_per_phase - 1)  # input samples
        else:
            self._taps = np.ascontiguousarray(reversed_h)
            self._history = np.zeros(taps - 1)  # input samples at the higher rate

    def __call__(self, samples: npt.ArrayLike) -> Samples:
        x = np.asarray(samples, dtype=np.float64)
        data = np.concatenate([self._history, x])
        self._history = data[len(data) - len(self._history) :]
        step = data.strides[0]
        # Overlapping windows as a strided view (no copy); sliding_window_view does the same with about
        # 10 us of checks per call.
        out: npt.NDArray[np.float64]  # np.dot is typed as returning Any
        if self.up:
            width = len(self._phases)
            windows = as_strided(data, (len(data) - width + 1, width), (step, step), writeable=False)
            out = np.dot(windows, self._phases).reshape(-1)
        else:
            width = len(self._taps)
            count = (len(data) - width) // self.factor + 1
            windows = as_strided(data, (count, width), (step * self.factor, step), writeable=False)
            out = np.dot(windows, self._taps)
        # rint and clip in place (np.clip's wrapper alone costs more than the filtering).
        np.rint(out, out=out)
        np.minimum(np.maximum(out, -32768, out=out), 32767, out=out)
        return out.astype(np.int16)
