# DTMF tone synthesis (ITU-T Q.23 frequencies): in-band digits towards peers that did not negotiate
# telephone-event, and test signals for the detector. Levels are in dBm0 for 16-bit linear audio.
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "COL_FREQUENCIES",
    "DBM0_PEAK",
    "DTMF_LAYOUT",
    "ROW_FREQUENCIES",
    "digit_frequencies",
    "dtmf_sequence",
    "dtmf_tone",
    "level_to_amplitude",
]

ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COL_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
# The keypad: row r, column c is DTMF_LAYOUT[r][c].
DTMF_LAYOUT = ("123A", "456B", "789C", "*0#D")

# Peak amplitude of a 0 dBm0 sine in 16-bit linear: G.711 mu-law's full scale is +3.17 dBm0.
DBM0_PEAK = 32768.0 * 10 ** (-3.17 / 20)


def level_to_amplitude(dbm0: float) -> float:
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def digit_frequencies(digit: str) -> tuple[float, float]:
    for row, keys in enumerate(DTMF_LAYOUT):
        col = keys.find(digit.upper()) if len(digit) == 1 else -1
        if col >= 0:
            return ROW_FREQUENCIES[row], COL_FREQUENCIES[col]
    raise ValueError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")


def dtmf_tone(
    digit: str,
    duration: float,
    *,
    rate: int = 8000,
    low_dbm0: float = -10.0,
    high_dbm0: float = -8.0,
    low_offset: float = 0.0,
    high_offset: float = 0.0,
    phase: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Float samples (16-bit scale) of one digit. The default levels are a typical phone's: the high
    group 2 dB above the low group. `*_offset` detunes a tone by a fraction (0.015 = +1.5 %)."""
    low, high = digit_frequencies(digit)
    t = np.arange(round(duration * rate)) / rate
    return level_to_amplitude(low_dbm0) * np.sin(
        2 * np.pi * low * (1 + low_offset) * t + phase
    ) + level_to_amplitude(high_dbm0) * np.sin(2 * np.pi * high * (1 + high_offset) * t + 1.3 * phase)


def dtmf_sequence(
    digits: str, *, tone_s: float = 0.1, gap_s: float = 0.06, rate: int = 8000
) -> npt.NDArray[np.int16]:
    """Int16 samples of `digits` dialled in-band: each tone `tone_s`, then `gap_s` of silence (Q.24 asks
    for at least 40 ms of each)."""
    gap = np.zeros(round(gap_s * rate))
    parts = [np.concatenate([dtmf_tone(d, tone_s, rate=rate), gap]) for d in digits]
    return np.round(np.concatenate(parts)).astype(np.int16) if parts else np.zeros(0, np.int16)
