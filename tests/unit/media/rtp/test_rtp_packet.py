"""RTP packet parse/serialize: hand-built fixtures, packets captured from SIPp's shipped pcaps,
round trips, cross-checks against aiortc's RtpPacket, and clear errors on bad input."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from services.media.rtp.packet import RtpError, RtpExtension, RtpPacket, is_rtcp, seq_diff, ts_diff

# Each fixture written out field by field (V/P/X/CC | M/PT | seq | timestamp | SSRC | ...).
PCMU_20MS = bytes.fromhex("80 00 0001 000000a0 12345678") + b"\xff" * 160
WITH_CSRC = bytes.fromhex("82 00 1000 00000140 00000001 11111111 22222222") + b"\x7f" * 8
WITH_EXTENSION = bytes.fromhex("90 60 0002 00000000 cafebabe beDE0001 10ff0000") + b"\x01\x02"
WITH_PADDING = bytes.fromhex("a0 08 0003 00000320 0000abcd") + b"\x55" * 20 + bytes.fromhex("000004")
EVERYTHING = (
    bytes.fromhex("b1 e5 ffff ffffffff 00000007 0000002a 0123 0002 0102030405060708")
    + bytes.fromhex("0a8000a0")
    + bytes.fromhex("aaaa0004")
)
# From SIPp's /usr/share/sip-tester/dtmf_2833_1.pcap: the first and the final RFC 4733 packet.
SIPP_EVENT_FIRST = bytes.fromhex("80e51f30000033e00e05384e010a0000")
SIPP_EVENT_END = bytes.fromhex("80651f37000033e00e05384e018a08c0")
# From SIPp's g711a.pcap: the first packet's header (marker set, PCMA), payload shortened.
SIPP_G711A = bytes.fromhex("8088e6fd000000f0dee0ee8f") + bytes.fromhex("d5d5d5d5")

FIXTURES = {
    "pcmu": PCMU_20MS,
    "csrc": WITH_CSRC,
    "extension": WITH_EXTENSION,
    "padding": WITH_PADDING,
    "everything": EVERYTHING,
    "sipp_event_first": SIPP_EVENT_FIRST,
    "sipp_event_end": SIPP_EVENT_END,
    "sipp_g711a": SIPP_G711A,
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_round_trip_is_byte_exact(name: str) -> None:
    data = FIXTURES[name]
    assert bytes(RtpPacket.parse(data)) == data
    assert len(RtpPacket.parse(data)) == len(data)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fields_agree_with_aiortc(name: str) -> None:
    data = FIXTURES[name]
    ours = RtpPacket.parse(data)
    theirs = AiortcRtpPacket.parse(data)
    assert ours.payload_type == theirs.payload_type
    assert ours.marker == bool(theirs.marker)
    assert ours.sequence_number == theirs.sequence_number
    assert ours.timestamp == theirs.timestamp
    assert ours.ssrc == theirs.ssrc
    assert list(ours.csrc) == theirs.csrc
    assert ours.payload == theirs.payload
    assert len(ours.padding) == theirs.padding_size


def test_hand_decoded_fields() -> None:
    packet = RtpPacket.parse(EVERYTHING)
    assert packet.payload_type == 101 and packet.marker
    assert packet.sequence_number == 0xFFFF and packet.timestamp == 0xFFFFFFFF
    assert packet.ssrc == 7 and packet.csrc == (42,)
    assert packet.extension == RtpExtension(0x0123, bytes.fromhex("0102030405060708"))
    assert packet.payload == bytes.fromhex("0a8000a0")
    assert packet.padding == bytes.fromhex("aaaa0004")
    assert packet.header_size == 12 + 4 + 4 + 8

    event = RtpPacket.parse(SIPP_EVENT_FIRST)
    assert (event.payload_type, event.marker, event.sequence_number) == (101, True, 0x1F30)
    assert event.timestamp == 0x33E0 and event.ssrc == 0x0E05384E


def test_aiortc_serialized_packets_parse_identically() -> None:
    theirs = AiortcRtpPacket(
        payload_type=0,
        marker=1,
        sequence_number=65535,
        timestamp=4_000_000_000,
        ssrc=99,
        payload=b"\xff" * 160,
    )
    theirs.csrc = [1, 2, 3]
    theirs.padding_size = 5
    data = theirs.serialize()
    ours = RtpPacket.parse(data)
    assert (ours.payload_type, ours.marker, ours.sequence_number) == (0, True, 65535)
    assert ours.timestamp == 4_000_000_000 and ours.ssrc == 99 and ours.csrc == (1, 2, 3)
    assert ours.payload == b"\xff" * 160 and len(ours.padding) == 5
    assert bytes(ours) == data  # aiortc's random padding octets survive


def test_built_packet_serializes_like_aiortc() -> None:
    ours = RtpPacket(payload_type=8, sequence_number=7, timestamp=160, ssrc=0xABCDEF01, payload=b"\xd5" * 160)
    theirs = AiortcRtpPacket(
        payload_type=8, sequence_number=7, timestamp=160, ssrc=0xABCDEF01, payload=b"\xd5" * 160
    )
    assert bytes(ours) == theirs.serialize()
    padded = RtpPacket(0, 1, 2, 3, b"x", padding=RtpPacket.pad(4))
    assert bytes(padded)[-4:] == b"\x00\x00\x00\x04" and bytes(padded)[0] & 0x20


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than the 12-octet header"),
        (bytes.fromhex("8000000100000000000000"), "shorter than the 12-octet header"),
        (bytes.fromhex("400000010000000000000000"), "version is 1"),
        (bytes.fromhex("830000010000000000000000") + b"\x00" * 8, "announces 3 CSRC"),
        (bytes.fromhex("900000010000000000000000") + b"\xbe\xde", "extension header is truncated"),
        (
            bytes.fromhex("900000010000000000000000") + bytes.fromhex("bede0002") + b"\x00" * 4,
            "announces 2 words",
        ),
        (bytes.fromhex("a00000010000000000000000") + b"\x01\x02\x00", "padding length 0"),
        (bytes.fromhex("a00000010000000000000000") + b"\x01\x02\x09", "padding length 9"),
    ],
)
def test_malformed_packets_give_clear_errors(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        RtpPacket.parse(data)


def test_invalid_fields_are_refused_when_building() -> None:
    with pytest.raises(RtpError, match="payload type"):
        RtpPacket(128, 0, 0, 0)
    with pytest.raises(RtpError, match="sequence number"):
        RtpPacket(0, 65536, 0, 0)
    with pytest.raises(RtpError, match="at most 15"):
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16)))
    with pytest.raises(RtpError, match="multiple of 4"):
        RtpExtension(1, b"abc")
    with pytest.raises(RtpError, match="last octet says"):
        RtpPacket(0, 0, 0, 0, padding=b"\x00\x05")


def test_rtcp_demultiplexing_and_wrapping_arithmetic() -> None:
    assert not is_rtcp(PCMU_20MS) and not is_rtcp(SIPP_EVENT_FIRST)
    assert is_rtcp(bytes.fromhex("80c80006")) and is_rtcp(bytes.fromhex("81c90007"))
    assert seq_diff(2, 65534) == 4 and seq_diff(65534, 2) == -4
    assert ts_diff(10, 0xFFFFFFF6) == 20 and ts_diff(0, 0x80000000) == -0x80000000


def test_plain_header_fast_path_is_the_validated_packet() -> None:
    """Plain packets (no padding, extension or CSRC: every audio packet) skip the field checks on parse
    and serialise without the general path; what comes out is the same packet either way."""
    for pt, marker, seq, ts, ssrc in [(0, False, 0, 0, 0), (127, True, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)]:
        built = RtpPacket(pt, seq, ts, ssrc, b"\x7f" * 160, marker)
        wire = bytes(built)
        assert wire[0] == 0x80 and wire[1] == (0x80 if marker else 0) | pt and wire[12:] == built.payload
        parsed = RtpPacket.parse(wire)
        assert parsed == built and bytes(parsed) == wire
    padded = RtpPacket(0, 1, 2, 3, b"abcd", padding=RtpPacket.pad(4))
    assert RtpPacket.parse(bytes(padded)) == padded  # the general path still takes the rest
