# Adaptive jitter buffer for the legs where the platform itself terminates audio (in-band DTMF
# detection, recording, speech recognition); relayed legs never pass through one. Sans-IO: packets
# go in with `push(..., now)`, the playout clock calls `pop(now)` once per frame duration, and every
# decision (reorder, late, duplicate, gap, grow, shrink) is visible in the return values and `stats`.
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from services.media.rtp.packet import ts_diff

__all__ = [
    "BufferState",
    "Frame",
    "FrameKind",
    "JitterBuffer",
    "JitterBufferStats",
    "PushResult",
]


class PushResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same sequence number already buffered or recently played
    LATE = "late"  # its playout time has passed (the slot was played or reported missing)
    EARLY = "early"  # further ahead than `horizon`: a broken or restarted sender; dropped


class FrameKind(enum.Enum):
    AUDIO = "audio"
    MISSING = "missing"  # no packet for this slot in time: the consumer conceals it


class BufferState(enum.Enum):
    IDLE = "idle"  # nothing received yet
    BUFFERING = "buffering"  # waiting `target_delay` after the first packet (or after an underrun)
    PLAYING = "playing"


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    timestamp: int  # RTP timestamp of the slot (32-bit)
    samples: int
    payload: bytes = b""
    sequence_number: int | None = None
    marker: bool = False


@dataclass(slots=True)
class JitterBufferStats:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    early: int = 0
    played: int = 0
    missing: int = 0  # slots reported as MISSING (loss or too late)
    underruns: int = 0  # the buffer ran dry while playing and re-buffered
    dropped: int = 0  # frames skipped to shrink the delay
    stretched: int = 0  # pops answered with None to grow the delay


class _Adapt(enum.Enum):
    SHRINK = "shrink"
    STRETCH = "stretch"


@dataclass(slots=True)
class _Entry:
    seq: int
    payload: bytes
    samples: int
    marker: bool


@dataclass(slots=True)
class _Window:
    """Extremes of the buffered level over the last few pops, for the grow/shrink decision."""

    count: int = 0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, level: float) -> None:
        self.count += 1
        self.low = min(self.low, level)
        self.high = max(self.high, level)

    def clear(self) -> None:
        self.count = 0
        self.low = float("inf")
        self.high = float("-inf")


class JitterBuffer:
    """Reorders packets by RTP timestamp and plays them out `target_delay` after the fastest ones.

    The target follows the measured delay variation: the `quantile` (default 95th percentile) of
    transit time minus its minimum over the last `window` packets, bounded to [min_delay, max_delay].
    The playout level (audio buffered from the next slot on) is compared with the target every
    `adapt_every` pops: above target + one frame throughout, one frame is dropped; below target - one
    frame throughout, one pop returns None (a pause) so that the delay grows before it underruns.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay: float = 0.02,
        max_delay: float = 0.2,
        initial_delay: float = 0.06,
        horizon: float = 1.0,
        window: int = 250,
        quantile: float = 0.95,
        adapt_every: int = 10,
    ) -> None:
        if not 0 < min_delay <= max_delay:
            raise ValueError("need 0 < min_delay <= max_delay")
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock_rate and frame_samples must be positive")
        if not 0.0 < quantile <= 1.0:
            raise ValueError("quantile must be in (0, 1]")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.horizon = horizon
        self.quantile = quantile
        self.adapt_every = adapt_every
        self.stats = JitterBufferStats()
        self._target = min(max(initial_delay, min_delay), max_delay)
        self._frame_seconds = frame_samples / clock_rate
        self._transits: deque[float] = deque(maxlen=window)
        self._pushes_since_estimate = 0
        self._level_window = _Window()
        self.reset()

    def reset(self) -> None:
        """Forget the stream (new SSRC, re-INVITE to another source); keeps the learned target."""
        self.state = BufferState.IDLE
        self._buffer: dict[int, _Entry] = {}
        self._buffered_seqs: set[int] = set()
        self._end = 0  # extended timestamp where the newest buffered packet ends
        self._ref = 0  # an extended timestamp and ...
        self._ref_raw = 0  # ... its 32-bit value, for unwrapping
        self._next: int = 0  # extended timestamp of the next slot to play (PLAYING)
        self._played_until: int | None = None
        self._start_at: float | None = None
        self._recent: deque[int] = deque(maxlen=64)
        self._recent_set: set[int] = set()
        self._transits.clear()
        self._level_window.clear()

    @property
    def target_delay(self) -> float:
        return self._target

    @property
    def level(self) -> float:
        """Seconds of audio buffered from the next slot to the end of the newest packet."""
        if not self._buffer:
            return 0.0
        start = self._next if self.state is BufferState.PLAYING else min(self._buffer)
        return max(0, self._end - start) / self.clock_rate

    def __len__(self) -> int:
        return len(self._buffer)

    def _unwrap(self, timestamp: int) -> int:
        return self._ref + ts_diff(timestamp, self._ref_raw)

    def _set_ref(self, extended: int) -> None:
        self._ref = extended
        self._ref_raw = extended & 0xFFFFFFFF

    def push(
        self,
        seq: int,
        timestamp: int,
        payload: bytes,
        now: float,
        *,
        marker: bool = False,
        samples: int | None = None,
    ) -> PushResult:
        """Offer one received packet. `samples` is its duration (G.711: len(payload))."""
        duration = samples if samples is not None else self.frame_samples
        if self.state is BufferState.IDLE:
            self._set_ref(timestamp)
        ext = self._unwrap(timestamp)

        if seq in self._recent_set or seq in self._buffered_seqs:
            self.stats.duplicates += 1
            return PushResult.DUPLICATE
        if self._played_until is not None and ext < self._played_until:
            # An empty buffer after an underrun, or the long silence of a DTX sender, accepts a new
            # talkspurt anywhere ahead; only what lies behind the playout point is late.
            self.stats.late += 1
            return PushResult.LATE
        if ext in self._buffer:
            self.stats.duplicates += 1
            return PushResult.DUPLICATE
        if self._buffer:
            anchor = self._next if self.state is BufferState.PLAYING else min(self._buffer)
            if ext - anchor > self.horizon * self.clock_rate:
                self.stats.early += 1
                return PushResult.EARLY

        was_empty = not self._buffer
        self._buffer[ext] = _Entry(seq, payload, duration, marker)
        self._buffered_seqs.add(seq)
        self._end = max(self._end, ext + duration) if not was_empty else ext + duration
        self.stats.accepted += 1
        self._observe_transit(now - ext / self.clock_rate)
        if self.state is BufferState.IDLE or (self.state is BufferState.BUFFERING and was_empty):
            self.state = BufferState.BUFFERING
            self._start_at = now + self._target
        return PushResult.ACCEPTED

    def _observe_transit(self, transit: float) -> None:
        if self._transits and abs(transit - self._transits[-1]) > self.horizon:
            self._transits.clear()  # a timeline jump, not jitter: start measuring afresh
        self._transits.append(transit)
        self._pushes_since_estimate += 1
        if self._pushes_since_estimate >= 8 or len(self._transits) < 8:
            self._pushes_since_estimate = 0
            self._estimate_target()

    def _estimate_target(self) -> None:
        if len(self._transits) < 2:
            return
        ordered = sorted(self._transits)
        spread = ordered[int(self.quantile * (len(ordered) - 1))] - ordered[0]
        self._target = min(max(spread, self.min_delay), self.max_delay)

    def pop(self, now: float) -> Frame | None:
        """The frame to play now; None means nothing to play (buffering, underrun or a pause)."""
        if self.state is BufferState.IDLE:
            return None
        if self.state is BufferState.BUFFERING:
            if not self._buffer or self._start_at is None or now < self._start_at:
                return None
            self.state = BufferState.PLAYING
            self._next = min(self._buffer)
            self._set_ref(self._next)
            self._level_window.clear()

        if self._buffer and self._adapt() is _Adapt.STRETCH:
            return None
        if not self._buffer:
            self.stats.underruns += 1
            self._rebuffer(None)
            return None

        entry = self._buffer.pop(self._next, None)
        if entry is None:
            upcoming = min(self._buffer)
            gap = upcoming - self._next
            if gap > self.max_delay * self.clock_rate + self.frame_samples:
                # Too long to be loss or jitter: a silence (DTX) or a timeline jump. Start the next
                # talkspurt afresh, `target_delay` after its first packet arrived.
                self._next = upcoming
                self._rebuffer(now)
                return None
            if gap < self.frame_samples:
                # A packet that starts inside this slot (a sender with another packet size).
                self._next = upcoming
                entry = self._buffer.pop(upcoming)
        if entry is None:
            frame = Frame(FrameKind.MISSING, self._next & 0xFFFFFFFF, self.frame_samples)
            self.stats.missing += 1
            self._advance(self.frame_samples)
            return frame
        self._buffered_seqs.discard(entry.seq)
        frame = Frame(
            FrameKind.AUDIO,
            self._next & 0xFFFFFFFF,
            entry.samples,
            entry.payload,
            entry.seq,
            entry.marker,
        )
        self.stats.played += 1
        self._remember(entry.seq)
        self._advance(entry.samples)
        return frame

    def _rebuffer(self, now: float | None) -> None:
        self.state = BufferState.BUFFERING
        self._start_at = None if now is None else now + self._target

    def _advance(self, samples: int) -> None:
        self._next += samples
        self._played_until = self._next
        self._set_ref(self._next)

    def _remember(self, seq: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)

    def _adapt(self) -> _Adapt | None:
        """Grow or shrink towards the target, at most one frame per `adapt_every` pops."""
        window = self._level_window
        window.add(self.level)
        if window.count < self.adapt_every:
            return None
        low, high = window.low, window.high
        window.clear()
        if low > self._target + self._frame_seconds:
            entry = self._buffer.pop(self._next, None)
            if entry is not None:
                self._buffered_seqs.discard(entry.seq)
                self._remember(entry.seq)
            self.stats.dropped += 1
            self._advance(entry.samples if entry is not None else self.frame_samples)
            return _Adapt.SHRINK
        if high < self._target - self._frame_seconds:
            self.stats.stretched += 1
            return _Adapt.STRETCH
        return None
