"""RTCP: SR, RR, SDES, BYE and unknown packets; compound round trips against hand-built fixtures and
aiortc's RTCP classes; NTP/LSR/DLSR arithmetic (RFC 3550 figure 2) and the A.7 report interval."""

from __future__ import annotations

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

from services.media.rtp.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpUnknown,
    SdesItem,
    SenderReport,
    SourceDescription,
    blocks_for,
    dlsr_from_seconds,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
    report_interval,
    round_trip_time,
    serialize_compound,
)

# SR, one report block: header (V=2, RC=1, PT=200, length 12 words), SSRC, NTP, RTP ts, counts, block.
SR = bytes.fromhex(
    "81c8000c 11223344 e8f0a1b2 80000000 0001f400 00000032 00001f40"
    " 55667788 40 000005 00010010 0000000c a1b28000 00018000"
)
# RR about 0x11223344 with a negative cumulative loss (duplicates): -2 as 24-bit 0xfffffe.
RR = bytes.fromhex("81c90007 55667788 11223344 00 fffffe 0000ffff 00000004 00000000 00000000")
# SDES, one chunk, CNAME "sw-1@example.org" (16 octets), then two null octets to the boundary.
SDES = bytes.fromhex("81ca0006 11223344 0110") + b"sw-1@example.org" + b"\x00\x00"
# BYE with reason "hangup" (length octet 6, text, one octet of alignment).
BYE = bytes.fromhex("81cb0003 11223344 06") + b"hangup" + b"\x00"
# APP (PT 204), kept verbatim.
APP = bytes.fromhex("80cc0002 11223344") + b"name"
# RR with no blocks and 4 octets of RTCP padding (P bit set, last octet = 4).
RR_PADDED = bytes.fromhex("a0c90002 55667788 00000004")
COMPOUND = SR + SDES + BYE


@pytest.mark.parametrize("data", [SR, RR, SDES, BYE, APP, RR_PADDED, COMPOUND, RR + SDES + APP])
def test_round_trip_is_byte_exact(data: bytes) -> None:
    assert serialize_compound(parse_compound(data)) == data


def test_sender_report_fields() -> None:
    (sr,) = parse_compound(SR)
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0x11223344
    assert sr.ntp_timestamp == 0xE8F0A1B280000000
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (128000, 50, 8000)
    (block,) = sr.reports
    assert block == ReportBlock(0x55667788, 64, 5, 0x10010, 12, 0xA1B28000, 0x18000)
    assert block.fraction_lost_ratio == 0.25


def test_other_packet_fields() -> None:
    (rr,) = parse_compound(RR)
    assert isinstance(rr, ReceiverReport) and rr.reports[0].cumulative_lost == -2
    (sdes,) = parse_compound(SDES)
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].get(SdesItem.CNAME) == b"sw-1@example.org"
    assert sdes == SourceDescription.cname(0x11223344, "sw-1@example.org")
    (bye,) = parse_compound(BYE)
    assert bye == Goodbye((0x11223344,), "hangup")
    (app,) = parse_compound(APP)
    assert app == RtcpUnknown(204, 0, bytes.fromhex("11223344") + b"name")
    (padded,) = parse_compound(RR_PADDED)
    assert (
        isinstance(padded, ReceiverReport) and padded.reports == () and padded.padding == b"\x00\x00\x00\x04"
    )


def test_fields_agree_with_aiortc() -> None:
    sr, sdes, bye = RtcpPacket.parse(COMPOUND)
    ours = parse_compound(COMPOUND)
    assert isinstance(sr, RtcpSrPacket) and isinstance(ours[0], SenderReport)
    assert sr.ssrc == ours[0].ssrc and sr.sender_info.ntp_timestamp == ours[0].ntp_timestamp
    assert sr.sender_info.rtp_timestamp == ours[0].rtp_timestamp
    info = sr.reports[0]
    block = ours[0].reports[0]
    assert (info.ssrc, info.fraction_lost, info.packets_lost) == (
        block.ssrc,
        block.fraction_lost,
        block.cumulative_lost,
    )
    assert (info.highest_sequence, info.jitter, info.lsr, info.dlsr) == (
        block.highest_seq,
        block.jitter,
        block.lsr,
        block.dlsr,
    )
    assert isinstance(sdes, RtcpSdesPacket) and sdes.chunks[0].items == [(1, b"sw-1@example.org")]
    assert isinstance(bye, RtcpByePacket) and bye.sources == [0x11223344]
    (rr,) = RtcpPacket.parse(RR)
    assert isinstance(rr, RtcpRrPacket) and rr.reports[0].packets_lost == -2


def test_aiortc_serialized_packets_round_trip_through_ours() -> None:
    info = RtcpReceiverInfo(
        ssrc=7, fraction_lost=12, packets_lost=-300, highest_sequence=70000, jitter=33, lsr=1, dlsr=2
    )
    packets = [
        RtcpSrPacket(
            ssrc=1,
            sender_info=RtcpSenderInfo(ntp_timestamp=1 << 63, rtp_timestamp=5, packet_count=6, octet_count=7),
            reports=[info],
        ),
        RtcpRrPacket(ssrc=2, reports=[info, info]),
        RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=3, items=[(1, b"abcdefghijklmnop")])]),
        RtcpByePacket(sources=[4, 5]),
    ]
    data = b"".join(bytes(packet) for packet in packets)
    ours = parse_compound(data)
    assert serialize_compound(ours) == data
    assert isinstance(ours[1], ReceiverReport) and ours[1].reports[1].cumulative_lost == -300
    assert isinstance(ours[3], Goodbye) and ours[3].sources == (4, 5) and ours[3].reason is None


def test_our_packets_parse_in_aiortc() -> None:
    block = ReportBlock(9, fraction_lost=1, cumulative_lost=-0x800000, highest_seq=0xFFFFFFFF, jitter=5)
    ours = [
        SenderReport(1, ntp_timestamp(1_700_000_000.25), 160, 1, 160, (block,)),
        SourceDescription.cname(1, "switchboard"),
        Goodbye((1,), "done"),
    ]
    sr, sdes, bye = RtcpPacket.parse(serialize_compound(ours))
    assert isinstance(sr, RtcpSrPacket) and sr.reports[0].packets_lost == -0x800000
    assert sr.reports[0].highest_sequence == 0xFFFFFFFF
    assert isinstance(sdes, RtcpSdesPacket) and sdes.chunks[0].items == [(1, b"switchboard")]
    assert isinstance(bye, RtcpByePacket) and bye.sources == [1]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x81\xc9", "shorter than its 4-octet header"),
        (bytes.fromhex("41c90001 55667788"), "version is 1"),
        (bytes.fromhex("81c90007 55667788"), "truncated"),
        (bytes.fromhex("81c90001 55667788"), "needs 28 octets"),
        (bytes.fromhex("80c80001 11223344"), "needs 24 octets"),
        (bytes.fromhex("a0c90001 00000000"), "padding count is invalid"),
        (bytes.fromhex("a0c90001 00000009"), "padding count is invalid"),
        (bytes.fromhex("81ca0002 11223344 01046162"), "SDES item 1 is truncated"),
        (bytes.fromhex("81ca0002 11223344 01026162"), "no terminating null"),
        (bytes.fromhex("82cb0001 11223344"), "announces 2 sources"),
        (bytes.fromhex("81cb0002 11223344 09616263"), "reason is truncated"),
        (RR + b"\x80", "trailing octets"),
    ],
)
def test_malformed_rtcp_gives_clear_errors(data: bytes, reason: str) -> None:
    with pytest.raises(RtcpError, match=reason):
        parse_compound(data)


def test_building_invalid_blocks_is_refused() -> None:
    with pytest.raises(RtcpError, match="fraction lost"):
        ReportBlock(1, fraction_lost=256)
    with pytest.raises(RtcpError, match="24 signed bits"):
        ReportBlock(1, cumulative_lost=1 << 23)
    with pytest.raises(RtcpError, match="5-bit RTCP count"):
        bytes(ReceiverReport(1, tuple(ReportBlock(i) for i in range(32))))


def test_ntp_arithmetic() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(1.5) == (2_208_988_801 << 32) | 0x80000000
    assert ntp_middle(0xE8F0A1B280000000) == 0xA1B28000
    assert dlsr_from_seconds(1.5) == 0x18000 and dlsr_from_seconds(-1) == 0


def test_round_trip_time_matches_rfc3550_figure_2() -> None:
    # A = b710:8000 (46864.500 s), LSR = b705:2000 (46853.125 s), DLSR = 0005:4000 (5.250 s).
    block = ReportBlock(1, lsr=0xB7052000, dlsr=0x00054000)
    assert round_trip_time(block, 0xB7108000 << 16) == pytest.approx(6.125)
    assert round_trip_time(ReportBlock(1), 0xB7108000 << 16) is None  # no SR received yet
    inconsistent = ReportBlock(1, lsr=0xB7052000, dlsr=0x00200000)
    assert round_trip_time(inconsistent, 0xB7108000 << 16) is None
    assert blocks_for([block, ReportBlock(2)], 2) == [ReportBlock(2)]


def test_report_interval_follows_appendix_a7() -> None:
    common = dict(
        members=2, senders=2, rtcp_bandwidth=400.0, we_sent=True, avg_rtcp_size=100.0, initial=False
    )
    assert report_interval(**common, randomness=0.5) == pytest.approx(5.0 / 1.21828)
    assert report_interval(**common, randomness=0.0) == pytest.approx(2.5 / 1.21828)
    assert report_interval(**{**common, "initial": True}, randomness=0.5) == pytest.approx(2.5 / 1.21828)
    # Many receivers and little bandwidth: the bandwidth share, not the 5 s minimum, sets the pace.
    crowded = report_interval(
        members=1000,
        senders=1,
        rtcp_bandwidth=400.0,
        we_sent=False,
        avg_rtcp_size=100.0,
        initial=False,
        randomness=0.5,
    )
    assert crowded == pytest.approx(100.0 * 999 / 300.0 / 1.21828)
