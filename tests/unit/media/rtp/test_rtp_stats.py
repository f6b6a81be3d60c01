"""Receiver statistics (RFC 3550 A.1, A.3, A.8) and sender counters, checked against figures
computed by hand in the comments."""

from __future__ import annotations

import pytest

from services.media.rtp.rtcp import ReportBlock, ntp_middle, ntp_timestamp
from services.media.rtp.stats import ReceiverStats, SenderStats

RATE = 8000


def feed(stats: ReceiverStats, seqs: list[int], *, start: float = 0.0) -> list[bool]:
    # Packets 20 ms apart whose timestamps advance 160 per sequence step: no jitter.
    return [stats.on_packet(seq % 65536, (seq * 160) % 2**32, start + i * 0.02) for i, seq in enumerate(seqs)]


def test_probation_drops_the_first_packet_of_a_new_source() -> None:
    stats = ReceiverStats(RATE)  # MIN_SEQUENTIAL = 2
    accepted = feed(stats, list(range(100, 110)))
    assert accepted == [False] + [True] * 9
    # base_seq is the second packet: expected = 109 - 101 + 1 = 9, all received.
    assert (stats.expected, stats.received, stats.lost) == (9, 9, 0)


def test_out_of_order_start_keeps_the_source_on_probation() -> None:
    stats = ReceiverStats(RATE)
    assert feed(stats, [5, 9]) == [False, False]  # not in sequence: probation restarts
    assert stats.expected == 0
    assert stats.on_packet(10, 1600, 1.0) is True


def test_sequence_wrap_extends_the_highest_sequence_number() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    seqs = [65530 + i for i in range(10)]  # 65530..65535, then 0..3
    assert all(feed(stats, seqs))
    # cycles = 65536 after the wrap: extended max = 65536 + 3 = 65539 = 0x00010003.
    assert stats.extended_max == 65539
    assert stats.expected == 65539 - 65530 + 1 == 10
    block = stats.report_block(ssrc=1, now=1.0)
    assert block.highest_seq == 0x00010003
    assert (block.cumulative_lost, block.fraction_lost) == (0, 0)


def test_loss_and_fraction_lost_per_interval() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    feed(stats, [s for s in range(100) if s not in (10, 20, 30)])
    first = stats.report_block(ssrc=7, now=2.0)
    # expected 100, received 97: lost 3; fraction = (3 << 8) // 100 = 7 (7/256 = 2.7 %).
    assert (stats.expected, stats.received) == (100, 97)
    assert (first.cumulative_lost, first.fraction_lost) == (3, 7)
    feed(stats, list(range(100, 200)), start=2.0)
    second = stats.report_block(ssrc=7, now=4.0)
    # A clean interval: fraction 0, the cumulative figure stays at 3.
    assert (second.cumulative_lost, second.fraction_lost) == (3, 0)
    feed(stats, [s for s in range(200, 300) if s % 2], start=4.0)
    third = stats.report_block(ssrc=7, now=6.0)
    # Only odd numbers arrive: 50 of the 100 expected lost, (50 << 8) // 100 = 128.
    assert (third.cumulative_lost, third.fraction_lost) == (53, 128)
    summary = stats.summary()
    assert summary.expected == 300 and summary.lost == 53 and summary.loss_fraction == pytest.approx(53 / 300)


def test_duplicates_make_cumulative_loss_negative_and_fraction_zero() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    feed(stats, [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9])
    block = stats.report_block(ssrc=1, now=1.0)
    assert (stats.expected, stats.received) == (10, 11)
    assert (block.cumulative_lost, block.fraction_lost) == (-1, 0)
    assert stats.summary().lost == 0  # the quality figure never goes below zero


def test_reordering_is_not_loss() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    feed(stats, [0, 1, 3, 2, 4])
    assert (stats.extended_max, stats.expected, stats.lost) == (4, 5, 0)


def test_a_large_jump_restarts_the_source_after_two_packets_in_sequence() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    feed(stats, list(range(0, 50)))
    assert stats.on_packet(20000, 0, 1.0) is False  # beyond MAX_DROPOUT: suspicious, not counted
    assert stats.received == 50
    assert stats.on_packet(20001, 160, 1.02) is True  # in sequence with it: the sender restarted
    assert (stats.base_seq, stats.received, stats.expected) == (20001, 1, 1)


def test_interarrival_jitter_by_hand() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.080]
    for i, now in enumerate(arrivals):
        stats.on_packet(i, i * 160, now)
    # D = 0, +40, -40, 0 timestamp units:
    # J1 = 0; J2 = 40/16 = 2.5; J3 = 2.5 + (40 - 2.5)/16 = 4.84375; J4 = J3 + (0 - J3)/16 = 4.541015625
    assert stats.jitter == pytest.approx(4.541015625)
    assert stats.jitter_seconds == pytest.approx(4.541015625 / RATE)
    assert stats.report_block(ssrc=1, now=1.0).jitter == 4


def test_jitter_across_the_timestamp_wrap_and_with_event_packets() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    base = 2**32 - 480
    for i in range(10):
        stats.on_packet(i, (base + i * 160) % 2**32, i * 0.02)
    # RFC 4733 packets repeat their event's start timestamp: excluded from timing, still counted.
    for i in range(10, 15):
        stats.on_packet(i, 999, i * 0.02, timing=False)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    assert stats.received == 15


def test_lsr_and_dlsr_come_from_the_last_sender_report() -> None:
    stats = ReceiverStats(RATE, min_sequential=1)
    feed(stats, [0, 1, 2])
    assert stats.report_block(ssrc=1, now=1.0).lsr == 0
    stats.on_sender_report(0xE8F0A1B280000000, now=10.0)
    block = stats.report_block(ssrc=1, now=11.5)
    assert (block.lsr, block.dlsr) == (0xA1B28000, 98304)  # 1.5 s * 65536


def test_sender_report_and_round_trip_time() -> None:
    sender = SenderStats(RATE)
    for i in range(50):
        sender.on_sent(i * 160, 160, i * 0.02)
    sr = sender.sender_report(ssrc=5, now=1.0, wallclock=1_000_000_000.0)
    # Last packet ts 7840 at 0.98 s; 20 ms later the RTP clock reads 7840 + 160.
    assert (sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (50, 8000, 8000)
    assert sr.ntp_timestamp == ntp_timestamp(1_000_000_000.0)
    reply = ReportBlock(ssrc=5, lsr=ntp_middle(sr.ntp_timestamp), dlsr=16384)  # peer held it 0.25 s
    assert sender.on_report_block(reply, now=1.4) == pytest.approx(0.15)
    assert sender.rtt == pytest.approx(0.15)
    assert sender.on_report_block(ReportBlock(ssrc=5, lsr=12345), now=2.0) is None  # not our SR
    assert sender.on_report_block(ReportBlock(ssrc=5), now=2.0) is None


def test_invalid_construction() -> None:
    with pytest.raises(ValueError, match="clock rate"):
        ReceiverStats(0)
    with pytest.raises(ValueError, match="min_sequential"):
        ReceiverStats(RATE, min_sequential=0)
