"""Symmetric RTP (latching) on a SIP leg: we send where the peer's RTP comes from, which gets through its
NAT, but a stray datagram aimed at a reused port (an ended WebRTC leg's consent check, another process's
late RTP) must not capture the leg. Seen in the first-call benchmark: 92 of 277 caller legs latched onto a
stray and dropped every packet of their real caller."""

from __future__ import annotations

import uuid

from services.media.rtp.g711 import G711
from services.media.rtp.packet import plain_rtp
from services.media.rtp.session import MediaClock, RtpSession, latches
from services.media.ua.call import Call

ANNOUNCED = ("127.0.0.1", 41000)
STRAY = ("127.0.0.1", 45000)
STUN = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12  # a binding request's header (consent check)


def rtp(seq: int, payload_type: int = 0) -> bytes:
    return plain_rtp(payload_type, seq, seq * 160, 0x1234, b"\xff" * 160, False)


def test_the_first_packet_of_our_stream_latches_and_only_the_announced_address_moves_it() -> None:
    ours = (0, 101)
    assert latches(False, STRAY, ANNOUNCED, 0, ours)  # comedia: the first packet of our stream
    assert latches(False, STRAY, ANNOUNCED, 101, ours)  # a digit first is ours too
    assert not latches(False, STRAY, ANNOUNCED, 8, ours)  # another stream (PCMA) never latches
    assert latches(True, ANNOUNCED, ANNOUNCED, 0, ours)  # the SDP's address wins over a stray latched first
    assert not latches(True, ("127.0.0.1", 45002), ANNOUNCED, 0, ours)  # once latched, nobody else
    assert not latches(True, STRAY, None, 0, ours)  # no SDP address (a late offer): the latch holds


def _leg(announced: tuple[str, int]) -> RtpSession:
    call = Call(call_id=uuid.uuid4(), tenant_id=uuid.uuid4(), created_at=0.0)
    session = RtpSession(call, host="127.0.0.1", port=40000, emit=lambda events: None, clock=MediaClock())
    session.configure(
        codec=G711.PCMU, payload_type=0, te_pt=101, remote=announced, sending=True, receiving=True
    )
    return session


def test_a_stray_datagram_before_the_caller_does_not_capture_the_leg() -> None:
    leg = _leg(ANNOUNCED)
    leg._on_rtp(STUN, STRAY, 1.0)  # not RTP: no latch, the SDP's address stays the remote
    assert (leg.latched, leg.remote) == (False, ANNOUNCED)
    leg._on_rtp(rtp(1), STRAY, 1.01)  # a stray PCMU stream comes first: latched, as comedia must
    assert leg.remote == STRAY
    for seq in range(10, 20):
        leg._on_rtp(rtp(seq), ANNOUNCED, 1.02 + seq * 0.02)  # the real caller: back to its address
    assert leg.remote == ANNOUNCED and leg.remote_rtcp == ("127.0.0.1", ANNOUNCED[1] + 1)
    received = leg.rx.received
    assert received >= 10
    leg._on_rtp(rtp(2), STRAY, 1.5)  # the stray again: dropped
    assert leg.remote == ANNOUNCED and leg.rx.received == received


def test_a_caller_behind_a_nat_is_still_latched_to_where_it_sends_from() -> None:
    leg = _leg(("10.0.0.5", 4000))  # a private address in its SDP, never a source here
    natted = ("203.0.113.9", 31000)
    for seq in range(5):
        leg._on_rtp(rtp(seq), natted, 1.0 + seq * 0.02)
    assert leg.remote == natted and leg.rx.received == 5
    leg._on_rtp(rtp(9), ("198.51.100.7", 5000), 1.2)  # anyone else: dropped
    assert leg.remote == natted and leg.rx.received == 5
