"""Adaptive jitter buffer: playout scheduled in time (a slot is due a measured lateness after the fastest
packets would bring it), concealment of a late slot without re-buffering, growth under jitter and shrinking
after it, reordering, duplicates, wrap-around, silences and timeline restarts (new SSRC, timestamp jumps).
Time is stepped by hand: packets and 20 ms playout ticks are merged into one event list."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from services.media.rtp.jitter_buffer import BufferState, Frame, FrameKind, JitterBuffer, PushResult

FRAME = 160
TICK = 0.02
TRANSIT = 0.05  # the network's fixed part in `simulate`


def payload(i: int) -> bytes:
    return i.to_bytes(2, "big") * 80


def index(frame: Frame) -> int:
    return int.from_bytes(frame.payload[:2], "big")


def simulate(
    delay: Callable[[random.Random, int], float],
    packets: int = 1000,
    seed: int = 1,
    phase: float = 0.0001,
    **options: float,
) -> tuple[JitterBuffer, list[tuple[float, Frame | None]]]:
    """Packet i is sent at i * 20 ms and arrives TRANSIT plus `delay` later; playout ticks every 20 ms at
    `phase` past the sender's grid. Returns the buffer and every pop's (time, frame)."""
    rnd = random.Random(seed)
    buffer = JitterBuffer(**options)  # type: ignore[arg-type]
    events = [(i * TICK + TRANSIT + delay(rnd, i), 0, i) for i in range(packets)]
    events += [(k * TICK + phase, 1, k) for k in range(packets + 10)]
    out: list[tuple[float, Frame | None]] = []
    for now, kind, i in sorted(events):
        if kind == 0:
            buffer.push(i, i * FRAME, payload(i), now)
        else:
            out.append((now, buffer.pop(now)))
    return buffer, out


def audio(pops: list[tuple[float, Frame | None]]) -> list[int]:
    return [index(f) for _, f in pops if f is not None and f.kind is FrameKind.AUDIO]


def delays(pops: list[tuple[float, Frame | None]], after: int = 0) -> list[float]:
    """Send-to-playout delay of every audio frame from packet `after` on."""
    return [
        now - index(f) * TICK
        for now, f in pops
        if f is not None and f.kind is FrameKind.AUDIO and index(f) >= after
    ]


def concealed(pops: list[tuple[float, Frame | None]], packets: int = 1000) -> list[int]:
    """The slots reported MISSING while the stream lasted (not the ones after its last packet)."""
    return [
        f.timestamp // FRAME
        for _, f in pops
        if f is not None and f.kind is FrameKind.MISSING and f.timestamp < packets * FRAME
    ]


@pytest.mark.parametrize("phase", [0.0001, 0.007, 0.0199])
def test_a_steady_stream_converges_to_the_minimum_in_time_not_frames(phase: float) -> None:
    buffer, pops = simulate(lambda rnd, i: rnd.uniform(0.0, 0.001), phase=phase)
    played = audio(pops)
    assert played == sorted(played) and len(played) >= 997  # in order, all but the few skipped
    assert concealed(pops) == [] and buffer.stats.late == 0
    assert buffer.target_delay == pytest.approx(buffer.min_delay)
    # The initial 60 ms target was given back one frame at a time ...
    assert 1 <= buffer.stats.dropped <= 3 and buffer.stats.stretched == 0
    # ... down to the network's 50 ms plus the target plus at most one tick of phase: less than a frame
    # buffered, wherever the ticks fall. A whole-frame buffer held one to two frames here.
    settled = delays(pops, after=200)
    assert max(settled) - min(settled) < 0.0012
    assert TRANSIT + buffer.min_delay <= min(settled) and max(settled) < TRANSIT + buffer.min_delay + 0.0212


def test_playout_starts_when_the_first_packet_falls_due() -> None:
    buffer = JitterBuffer(initial_delay=0.06)
    assert buffer.state is BufferState.IDLE and buffer.pop(0.0) is None
    assert buffer.push(0, 0, payload(0), 1.0) is PushResult.ACCEPTED
    assert buffer.state is BufferState.BUFFERING
    assert buffer.pop(1.05) is None
    frame = buffer.pop(1.06)
    assert frame is not None and frame.kind is FrameKind.AUDIO and frame.sequence_number == 0


def test_an_isolated_late_packet_costs_one_concealed_frame_and_the_next_plays_in_order() -> None:
    late = 400
    buffer, pops = simulate(lambda rnd, i: 0.035 if i == late else 0.0)
    frames = [f for _, f in pops if f is not None]
    at = next(k for k, f in enumerate(frames) if f.timestamp == late * FRAME)
    assert frames[at].kind is FrameKind.MISSING  # concealed by the consumer ...
    assert [frames[at - 1].kind, frames[at + 1].kind] == [FrameKind.AUDIO, FrameKind.AUDIO]
    assert [index(frames[at - 1]), index(frames[at + 1])] == [late - 1, late + 1]  # ... and no re-buffering
    assert buffer.stats.late == 1 and concealed(pops) == [late]
    # Nothing else was given up or added: no pause, no skip after the start-up shrink, no underrun.
    assert (buffer.stats.stretched, buffer.stats.underruns) == (0, 0)
    skipped = set(range(1000)) - set(audio(pops))
    assert late in skipped and len(skipped) <= 4 and max(skipped - {late}) < 100  # the start-up shrink
    # Its successor was not delayed: every frame after it plays as early as before it.
    assert max(delays(pops, after=late + 1)) <= max(delays(pops, after=200)[: late - 200]) + 1e-9


def test_burst_jitter_grows_the_target_and_it_shrinks_back_after_the_burst() -> None:
    def burst(rnd: random.Random, i: int) -> float:
        return rnd.uniform(0.0, 0.06) if 300 <= i < 600 else rnd.uniform(0.0, 0.001)

    buffer = JitterBuffer()
    rnd = random.Random(3)
    events = [(i * TICK + TRANSIT + burst(rnd, i), 0, i) for i in range(1800)]
    events += [(k * TICK + 0.0001, 1, k) for k in range(1810)]
    targets: dict[int, float] = {}
    pops: list[tuple[float, Frame | None]] = []
    for now, kind, i in sorted(events):
        if kind == 0:
            buffer.push(i, i * FRAME, payload(i), now)
        else:
            pops.append((now, buffer.pop(now)))
            targets[i] = buffer.target_delay
    assert targets[290] == pytest.approx(buffer.min_delay)
    assert 0.05 <= targets[590] <= 0.06  # the 99.5th percentile of 0-60 ms
    assert buffer.stats.stretched >= 2  # the delay grew by pausing ...
    assert len(concealed(pops, 1800)) <= 12  # ... after a few concealed frames at the burst's start
    # Once the burst has left the window (500 packets, 10 s) the target is back at its minimum, and a
    # few seconds later so is the delay.
    assert targets[1000] > 0.04 and targets[1200] == pytest.approx(buffer.min_delay)
    assert buffer.stats.dropped >= 3
    assert max(delays(pops, after=1500)) < TRANSIT + buffer.min_delay + 0.0212
    assert audio(pops) == sorted(audio(pops))


def test_the_target_stays_within_its_bounds() -> None:
    wild, pops = simulate(lambda rnd, i: rnd.uniform(0.0, 0.5), max_delay=0.2)
    assert wild.target_delay == 0.2  # never beyond max_delay, even if that means late packets
    assert wild.stats.late > 0 and wild.stats.missing > 0
    assert audio(pops) == sorted(audio(pops))


def test_a_stall_is_concealed_without_holding_the_stream_back() -> None:
    # The network holds ten packets and releases them together with the eleventh: their slots are
    # concealed, and the stream goes on at its old delay instead of waiting for the stall.
    buffer, pops = simulate(lambda rnd, i: (310 - i) * TICK + 0.0001 * i if 300 <= i < 310 else 0.0)
    played = audio(pops)
    assert played == sorted(played) and 310 in played
    assert buffer.stats.restarts == 0  # a stall is not a new timeline
    assert buffer.target_delay == pytest.approx(buffer.min_delay)  # nor jitter to wait for from now on
    assert max(delays(pops, after=310)[:50]) < TRANSIT + buffer.min_delay + 0.0212


def test_reordered_packets_come_out_in_order() -> None:
    buffer = JitterBuffer()
    for i in (0, 2, 1, 4, 3):
        assert buffer.push(i, i * FRAME, payload(i), 0.001 * i) is PushResult.ACCEPTED
    frames = [buffer.pop(0.1 + k * TICK) for k in range(5)]
    assert [index(f) for f in frames if f] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames if f is not None] == [0, 160, 320, 480, 640]


def test_reordering_within_the_measured_jitter_loses_nothing() -> None:
    # Every fifth packet swaps with the next one (arrives 25 ms late): the target covers it.
    buffer, pops = simulate(lambda rnd, i: 0.025 if i % 5 == 0 else 0.0)
    played = audio(pops)
    assert played == sorted(played) and len(played) >= 990
    assert buffer.stats.late <= 3  # a few at the start, before the estimate had seen a swap


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
    frame = buffer.pop(0.1)
    assert frame is not None and index(frame) == 7
    assert buffer.push(7, 7 * FRAME, payload(7), 0.11) is PushResult.DUPLICATE
    assert buffer.stats.duplicates == 2


def test_sequence_and_timestamp_wrap_around() -> None:
    buffer = JitterBuffer()
    base_ts = 2**32 - 2 * FRAME
    for i in [0, 2, 1, 3, 4]:
        seq = (65534 + i) % 65536
        assert buffer.push(seq, (base_ts + i * FRAME) % 2**32, payload(i), 0.001 * i) is PushResult.ACCEPTED
    frames = [buffer.pop(0.1 + k * TICK) for k in range(5)]
    assert [index(f) for f in frames if f] == [0, 1, 2, 3, 4]
    assert [f.sequence_number for f in frames if f] == [65534, 65535, 0, 1, 2]
    assert [f.timestamp for f in frames if f] == [base_ts, base_ts + FRAME, 0, FRAME, 2 * FRAME]


def test_a_new_talkspurt_after_a_silence_resumes_on_time_without_a_storm_of_gaps() -> None:
    buffer = JitterBuffer(initial_delay=0.04, max_conceal=3)
    for i in range(10):
        buffer.push(i, i * FRAME, payload(i), i * TICK)
    first = [buffer.pop(0.041 + k * TICK) for k in range(16)]
    assert [index(f) for f in first if f and f.kind is FrameKind.AUDIO] == list(range(10))
    # The talker stops: three slots concealed, then quiet (no frames at all), counted once.
    assert [f.kind if f else None for f in first[10:]] == [FrameKind.MISSING] * 3 + [None] * 3
    assert buffer.stats.underruns == 1 and buffer.state is BufferState.BUFFERING
    # Two seconds later a new talkspurt (marker, timestamps advanced by the silence): it plays as soon
    # as it is due, at the delay the stream had, and nothing in between is reported missing.
    resume_ts = 10 * FRAME + 2 * 8000
    later: list[Frame | None] = []
    for j in range(5):
        assert (
            buffer.push(10 + j, resume_ts + j * FRAME, payload(100 + j), 2.2 + j * TICK, marker=j == 0)
            is PushResult.ACCEPTED
        )
        later.append(buffer.pop(2.2 + j * TICK + buffer.target_delay + 0.001))
    assert [index(f) for f in later if f] == [100, 101, 102, 103, 104]
    assert buffer.stats.missing == 3 and buffer.stats.restarts == 0


def test_a_new_ssrc_restarts_the_stream_and_keeps_the_learned_target() -> None:
    buffer = JitterBuffer()
    events = [(i * TICK + random.Random(i).uniform(0.0, 0.03), 0, i) for i in range(300)]
    events += [(k * TICK + 0.0001, 1, k) for k in range(300)]
    for now, kind, i in sorted(events):
        if kind == 0:
            buffer.push(i, i * FRAME, payload(i), now, ssrc=1)
        else:
            buffer.pop(now)
    learned = buffer.target_delay
    assert learned > 0.02
    # Another source: its own sequence numbers (the old ones would read as duplicates) and timestamps.
    now = 300 * TICK
    assert buffer.push(5, 777_000, payload(500), now, ssrc=2) is PushResult.ACCEPTED
    assert buffer.stats.restarts == 1 and buffer.stats.flushed >= 1 and len(buffer) == 1
    assert buffer.target_delay == learned
    assert buffer.pop(now + learned - 0.001) is None
    frame = buffer.pop(now + learned + 0.001)
    assert frame is not None and index(frame) == 500


def test_a_timestamp_jump_without_a_new_ssrc_restarts_after_three_agreeing_packets() -> None:
    buffer = JitterBuffer()
    for i in range(100):
        buffer.push(i, i * FRAME, payload(i), i * TICK)
        buffer.pop(i * TICK + 0.0101)
    # The sender restarts its timestamps 10 s back without a marker: its packets look 10 s late.
    results = []
    for j in range(4):
        now = (100 + j) * TICK
        results.append(buffer.push(100 + j, j * FRAME, payload(200 + j), now))
    assert results[:2] == [PushResult.LATE, PushResult.LATE]
    assert results[2:] == [PushResult.ACCEPTED, PushResult.ACCEPTED] and buffer.stats.restarts == 1
    frames = [buffer.pop(103 * TICK + buffer.target_delay + k * TICK) for k in range(2)]
    assert [index(f) for f in frames if f and f.kind is FrameKind.AUDIO] == [202, 203]

    # With a marker (a new talkspurt on a new timeline) the first packet restarts at once.
    now = 200 * TICK
    assert buffer.push(300, 5_000_000, payload(300), now, marker=True) is PushResult.ACCEPTED
    assert buffer.stats.restarts == 2


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


def test_stalls_of_our_own_process_are_no_jitter_to_wait_for() -> None:
    # Every second our event loop stalls 60 ms: the packets of that time are read when it resumes, and
    # the ticks it held up run then too, one after the other. The pops were late by as much as the
    # packets, so nothing is concealed and the target stays at its minimum.
    buffer = JitterBuffer()
    events: list[tuple[float, int, int]] = []
    for i in range(1500):
        arrival = i * TICK + TRANSIT
        stall = int(arrival) + 0.5  # [n.5, n.56) of every second
        if stall <= arrival < stall + 0.06:
            arrival = stall + 0.06
        events.append((arrival, 0, i))
    for k in range(1510):
        tick = k * TICK + 0.0001
        stall = int(tick) + 0.5
        if stall <= tick < stall + 0.06:
            tick = stall + 0.0601 + 0.0001 * k  # the held-up ticks, right after the packets
        events.append((tick, 1, k))
    pops: list[tuple[float, Frame | None]] = []
    for now, kind, i in sorted(events):
        if kind == 0:
            buffer.push(i, i * FRAME, payload(i), now)
        else:
            pops.append((now, buffer.pop(now)))
    assert concealed(pops, 1500) == [] and buffer.stats.late == 0
    assert buffer.target_delay == pytest.approx(buffer.min_delay)


@pytest.mark.parametrize("stall", [0.3, 1.0])
def test_after_a_long_stall_of_our_own_loop_playout_skips_to_current_audio(stall: float) -> None:
    # The worker's loop is held up `stall` s (a starved machine): no tick runs and nothing is read while
    # packets keep arriving; when it resumes they are read with the kernel's arrival times. Played one
    # per tick, that backlog kept every frame `stall` late for seconds (one slot skipped per 10 pops): the
    # listener hears current audio again within two ticks, and the skipped slots count as dropped.
    buffer = JitterBuffer(max_delay=0.2)
    pops: list[tuple[float, Frame | None]] = []
    sent, start = 0, 2.0
    for k in range(300):
        now = k * TICK + 0.0001
        if start <= now < start + stall:
            continue
        while sent < 300 and sent * TICK + TRANSIT <= now:
            buffer.push(sent, sent * FRAME, payload(sent), sent * TICK + TRANSIT)
            sent += 1
        pops.append((now, buffer.pop(now)))
    resumed = [(now, f) for now, f in pops if now >= start + stall]
    late = [now - index(f) * TICK for now, f in resumed if f is not None and f.kind is FrameKind.AUDIO]
    assert max(late[2:]) < TRANSIT + 0.05, late[:5]
    assert buffer.stats.dropped >= stall / TICK - 5
    assert concealed(pops, 250) == []
