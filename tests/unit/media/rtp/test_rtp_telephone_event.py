"""RFC 4733 telephone-events: payload format, the receiver's one-digit-per-press collapse (with the
packets of SIPp's shipped dtmf_2833_1.pcap), long-event segments, stragglers, and the sender's
packet sequence."""

from __future__ import annotations

import struct

import pytest

from services.media.rtp.packet import RtpPacket
from services.media.rtp.telephone_event import (
    DIGITS,
    TelephoneEvent,
    TelephoneEventError,
    TelephoneEventReceiver,
    digit_code,
    digit_packets,
)

# Every packet of SIPp's dtmf_2833_1.pcap (digit 1): seven updates, then the end packet three times
# with the same sequence number, all with the event's start timestamp 0x33e0.
SIPP_DIGIT_1 = [
    bytes.fromhex(h)
    for h in (
        "80e51f30000033e00e05384e010a0000",
        "80651f31000033e00e05384e010a0140",
        "80651f32000033e00e05384e010a0280",
        "80651f33000033e00e05384e010a03c0",
        "80651f34000033e00e05384e010a0500",
        "80651f35000033e00e05384e010a0640",
        "80651f36000033e00e05384e010a0780",
        "80651f37000033e00e05384e018a08c0",
        "80651f37000033e00e05384e018a08c0",
        "80651f37000033e00e05384e018a08c0",
    )
]


def test_payload_parse_and_build() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("018a08c0"))
    assert event == TelephoneEvent(event=1, end=True, volume=10, duration=2240)
    assert event.digit == "1"
    assert bytes(event) == bytes.fromhex("018a08c0")
    # The layout STACK-NOTES measured against real peers: struct.pack("!BBH", event, E|volume, duration).
    assert bytes(TelephoneEvent(11, True, 7, 800)) == struct.pack("!BBH", 11, 0x80 | 7, 800)
    assert TelephoneEvent(16).digit is None  # flash
    assert [digit_code(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert digit_code("a") == 12 and DIGITS[11] == "#"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: TelephoneEvent.parse(b"\x01\x0a"), "needs 4"),
        (lambda: TelephoneEvent(1, volume=64), "volume"),
        (lambda: TelephoneEvent(1, duration=70000), "16-bit"),
        (lambda: digit_code("E"), "not a DTMF digit"),
        (lambda: digit_code("12"), "not a DTMF digit"),
        (lambda: digit_packets("1", timestamp=0, duration=9.0), "65535-unit segment"),
        (lambda: digit_packets("1", timestamp=0, duration=0), "positive"),
    ],
)
def test_bad_input_gives_clear_errors(call, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TelephoneEventError, match=reason):
        call()


def test_sipp_capture_collapses_to_one_digit() -> None:
    receiver = TelephoneEventReceiver()
    digits = []
    for data in SIPP_DIGIT_1:
        packet = RtpPacket.parse(data)
        assert packet.payload_type == 101
        digits += receiver.on_packet(packet.timestamp, packet.payload)
    assert [(d.digit, d.timestamp, d.volume) for d in digits] == [("1", 0x33E0, 10)]


def test_repeated_digit_is_two_presses() -> None:
    receiver = TelephoneEventReceiver()
    digits = []
    for start in (1000, 3000):  # "55": same code, new timestamp after an ended event
        for packet in digit_packets("5", timestamp=start, duration=0.08):
            digits += receiver.on_packet(packet.timestamp, packet.payload)
    assert [d.digit for d in digits] == ["5", "5"]


def test_only_end_packets_still_give_the_digit() -> None:
    receiver = TelephoneEventReceiver()
    end = bytes(TelephoneEvent(10, True, 10, 800))
    assert [d.digit for d in receiver.on_packet(500, end)] == ["*"]
    assert receiver.on_packet(500, end) == [] and receiver.on_packet(500, end) == []


def test_lost_end_packets_do_not_merge_two_presses() -> None:
    receiver = TelephoneEventReceiver()
    first = receiver.on_packet(0, bytes(TelephoneEvent(5, False, 10, 480)))
    # Next press of the same key 300 ms later; the first one's end packets were all lost.
    second = receiver.on_packet(2400, bytes(TelephoneEvent(5, False, 10, 160)))
    assert [d.digit for d in first + second] == ["5", "5"]


def test_long_press_segments_are_one_digit() -> None:
    receiver = TelephoneEventReceiver()
    digits = receiver.on_packet(10_000, bytes(TelephoneEvent(0, False, 10, 32000)))
    digits += receiver.on_packet(10_000, bytes(TelephoneEvent(0, False, 10, 65535)))
    # RFC 4733 2.5.1.3: the next segment starts a new timestamp, without an end bit before it.
    digits += receiver.on_packet(10_000 + 65535, bytes(TelephoneEvent(0, False, 10, 160)))
    digits += receiver.on_packet(10_000 + 65535, bytes(TelephoneEvent(0, True, 10, 4000)))
    assert [d.digit for d in digits] == ["0"]


def test_stragglers_of_an_earlier_event_are_ignored() -> None:
    receiver = TelephoneEventReceiver()
    assert [d.digit for d in receiver.on_packet(8000, bytes(TelephoneEvent(1, False, 10, 160)))] == ["1"]
    assert [d.digit for d in receiver.on_packet(16000, bytes(TelephoneEvent(2, False, 10, 160)))] == ["2"]
    assert receiver.on_packet(8000, bytes(TelephoneEvent(1, True, 10, 800))) == []
    assert receiver.on_packet(2**32 - 100, bytes(TelephoneEvent(3, True, 10, 800))) == []  # before 8000


def test_events_that_are_not_digits_report_nothing() -> None:
    receiver = TelephoneEventReceiver()
    assert receiver.on_packet(0, bytes(TelephoneEvent(16, False, 10, 160))) == []  # flash
    assert [d.digit for d in receiver.on_packet(4000, bytes(TelephoneEvent(9, False, 10, 160)))] == ["9"]


def test_sender_lays_out_updates_and_three_end_packets() -> None:
    packets = digit_packets("5", timestamp=123_456, duration=0.1, volume=8)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [round(p.offset, 3) for p in packets] == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {123_456}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(5, 8)}
    assert [p.end for p in packets] == [e.end for e in events]

    odd = [TelephoneEvent.parse(p.payload) for p in digit_packets("#", timestamp=2**32 + 5, duration=0.05)]
    assert [(e.duration, e.end) for e in odd] == [
        (160, False),
        (320, False),
        (400, True),
        (400, True),
        (400, True),
    ]
    assert digit_packets("#", timestamp=2**32 + 5, duration=0.05)[0].timestamp == 5


def test_sender_output_feeds_the_receiver_as_one_digit_each() -> None:
    receiver = TelephoneEventReceiver()
    heard = []
    timestamp = 0
    for digit in "0123456789*#ABCD":
        for packet in digit_packets(digit, timestamp=timestamp, duration=0.06):
            heard += receiver.on_packet(packet.timestamp, packet.payload)
        timestamp += 1600
    assert "".join(d.digit for d in heard) == "0123456789*#ABCD"
