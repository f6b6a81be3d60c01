"""DirectSrtp: pylibsrtp's protect/unprotect without its per-call wrapper, on the same libsrtp session, so a
packet protected either way is one stream (never a reused keystream index) and every error still raises."""

from __future__ import annotations

import os

import pylibsrtp
import pytest

from services.media.rtp.packet import plain_rtp
from services.media.webrtc.srtp_direct import DirectSrtp

KEY = os.urandom(30)


def _pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return tx, rx


def test_interoperates_with_the_session_it_wraps_both_ways() -> None:
    tx, rx = _pair()
    direct_tx, direct_rx = DirectSrtp(tx), DirectSrtp(rx)
    assert direct_tx._srtp is not None  # the fast path, not the fallback (pylibsrtp as locked)
    for seq in range(6):
        packet = plain_rtp(0, seq, seq * 160, 0x1234, bytes([seq]) * 160)
        wire = direct_tx.protect(packet) if seq % 2 else tx.protect(packet)
        assert wire != packet and len(wire) == len(packet) + 10  # AES_CM_128_HMAC_SHA1_80's tag
        assert (direct_rx.unprotect(wire) if seq % 3 else rx.unprotect(wire)) == packet
        # The same packet again is a replay, whichever way it comes: one stream state.
        with pytest.raises(pylibsrtp.Error, match="replay"):
            direct_rx.unprotect(wire)


def test_tampered_and_oversized_packets_fail() -> None:
    tx, rx = _pair()
    wire = bytearray(DirectSrtp(tx).protect(plain_rtp(0, 1, 160, 7, bytes(160))))
    wire[30] ^= 1
    with pytest.raises(pylibsrtp.Error, match="authentication"):
        DirectSrtp(rx).unprotect(bytes(wire))
    with pytest.raises(ValueError):
        DirectSrtp(tx).protect(plain_rtp(0, 2, 320, 7, bytes(1400)))


def test_rtcp_round_trip() -> None:
    tx, rx = _pair()
    report = bytes([0x80, 200, 0, 6]) + bytes(24)  # a sender report's shape: header + 24 octets
    assert DirectSrtp(rx).unprotect_rtcp(DirectSrtp(tx).protect_rtcp(report)) == report
