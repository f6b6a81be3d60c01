# In-band DTMF detection, sans-IO and streaming: `DtmfDetector.feed(samples, now) -> list[Digit]`.
#
# Analysis windows of 120 samples (15 ms at 8 kHz) start every 40 samples. Each is measured with the
# Goertzel algorithm at the 8 DTMF frequencies; Goertzel's output power at frequency f over a window
# is exactly |sum x[n] e^(-j 2 pi f n / fs)|^2, so all windows of a chunk and all frequencies are
# computed at once as a matrix product (`goertzel_power_recursive`, the textbook recursion, is kept
# to show that the two agree). Windows that could not hold a digit stop there; the others are also
# measured at harmonics and, through a Hann window, for the phase that gives each tone's precise
# frequency. A window holds a digit when all of these hold:
#   level     both tones at or above `min_level_dbm0`
#   frequency each tone within `max_frequency_offset` of nominal (Q.24: accept 1.5 %, reject 3.5 %)
#   twist     low group louder than high by at most `normal_twist_db`, high louder than low by at
#             most `reverse_twist_db` (spandsp/Asterisk naming)
#   peaks     each tone `relative_peak_db` above the other three of its group
#   energy    the two tones hold `min_tone_fraction` of the window's energy: noise and most speech fail
#   harmonics the column tone's 2nd harmonic and the row tone's 3rd (its 2nd falls among the column
#             tones) are `harmonic_db` below the fundamentals: instruments and voices have them
# A digit is reported once `min_on_windows` consecutive windows agree (40 ms of tone is always
# detected, 23 ms never) while both tones hold their frequency within `max_drift_hz` (a voice's
# harmonics glide) and are not two harmonics of one pitch with that pitch's other harmonics present
# (a high voice, an instrument's note). A new digit needs `min_gap_windows` windows without the last.
from __future__ import annotations

import enum
import functools
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.media.dsp.tones import COL_FREQUENCIES, DTMF_LAYOUT, ROW_FREQUENCIES, level_to_amplitude

__all__ = [
    "FREQUENCIES",
    "Digit",
    "DtmfBank",
    "DtmfConfig",
    "DtmfDetector",
    "goertzel_power",
    "goertzel_power_recursive",
]

Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int64]

# Digit for (row index * 4 + column index).
_CODES = "".join(DTMF_LAYOUT)
FREQUENCIES = (*ROW_FREQUENCIES, *COL_FREQUENCIES)
_HARMONICS = (*(3 * f for f in ROW_FREQUENCIES), *(2 * f for f in COL_FREQUENCIES))


def _db_to_power(db: float) -> float:
    return float(10 ** (db / 10))


@dataclass(frozen=True, slots=True)
class DtmfConfig:
    rate: int = 8000
    window: int = 120
    hop: int = 40
    min_level_dbm0: float = -30.0
    max_frequency_offset: float = 0.02
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    relative_peak_db: float = 8.0
    min_tone_fraction: float = 0.8
    harmonic_db: float = -12.0
    max_drift_hz: float = 3.0
    min_pitch_hz: float = 150.0
    series_tolerance_hz: float = 4.0
    series_neighbour_db: float = -25.0
    min_on_windows: int = 5
    min_gap_windows: int = 6
    # Samples gathered before analysis runs: numpy's cost is per call, so 40 ms batches halve the
    # CPU of 20 ms ones for at most 20 ms more latency. 0 analyses every chunk as it comes.
    batch: int = 320

    def __post_init__(self) -> None:
        if self.rate < 2 * max(_HARMONICS) * 1.05:
            raise ValueError(f"sample rate {self.rate} is too low for the harmonic checks")
        if not 0 < self.hop <= self.window:
            raise ValueError("need 0 < hop <= window")
        if self.min_on_windows < 2 or self.min_gap_windows < 1:
            raise ValueError("min_on_windows must be at least 2 and min_gap_windows at least 1")


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str
    at: float  # the `now` of the feed() call that confirmed it
    start: float  # estimated time the tone began, on the same clock


class _State(enum.Enum):
    IDLE = "idle"
    CANDIDATE = "candidate"
    ACTIVE = "active"


def _basis(frequencies: tuple[float, ...], window: int, rate: int) -> Floats:
    """Columns cos(w n) for each frequency, then sin(w n)."""
    n = np.arange(window)[:, None]
    omega = 2 * np.pi * np.asarray(frequencies)[None, :] / rate
    return np.concatenate([np.cos(omega * n), np.sin(omega * n)], axis=1)


def goertzel_power(frames: Floats, frequencies: tuple[float, ...], rate: int) -> Floats:
    """Goertzel power of each row of `frames` (windows x samples) at each frequency, as a matrix
    product: the closed form of the recursion's result."""
    projected = frames @ _basis(frequencies, frames.shape[1], rate)
    k = len(frequencies)
    return np.asarray(projected[:, :k] ** 2 + projected[:, k:] ** 2)


def goertzel_power_recursive(frames: Floats, frequencies: tuple[float, ...], rate: int) -> Floats:
    """The textbook Goertzel recursion, vectorised over windows and frequencies:
    s[n] = x[n] + 2 cos(w) s[n-1] - s[n-2];  power = s1^2 + s2^2 - 2 cos(w) s1 s2."""
    coeff = 2 * np.cos(2 * np.pi * np.asarray(frequencies) / rate)[None, :]
    s1 = np.zeros((frames.shape[0], len(frequencies)))
    s2 = np.zeros_like(s1)
    for n in range(frames.shape[1]):
        s0 = frames[:, n : n + 1] + coeff * s1 - s2
        s2 = s1
        s1 = s0
    return np.asarray(s1**2 + s2**2 - coeff * s1 * s2)


@functools.cache
def _tables(cfg: DtmfConfig) -> tuple[Floats, Floats, Floats]:
    """Hann window and projection matrices, shared by every detector with the same config."""
    hann = np.hanning(cfg.window)
    fundamentals = np.ascontiguousarray(_basis(FREQUENCIES, cfg.window, cfg.rate))
    # Second stage: harmonics, and the fundamentals through a Hann window, whose phases are free of
    # the other tone's leakage and so measure each tone's frequency.
    details = np.ascontiguousarray(
        np.concatenate(
            [
                _basis(_HARMONICS, cfg.window, cfg.rate),
                hann[:, None] * _basis(FREQUENCIES, cfg.window, cfg.rate),
            ],
            axis=1,
        )
    )
    for table in (hann, fundamentals, details):
        table.flags.writeable = False
    return hann, fundamentals, details


def _frame_index(window: int, hop: int, count: int) -> npt.NDArray[np.intp]:
    """Indices that cut `count` overlapping windows out of a buffer (cached for streaming sizes)."""
    if count <= 64:
        return _cached_frame_index(window, hop, count)
    return np.arange(count)[:, None] * hop + np.arange(window)[None, :]


@functools.lru_cache(maxsize=256)
def _cached_frame_index(window: int, hop: int, count: int) -> npt.NDArray[np.intp]:
    index = np.arange(count)[:, None] * hop + np.arange(window)[None, :]
    index.flags.writeable = False
    return index


class DtmfDetector:
    """Streaming detector for one audio channel. Feed it decoded samples (16-bit scale, any chunk
    size) with `now`, the time at which the chunk's last sample was received; it returns the digits
    confirmed by this chunk, once per key press."""

    def __init__(self, config: DtmfConfig | None = None) -> None:
        self.config = cfg = config or DtmfConfig()
        self._hann, self._fundamentals, self._details = _tables(cfg)
        nominal = np.asarray(FREQUENCIES)
        self._nominal_advance = np.exp(-2j * np.pi * nominal * cfg.hop / cfg.rate)
        self._max_offset = nominal * cfg.max_frequency_offset
        # A tone of peak amplitude A gives Goertzel power (A N / 2)^2 on its frequency.
        self._min_power = (level_to_amplitude(cfg.min_level_dbm0) * cfg.window / 2) ** 2
        # A window whose samples all stay below this cannot hold a tone pair at the minimum level
        # (with the largest off-frequency correction and some margin).
        self._quiet_peak = level_to_amplitude(cfg.min_level_dbm0) / 4
        # Two tones holding all of a window's energy E give powers summing to E N / 2.
        self._fraction_scale = cfg.min_tone_fraction * cfg.window / 2
        self._normal_twist = _db_to_power(cfg.normal_twist_db)
        self._reverse_twist = _db_to_power(cfg.reverse_twist_db)
        self._relative_peak = _db_to_power(cfg.relative_peak_db)
        self._harmonic = _db_to_power(cfg.harmonic_db)
        self._series_level = _db_to_power(cfg.series_neighbour_db)
        widest = max(FREQUENCIES) * cfg.max_frequency_offset
        self._max_boost = float(1 / self._kernel_gain(np.array([widest]))[0])
        self.reset()

    def reset(self) -> None:
        self._carry: Floats = np.zeros(0)
        self._last_frame: Floats = np.zeros(self.config.window)
        self._position = 0  # stream index of the first sample in _carry
        self._state = _State.IDLE
        self._code = -1
        self._count = 0
        self._offsets: deque[tuple[float, float]] = deque(maxlen=self.config.min_on_windows - 1)
        self._start_index = 0
        self.windows_seen = 0

    def _kernel_gain(self, offset_hz: Floats) -> Floats:
        """Share of a tone's power that a rectangular window keeps `offset_hz` off its frequency."""
        window = self.config.window
        x = np.pi * np.clip(offset_hz, -200.0, 200.0) / self.config.rate
        safe = np.where(np.abs(x) < 1e-12, 1e-12, x)
        return np.asarray(np.maximum((np.sin(window * safe) / (window * np.sin(safe))) ** 2, 0.25))

    def classify(self, frames: Floats) -> tuple[Codes, Floats, Floats]:
        """Per window: the digit code (row * 4 + column) or -1, and the measured frequency offsets
        (Hz) of its row and column tones. Windows must be consecutive in one stream: the first of a
        call is compared with the last window of the previous call."""
        result = self._classify(frames)
        if result is None:
            zeros = np.zeros(len(frames))
            return np.full(len(frames), -1), zeros, zeros
        return result

    def screen(self, frames: Floats) -> npt.NDArray[np.bool_]:
        """Per window: could it hold a digit? The checks that need no phase (level, energy, peaks,
        twist), bounded for the largest off-frequency correction, so False is final. The first
        bound (all eight tone powers together against the level and energy thresholds: one
        product, two sums) is what keeps a channel of speech, noise or silence cheap."""
        projected = frames @ self._fundamentals
        energy = np.einsum("ij,ij->i", frames, frames)
        boost = self._max_boost
        tones = np.einsum("ij,ij->i", projected, projected) * boost
        possible: npt.NDArray[np.bool_] = (tones >= energy * self._fraction_scale) & (
            tones >= 2 * self._min_power
        )
        if not possible.any():
            return possible
        # The rest only for the windows still in question (usually a few).
        which = np.flatnonzero(possible)
        squared = projected[which] ** 2
        power = squared[:, :8] + squared[:, 8:]
        rows, cols = power[:, :4], power[:, 4:]
        raw_r = rows.max(axis=1)
        raw_c = cols.max(axis=1)
        rows_sorted = np.sort(rows, axis=1)
        cols_sorted = np.sort(cols, axis=1)
        possible[which] = (
            (raw_r * boost >= self._min_power)
            & (raw_c * boost >= self._min_power)
            & ((raw_r + raw_c) * boost >= energy[which] * self._fraction_scale)
            & (rows_sorted[:, 2] * self._relative_peak < raw_r)
            & (cols_sorted[:, 2] * self._relative_peak < raw_c)
            & (raw_r <= raw_c * boost * self._normal_twist)
            & (raw_c <= raw_r * boost * self._reverse_twist)
        )
        return possible

    def _classify(
        self, frames: Floats, possible: npt.NDArray[np.bool_] | None = None
    ) -> tuple[Codes, Floats, Floats] | None:
        """classify(), or None when no window can hold a digit (most audio stops at the screen)."""
        cfg = self.config
        previous_frame = self._last_frame
        self._last_frame = frames[-1]
        if possible is None:
            possible = self.screen(frames)
        if not possible.any():
            return None
        projected = frames @ self._fundamentals
        projected *= projected
        power = projected[:, :8] + projected[:, 8:]
        rows, cols = power[:, :4], power[:, 4:]
        raw_r = rows.max(axis=1)
        raw_c = cols.max(axis=1)
        energy = np.einsum("ij,ij->i", frames, frames)

        details = np.vstack((previous_frame[None, :], frames)) @ self._details
        harmonics = details[1:, :8] ** 2 + details[1:, 8:16] ** 2
        spectrum = details[:, 16:24] - 1j * details[:, 24:32]
        # Each tone's offset from its nominal frequency, from the phase advance of its windowed
        # DFT between consecutive windows (one hop apart: unambiguous within +-rate / 2 hop).
        advance = np.angle(spectrum[1:] * np.conj(spectrum[:-1]) * self._nominal_advance)
        offset = advance * (cfg.rate / (2 * np.pi * cfg.hop))

        r = rows.argmax(axis=1)
        c = cols.argmax(axis=1)
        idx = np.arange(len(frames))
        off_r = offset[idx, r]
        off_c = offset[idx, 4 + c]
        # Restore the power a detuned tone loses to the rectangular window, so that it still
        # passes the level and energy checks; the frequency check bounds the correction.
        pr = raw_r / self._kernel_gain(off_r)
        pc = raw_c / self._kernel_gain(off_c)
        ok = (
            possible
            & (pr >= self._min_power)
            & (pc >= self._min_power)
            & (np.abs(off_r) <= self._max_offset[r])
            & (np.abs(off_c) <= self._max_offset[4 + c])
            & (pr <= pc * self._normal_twist)
            & (pc <= pr * self._reverse_twist)
            & (pr + pc >= energy * self._fraction_scale)
            # A detuned tone's 3rd (2nd) harmonic is 3 (2) times as far off: judge it at full power.
            & (harmonics[idx, r] / self._kernel_gain(3 * off_r) <= pr * self._harmonic)
            & (harmonics[idx, 4 + c] / self._kernel_gain(2 * off_c) <= pc * self._harmonic)
        )
        return np.where(ok, r * 4 + c, -1), off_r, off_c

    def feed(self, samples: npt.ArrayLike, now: float) -> list[Digit]:
        cfg = self.config
        chunk = np.asarray(samples, dtype=np.float64).ravel()
        buf = np.concatenate((self._carry, chunk)) if self._carry.size else chunk
        if buf.size < max(cfg.window, cfg.batch):
            self._carry = buf if buf is not chunk else chunk.copy()
            return []
        count = (buf.size - cfg.window) // cfg.hop + 1
        frames = buf[_frame_index(cfg.window, cfg.hop, count)]
        self._carry = buf[count * cfg.hop :].copy()
        end_index = self._position + buf.size
        if max(buf.max(), -buf.min()) < self._quiet_peak:
            # Too quiet for any tone at the minimum level: skip the analysis (silence, pauses, hold).
            self._last_frame = frames[-1]
            return self._decide(None, frames, end_index, now)
        return self._decide(self._classify(frames), frames, end_index, now)

    def _decide(
        self, result: tuple[Codes, Floats, Floats] | None, frames: Floats, end_index: int, now: float
    ) -> list[Digit]:
        """Run the state machine over the windows' decisions (None: no window holds a digit)."""
        cfg = self.config
        count = len(frames)
        digits: list[Digit] = []
        if result is None:
            if self._state is not _State.IDLE:
                self._quiet(count)
        else:
            codes, off_r, off_c = result
            for i, (code, row_offset, col_offset) in enumerate(
                zip(codes.tolist(), off_r.tolist(), off_c.tolist(), strict=True)
            ):
                digit = self._step(code, row_offset, col_offset, self._position + i * cfg.hop, frames[i])
                if digit is not None:
                    begun = now - (end_index - self._start_index) / cfg.rate
                    digits.append(Digit(digit, now, begun))
        self._position += count * cfg.hop
        self.windows_seen += count
        return digits

    def _quiet(self, windows: int) -> None:
        """`windows` windows without any digit."""
        if self._state is _State.ACTIVE:
            self._count += windows
            if self._count >= self.config.min_gap_windows:
                self._state = _State.IDLE
        else:
            self._state = _State.IDLE

    def _step(
        self, code: int, row_offset: float, col_offset: float, window_start: int, frame: Floats
    ) -> str | None:
        """Advance the on/off state machine by one window; the digit when one is confirmed."""
        cfg = self.config
        if self._state is _State.ACTIVE:
            if code == self._code:
                self._count = 0
            else:
                self._count += 1  # windows without the active digit
                if self._count >= cfg.min_gap_windows:
                    self._state = _State.IDLE
            return None
        if code < 0:
            self._state = _State.IDLE
            return None
        if self._state is not _State.CANDIDATE or code != self._code:
            self._state = _State.CANDIDATE
            self._code = code
            self._count = 1
            self._offsets.clear()
            self._start_index = window_start
            # This window's offset compares it with one the tone only partly covered: biased, so
            # it stays out of the drift check.
            return None
        self._count += 1
        self._offsets.append((row_offset, col_offset))
        if self._count < cfg.min_on_windows:
            return None
        # A key's tones hold their frequency; a voice's harmonics glide with its pitch. Judge the
        # latest windows: a steadier stretch later in the same tone still counts.
        rows = [offset[0] for offset in self._offsets]
        cols = [offset[1] for offset in self._offsets]
        if max(rows) - min(rows) > cfg.max_drift_hz or max(cols) - min(cols) > cfg.max_drift_hz:
            return None
        row_hz = ROW_FREQUENCIES[self._code // 4] + sum(rows) / len(rows)
        col_hz = COL_FREQUENCIES[self._code % 4] + sum(cols) / len(cols)
        if self._voiced(frame, row_hz, col_hz):
            return None
        self._state = _State.ACTIVE
        self._count = 0
        return _CODES[self._code]

    def _voiced(self, frame: Floats, row_hz: float, col_hz: float) -> bool:
        """True when the tones are harmonics m f0 and n f0 of one pitch f0 >= `min_pitch_hz` and the
        harmonics next to them are there too: a high voice or an instrument, not a keypad. No nominal
        DTMF pair is within 6 Hz of such a relation, so accurate key presses never get here."""
        cfg = self.config
        for m in range(1, 12):
            f0 = row_hz / m
            if f0 < cfg.min_pitch_hz:
                break
            n = round(col_hz / f0)
            if abs(n * f0 - col_hz) > cfg.series_tolerance_hz:
                continue
            others = sorted({m - 1, m + 1, n - 1, n + 1} - {0, m, n})
            neighbours = tuple(k * f0 for k in others if k * f0 < cfg.rate / 2)
            power = self._hann_power(frame, (row_hz, col_hz, *neighbours))
            if power[2:].max() > min(power[0], power[1]) * self._series_level:
                return True
        return False

    def _hann_power(self, frame: Floats, frequencies: tuple[float, ...]) -> Floats:
        omega = 2 * np.pi * np.asarray(frequencies) / self.config.rate
        phases = np.arange(self.config.window)[:, None] * omega[None, :]
        weighted = frame * self._hann
        return np.asarray((weighted @ np.cos(phases)) ** 2 + (weighted @ np.sin(phases)) ** 2)


class DtmfBank:
    """Detection for many channels fed in lockstep (a media process ticking every 20 ms): channel
    c's samples are row c of one array, one numpy pass screens every channel's windows, and only
    channels with a possible tone (or a digit in progress) get the per-channel analysis. The digits
    and their timing are those of one DtmfDetector per channel; numpy's per-call cost is paid once
    per tick instead of once per channel. Reuse a row for a new call after `reset(channel)`."""

    def __init__(self, channels: int, config: DtmfConfig | None = None) -> None:
        if channels < 1:
            raise ValueError("a bank needs at least one channel")
        self.config = cfg = config or DtmfConfig()
        self.channels = channels
        self._detectors = [DtmfDetector(cfg) for _ in range(channels)]
        self._screen = self._detectors[0]  # for the shared tables and thresholds
        self._carry: Floats = np.zeros((channels, 0))
        self._last: Floats = np.zeros((channels, cfg.window))
        self._position = 0
        self._busy: set[int] = set()  # channels with a digit candidate or an active digit

    def reset(self, channel: int) -> None:
        self._detectors[channel].reset()
        self._detectors[channel]._position = self._position
        self._last[channel] = 0.0
        self._busy.discard(channel)

    def feed(self, samples: npt.ArrayLike, now: float) -> list[tuple[int, Digit]]:
        """`samples` is channels x n (every channel the same n); returns (channel, digit) pairs."""
        cfg = self.config
        chunk = np.asarray(samples, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} rows of samples, got shape {chunk.shape}")
        buf = np.concatenate((self._carry, chunk), axis=1) if self._carry.shape[1] else chunk
        if buf.shape[1] < max(cfg.window, cfg.batch):
            self._carry = buf if buf is not chunk else chunk.copy()
            return []
        count = (buf.shape[1] - cfg.window) // cfg.hop + 1
        buf = np.ascontiguousarray(buf)
        row, step = buf.strides
        # channels x count x window, then copied once into rows of windows (a fancy index here
        # would produce a transposed layout that costs far more to flatten).
        frames = np.lib.stride_tricks.as_strided(
            buf,
            shape=(self.channels, count, cfg.window),
            strides=(row, cfg.hop * step, step),
            writeable=False,
        ).copy()
        self._carry = buf[:, count * cfg.hop :].copy()
        end_index = self._position + buf.shape[1]
        previous = self._last
        self._last = frames[:, -1, :].copy()

        flat = frames.reshape(-1, cfg.window)
        possible = self._screen.screen(flat).reshape(self.channels, count)
        candidates = set(np.flatnonzero(possible.any(axis=1)).tolist())
        found: list[tuple[int, Digit]] = []
        for channel in sorted(candidates | self._busy):
            detector = self._detectors[channel]
            detector._position = self._position
            result = None
            if channel in candidates:
                detector._last_frame = previous[channel]
                result = detector._classify(frames[channel], possible[channel])
            found += [(channel, digit) for digit in detector._decide(result, frames[channel], end_index, now)]
            if detector._state is _State.IDLE:
                self._busy.discard(channel)
            else:
                self._busy.add(channel)
        self._position += count * cfg.hop
        return found
