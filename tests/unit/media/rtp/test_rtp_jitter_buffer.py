"""Adaptive jitter buffer: reordering, late and duplicate packets, reported gaps, adaptation of the
target delay to measured jitter within its bounds, wrap-around, underrun and DTX silences. Time is
stepped by hand: packets and 20 ms playout ticks are merged into one event list."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from services.media.rtp.jitter_buffer import BufferState, Frame, FrameKind, JitterBuffer, PushResult

FRAME = 160
TICK = 0.02


def payload(i: int) -> bytes:
    return i.to_bytes(2, "big") * 80


def simulate(
    delay: Callable[[random.Random, int], float], packets: int = 1000, seed: int = 1, **options: float
) -> tuple[JitterBuffer, list[Frame | None]]:
    """Packet i is sent at i * 20 ms and arrives after 50 ms plus `delay`; playout ticks every 20 ms."""
    rnd = random.Random(seed)
    buffer = JitterBuffer(**options)  # type: ignore[arg-type]
    events = [(i * TICK + 0.05 + delay(rnd, i), 0, i) for i in range(packets)]
    events += [(k * TICK + 0.0001, 1, k) for k in range(packets + 40)]
    out: list[Frame | None] = []
    for now, kind, i in sorted(events):
        if kind == 0:
            buffer.push(i, i * FRAME, payload(i), now)
        else:
            out.append(buffer.pop(now))
    return buffer, out


def audio_indices(frames: list[Frame | None]) -> list[int]:
    return [
        int.from_bytes(f.payload[:2], "big") for f in frames if f is not None and f.kind is FrameKind.AUDIO
    ]


def test_clean_stream_plays_everything_in_order_at_the_minimum_delay() -> None:
    buffer, frames = simulate(lambda rnd, i: 0.0)
    played = audio_indices(frames)
    assert played == sorted(played) and len(played) >= 995
    assert buffer.stats.missing == 0 and buffer.stats.late == 0
    assert buffer.target_delay == buffer.min_delay
    # The initial 60 ms target shrank to 20 ms by dropping the excess, one frame at a time.
    assert 1 <= buffer.stats.dropped <= 3


def test_playout_starts_target_delay_after_the_first_packet() -> None:
    buffer = JitterBuffer(initial_delay=0.06)
    assert buffer.state is BufferState.IDLE and buffer.pop(0.0) is None
    assert buffer.push(0, 0, payload(0), 1.0) is PushResult.ACCEPTED
    assert buffer.state is BufferState.BUFFERING
    assert buffer.pop(1.05) is None
    frame = buffer.pop(1.06)
    assert frame is not None and frame.kind is FrameKind.AUDIO and frame.sequence_number == 0


def test_reordered_packets_come_out_in_order() -> None:
    buffer = JitterBuffer()
    for i in (0, 2, 1, 4, 3):
        assert buffer.push(i, i * FRAME, payload(i), 0.001 * i) is PushResult.ACCEPTED
    frames = [buffer.pop(0.1 + k * TICK) for k in range(5)]
    assert audio_indices(frames) == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames if f is not None] == [0, 160, 320, 480, 640]


def test_a_missing_packet_is_reported_and_its_late_arrival_dropped() -> None:
    buffer = JitterBuffer()
    for i in (0, 1, 3, 4):
        buffer.push(i, i * FRAME, payload(i), 0.0)
    frames = [buffer.pop(0.1 + k * TICK) for k in range(4)]
    assert [f.kind if f else None for f in frames] == [
        FrameKind.AUDIO,
        FrameKind.AUDIO,
        FrameKind.MISSING,
        FrameKind.AUDIO,
    ]
    missing = frames[2]
    assert missing is not None and missing.timestamp == 2 * FRAME and missing.samples == FRAME
    assert buffer.push(2, 2 * FRAME, payload(2), 0.2) is PushResult.LATE
    assert (buffer.stats.missing, buffer.stats.late) == (1, 1)


def test_duplicates_are_dropped_before_and_after_playout() -> None:
    buffer = JitterBuffer()
    assert buffer.push(7, 7 * FRAME, payload(7), 0.0) is PushResult.ACCEPTED
    assert buffer.push(7, 7 * FRAME, payload(7), 0.001) is PushResult.DUPLICATE
    buffer.push(8, 8 * FRAME, payload(8), 0.02)
    assert audio_indices([buffer.pop(0.1)]) == [7]
    assert buffer.push(7, 7 * FRAME, payload(7), 0.11) is PushResult.DUPLICATE
    assert buffer.stats.duplicates == 2


def test_target_grows_with_jitter_and_stays_within_bounds() -> None:
    buffer, frames = simulate(lambda rnd, i: rnd.uniform(0.0, 0.06))
    # The 95th percentile of a uniform 0-60 ms delay spread is 57 ms.
    assert 0.05 <= buffer.target_delay <= 0.06
    assert buffer.stats.late <= 5  # a handful while the estimate was forming, then none
    assert audio_indices(frames) == sorted(audio_indices(frames))

    wild, _ = simulate(lambda rnd, i: rnd.uniform(0.0, 0.5), max_delay=0.2)
    assert wild.target_delay == 0.2  # never beyond max_delay, even if that means late packets
    assert wild.stats.late > 0 and wild.stats.missing > 0


def test_target_shrinks_when_the_network_calms_down() -> None:
    buffer, frames = simulate(lambda rnd, i: rnd.uniform(0.0, 0.08) if i < 500 else 0.0, packets=1500)
    assert buffer.target_delay == buffer.min_delay
    assert buffer.stats.dropped >= 2  # the extra delay was given back by dropping frames
    counts = Counter(f.kind if f else None for f in frames)
    assert counts[FrameKind.AUDIO] >= 1490


def test_a_delay_spike_underruns_rebuffers_and_recovers() -> None:
    buffer, frames = simulate(lambda rnd, i: 0.15 if 300 <= i < 310 else 0.0)
    assert buffer.stats.underruns >= 1
    assert buffer.stats.late == 0  # nothing was given up: the playout waited
    assert buffer.stats.dropped >= 5  # and then caught up again
    played = audio_indices(frames)
    assert played == sorted(played)


def test_sequence_and_timestamp_wrap_around() -> None:
    buffer = JitterBuffer()
    base_ts = 2**32 - 2 * FRAME
    order = [0, 2, 1, 3, 4]
    for i in order:
        seq = (65534 + i) % 65536
        assert buffer.push(seq, (base_ts + i * FRAME) % 2**32, payload(i), 0.001 * i) is PushResult.ACCEPTED
    frames = [buffer.pop(0.1 + k * TICK) for k in range(5)]
    assert audio_indices(frames) == [0, 1, 2, 3, 4]
    assert [f.sequence_number for f in frames if f] == [65534, 65535, 0, 1, 2]
    assert [f.timestamp for f in frames if f] == [base_ts, base_ts + FRAME, 0, FRAME, 2 * FRAME]


def test_a_dtx_silence_resumes_without_a_storm_of_gaps() -> None:
    buffer = JitterBuffer(initial_delay=0.04)
    now = 0.0
    for i in range(10):
        buffer.push(i, i * FRAME, payload(i), now + i * TICK)
    results = [buffer.pop(0.041 + k * TICK) for k in range(15)]
    assert len(audio_indices(results)) == 10 and buffer.stats.underruns == 1
    # Two seconds of silence, then a new talkspurt whose timestamps jumped accordingly.
    resume_ts = 10 * FRAME + 2 * 8000
    for j in range(5):
        buffer.push(10 + j, resume_ts + j * FRAME, payload(100 + j), 2.2 + j * TICK)
    later = [buffer.pop(2.2 + k * TICK + 0.001) for k in range(10)]
    assert audio_indices(later) == [100, 101, 102, 103, 104]
    assert buffer.stats.missing == 0


def test_packets_far_ahead_are_refused() -> None:
    buffer = JitterBuffer(horizon=1.0)
    buffer.push(0, 0, payload(0), 0.0)
    buffer.push(1, FRAME, payload(1), 0.02)
    assert buffer.push(2, 5 * 8000, payload(2), 0.04) is PushResult.EARLY
    assert buffer.stats.early == 1 and len(buffer) == 2


def test_reset_forgets_the_stream() -> None:
    buffer = JitterBuffer()
    buffer.push(0, 0, payload(0), 0.0)
    buffer.reset()
    assert buffer.state is BufferState.IDLE and len(buffer) == 0
    assert buffer.push(0, 123456, payload(0), 1.0) is PushResult.ACCEPTED
