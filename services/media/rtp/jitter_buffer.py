# Adaptive jitter buffer for the legs where the platform itself terminates audio (bridges to WebRTC,
# in-band DTMF detection, recording); relayed legs never pass through one. Sans-IO: packets go in with
# `push(..., now)`, the playout clock calls `pop(now)` once per frame duration, and every decision
# (reorder, late, duplicate, conceal, grow, shrink, restart) is visible in the return values and `stats`.
#
# Playout is scheduled in time, not in whole frames buffered. Every packet's transit (arrival time minus
# its RTP timestamp in seconds) is measured; the slot with timestamp `ts` is due at
# `ts / clock_rate + base + target`, where `base` is the fastest transit seen in the window and `target`
# a high quantile of how much later than that packets arrive (their lateness), in seconds. A pop plays the
# next slot once it is due: its packet if it came, else a MISSING frame that the consumer conceals, and
# the next pop plays the following slot in order (no re-buffering: an isolated late packet costs one
# concealed frame). The target grows as soon as lateness grows (a pop that finds the next slot not yet due
# returns None: a pause of one frame), and shrinks back once a burst has left the window (a frame is
# skipped when every slot of the last `adapt_every` pops was due a frame and more before its pop).
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

# At least this many measured packets before the target may fall below its starting value: two packets
# that happen to arrive alike say nothing about the network yet.
_MIN_SAMPLES = 8
# A shrink needs every slot of the adaptation window this much later than one frame past its deadline, so
# that the timing noise of the pops themselves does not alternate a pause and a skip.
_SHRINK_TOLERANCE = 0.001
# Packets whose transit agrees within half a frame and sits this many packets in a row beyond the jump
# threshold are a new timeline (a sender that restarted its timestamps), not a delay spike.
_JUMP_CONFIRM = 3


class PushResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same sequence number already buffered or recently played
    LATE = "late"  # its slot was played or concealed already
    EARLY = "early"  # further ahead than `horizon`: a broken or restarted sender; dropped


class FrameKind(enum.Enum):
    AUDIO = "audio"
    MISSING = "missing"  # the slot was due and no packet had come: the consumer conceals it


class BufferState(enum.Enum):
    IDLE = "idle"  # nothing received yet (or the stream restarted)
    BUFFERING = "buffering"  # waiting for the first buffered slot to fall due (start, or after a silence)
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
    missing: int = 0  # slots reported as MISSING (loss or too late): concealed by the consumer
    underruns: int = 0  # the stream went quiet (longer than `max_conceal` frames) while playing
    dropped: int = 0  # slots skipped to shrink the delay
    stretched: int = 0  # pops answered with None to grow the delay
    restarts: int = 0  # a new SSRC or a timestamp jump: the stream started afresh
    flushed: int = 0  # packets still buffered when the stream restarted


@dataclass(slots=True)
class _Entry:
    seq: int
    payload: bytes
    samples: int
    marker: bool


class JitterBuffer:
    """Reorders packets by RTP timestamp and plays each slot `target_delay` after the fastest packets.

    `target_delay` is the `quantile` (default 99.5th percentile) of the lateness of the last `window`
    packets (default 500: 10 s of 20 ms packets) (transit minus the fastest transit among them), bounded to [min_delay, max_delay]. It starts at
    `initial_delay`, rises at once when the estimate does and falls only when the estimate is more than
    `fall_hysteresis` below it. A slot that is due without its packet is a MISSING frame; after
    `max_conceal` of them in a row with nothing buffered the stream is taken as quiet (a silence, DTX) and
    the next packet starts playout again when it falls due.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay: float = 0.004,
        max_delay: float = 0.2,
        initial_delay: float = 0.06,
        horizon: float = 1.0,
        window: int = 500,
        quantile: float = 0.995,
        adapt_every: int = 10,
        max_conceal: int = 10,
        fall_hysteresis: float = 0.002,
    ) -> None:
        if not 0 <= min_delay <= max_delay or max_delay <= 0:
            raise ValueError("need 0 <= min_delay <= max_delay and max_delay > 0")
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock_rate and frame_samples must be positive")
        if not 0.0 < quantile <= 1.0:
            raise ValueError("quantile must be in (0, 1]")
        if max_conceal < 1 or adapt_every < 1 or window < 2:
            raise ValueError("max_conceal and adapt_every must be at least 1, window at least 2")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.horizon = horizon
        self.quantile = quantile
        self.adapt_every = adapt_every
        self.max_conceal = max_conceal
        self.fall_hysteresis = fall_hysteresis
        self.stats = JitterBufferStats()
        self._target = min(max(initial_delay, min_delay), max_delay)
        self._frame_seconds = frame_samples / clock_rate
        # Beyond this, a change of transit cannot be jitter the buffer would wait for anyway.
        self._jump = max_delay + self._frame_seconds
        self._transits: deque[float] = deque(maxlen=window)
        self._base = 0.0  # the fastest transit in _transits, as of the last estimate
        self._pushes_since_estimate = 0
        self._ssrc: int | None = None
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
        self._recent: deque[int] = deque(maxlen=64)
        self._recent_set: set[int] = set()
        self._transits.clear()
        self._pushes_since_estimate = 0
        self._ages_low = float("inf")  # the smallest age of a played slot in this adaptation window
        self._ages_count = 0
        self._missing_run = 0  # MISSING slots in a row
        self._jump_run = 0
        self._jump_transit = 0.0
        self._last_arrival = float("-inf")
        self._last_ext = 0
        self._last_pop: float | None = None

    @property
    def target_delay(self) -> float:
        """Seconds a slot waits after the fastest packets would have brought it."""
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
        ssrc: int | None = None,
    ) -> PushResult:
        """Offer one received packet. `samples` is its duration (G.711: len(payload)); `ssrc`, when given,
        restarts the stream when it changes (a new source's sequence and timestamps are unrelated)."""
        duration = samples if samples is not None else self.frame_samples
        if ssrc is not None:
            if self._ssrc is not None and ssrc != self._ssrc and self.state is not BufferState.IDLE:
                self._restart()
            self._ssrc = ssrc
        if self.state is BufferState.IDLE:
            self._set_ref(timestamp)
        ext = self._unwrap(timestamp)
        transit = now - ext / self.clock_rate
        if self._transits and self._is_jump(transit, marker):
            self._restart()
            self._set_ref(timestamp)
            ext = self._unwrap(timestamp)
            transit = now - ext / self.clock_rate

        if seq in self._recent_set or seq in self._buffered_seqs:
            self.stats.duplicates += 1
            return PushResult.DUPLICATE
        if self._played_until is not None and ext < self._played_until:
            # Its slot was played or concealed: too late to use, but it says how late packets come.
            self._observe_transit(transit, now, ext)
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
        self._observe_transit(transit, now, ext)
        if self.state is BufferState.IDLE:
            self.state = BufferState.BUFFERING
        return PushResult.ACCEPTED

    def _is_jump(self, transit: float, marker: bool) -> bool:
        """Whether this packet starts a new timeline: its transit is further from the fastest than any
        jitter we would wait for, and either it says so (marker: the first packet of a talkspurt) or the
        packets before it agreed. Packets of a delay spike arrive late together and so disagree."""
        if abs(transit - self._base) <= self._jump:
            self._jump_run = 0
            return False
        if marker:
            return True
        if self._jump_run and abs(transit - self._jump_transit) < self._frame_seconds / 2:
            self._jump_run += 1
        else:
            self._jump_run = 1
        self._jump_transit = transit
        return self._jump_run >= _JUMP_CONFIRM

    def _restart(self) -> None:
        self.stats.restarts += 1
        self.stats.flushed += len(self._buffer)
        self.reset()

    def _observe_transit(self, transit: float, now: float, ext: int) -> None:
        bunched = now - self._last_arrival < self._frame_seconds / 2 and ext > self._last_ext
        self._last_arrival, self._last_ext = now, ext
        if (
            self.state is BufferState.PLAYING
            and self._last_pop is not None
            and now - self._last_pop > 1.5 * self._frame_seconds
        ):
            # The pops are overdue: our own process stalled (the worker's clock ticks every frame), and
            # the pops that play these packets come late by as much, so the stall is no lateness to
            # wait for. Network jitter shows while the pops keep time.
            return
        if bunched:
            # Within half a frame after the packet before it, and in order: released together with it
            # (a stall in the network, or in our own event loop, whose pops were held up as well and
            # which reads one datagram per socket per turn). The first of a bunch is the latest and
            # stands for it, so a stall counts as one late packet, not as a burst of jitter.
            return
        self._transits.append(transit)
        self._pushes_since_estimate += 1
        if self._pushes_since_estimate >= 8 or len(self._transits) <= _MIN_SAMPLES:
            self._pushes_since_estimate = 0
            self._estimate_target()

    def _estimate_target(self) -> None:
        ordered = sorted(self._transits)
        self._base = ordered[0]
        if len(ordered) < 2:
            return
        lateness = ordered[int(self.quantile * (len(ordered) - 1))] - ordered[0]
        estimate = min(max(lateness, self.min_delay), self.max_delay)
        if estimate > self._target or (
            len(ordered) > _MIN_SAMPLES and estimate < self._target - self.fall_hysteresis
        ):
            self._target = estimate

    def pop(self, now: float) -> Frame | None:
        """The frame to play now; None means nothing to play (buffering, quiet, or a pause to grow)."""
        self._last_pop = now
        if self.state is BufferState.IDLE:
            return None
        deadline = self._base + self._target  # the transit by which a slot is due
        if self.state is BufferState.PLAYING and self._buffer and self._next not in self._buffer:
            upcoming = min(self._buffer)
            gap = upcoming - self._next
            if gap < self.frame_samples:
                self._next = upcoming  # a packet that starts inside this slot (another packet size)
            elif gap > self.max_conceal * self.frame_samples:
                # Too long to conceal: a silence (DTX) or a jump ahead. Resume when that packet is due.
                self.state = BufferState.BUFFERING
        if self.state is BufferState.BUFFERING:
            if not self._buffer:
                return None
            first = min(self._buffer)
            if now - first / self.clock_rate + 1e-9 < deadline:
                return None
            self.state = BufferState.PLAYING
            self._next = self._played_until = first
            self._set_ref(first)
            self._ages_low, self._ages_count = float("inf"), 0
            self._missing_run = 0

        age = now - self._next / self.clock_rate
        if age + 1e-9 < deadline:
            # The slot is not due: the target grew (or the sender's clock runs slow). Pause one frame.
            self.stats.stretched += 1
            return None
        if age > deadline + self.max_delay and self._buffer:
            # Overdue by more than the buffer's ceiling: our own pops were held up (the worker's loop
            # stalled on a starved machine) while packets kept coming. Played one per pop, that backlog
            # would keep the listener up to `horizon` behind for seconds (the shrink below skips one slot
            # in `adapt_every`); the listener has missed it anyway, so skip to the slot now due.
            age = self._catch_up(now, deadline)
        if self._shrink_due(age, deadline):
            entry = self._discard(self._next)
            self._advance(entry.samples if entry is not None else self.frame_samples)

        entry = self._buffer.pop(self._next, None)
        if entry is None:
            if not self._buffer and self._missing_run >= self.max_conceal:
                # Nothing for a while: the talker paused or the network dropped out. Stop concealing;
                # the next packet resumes playout when due.
                self.stats.underruns += 1
                self.state = BufferState.BUFFERING
                return None
            frame = Frame(FrameKind.MISSING, self._next & 0xFFFFFFFF, self.frame_samples)
            self.stats.missing += 1
            self._missing_run += 1
            self._advance(self.frame_samples)
            return frame
        self._missing_run = 0
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

    def _discard(self, ext: int) -> _Entry | None:
        """Skip a slot to shrink the delay, as if it had been played."""
        entry = self._buffer.pop(ext, None)
        if entry is not None:
            self._buffered_seqs.discard(entry.seq)
            self._remember(entry.seq)
        self.stats.dropped += 1
        return entry

    def _catch_up(self, now: float, deadline: float) -> float:
        """Skip (count as dropped) every slot due more than a frame ago while newer ones wait; the age of
        the slot to play now."""
        newest = max(self._buffer)
        while self._next < newest and now - self._next / self.clock_rate > deadline + self._frame_seconds:
            entry = self._discard(self._next)
            self._advance(entry.samples if entry is not None else self.frame_samples)
        self._ages_low, self._ages_count = float("inf"), 0
        return now - self._next / self.clock_rate

    def _shrink_due(self, age: float, deadline: float) -> bool:
        """Every `adapt_every` pops: whether every slot played in them was due more than a frame before
        its pop, so one slot can be skipped without any slot then coming too early."""
        self._ages_low = min(self._ages_low, age)
        self._ages_count += 1
        if self._ages_count < self.adapt_every:
            return False
        low = self._ages_low
        self._ages_low, self._ages_count = float("inf"), 0
        return low >= deadline + self._frame_seconds + _SHRINK_TOLERANCE

    def _advance(self, samples: int) -> None:
        self._next += samples
        self._played_until = self._next
        self._set_ref(self._next)

    def _remember(self, seq: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)
