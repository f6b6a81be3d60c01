"""Pure pieces: token verification edge cases, coturn REST TURN credentials, getStats -> call.quality."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import uuid

import jwt
import pytest
from aiortc.stats import RTCInboundRtpStreamStats, RTCOutboundRtpStreamStats, RTCRemoteInboundRtpStreamStats

from services.api.tokens import (
    AGENT_AUDIENCE,
    ISSUER,
    TokenError,
    TokenErrorCode,
    issue_agent_token,
    turn_credentials,
    verify_token,
)
from services.media.webrtc import quality_from_stats

SECRET = "s" * 43
TENANT, AGENT = uuid.uuid4(), uuid.uuid4()


def test_tokens_round_trip_and_refuse_tampering() -> None:
    token, expires = issue_agent_token(SECRET, TENANT, AGENT, now=1_000_000.0)
    claims = verify_token(SECRET, token, now=1_000_001.0)
    assert (claims.tenant_id, claims.agent_id, claims.expires_at) == (TENANT, AGENT, expires)
    with pytest.raises(TokenError) as e:
        verify_token(SECRET, token, now=expires)
    assert e.value.code is TokenErrorCode.EXPIRED
    with pytest.raises(ValueError):
        issue_agent_token(SECRET, TENANT, AGENT, now=0.0, ttl=16 * 60)
    # alg=none, another audience, a missing claim, a changed payload: all invalid.
    now = 1_000_000
    base = {
        "iss": ISSUER,
        "aud": AGENT_AUDIENCE,
        "sub": str(AGENT),
        "tid": str(TENANT),
        "jti": "j",
        "iat": now,
    }
    unsigned = jwt.encode({**base, "exp": now + 60}, key=None, algorithm="none")
    other_aud = jwt.encode({**base, "aud": "switchboard:widget", "exp": now + 60}, SECRET, algorithm="HS256")
    no_exp = jwt.encode(base, SECRET, algorithm="HS256")
    head, body, sig = token.split(".")
    tampered = ".".join([head, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig])
    for bad in (unsigned, other_aud, no_exp, tampered, "", "a.b.c"):
        with pytest.raises(TokenError) as e:
            verify_token(SECRET, bad, now=now + 1.0)
        assert e.value.code is TokenErrorCode.INVALID
    with pytest.raises(TokenError):
        verify_token("", token)


def test_turn_credentials_follow_the_coturn_rest_scheme() -> None:
    username, credential, expires = turn_credentials("turnsecret", "agent-1", now=1000.0, ttl=600)
    assert username == "1600:agent-1" and expires == 1600.0
    expected = base64.b64encode(hmac.new(b"turnsecret", b"1600:agent-1", hashlib.sha1).digest()).decode()
    assert credential == expected
    with pytest.raises(ValueError):
        turn_credentials("", "a", now=0.0)
    with pytest.raises(ValueError):
        turn_credentials("x", "a:b", now=0.0)


def _report(
    received: int, lost: int, jitter_units: int, rtt: float | None, fraction: float
) -> dict[str, object]:
    ts = datetime.datetime.now(datetime.UTC)
    report: dict[str, object] = {
        "in": RTCInboundRtpStreamStats(
            timestamp=ts,
            type="inbound-rtp",
            id="in",
            ssrc=1,
            kind="audio",
            transportId="t",
            packetsReceived=received,
            packetsLost=lost,
            jitter=jitter_units,
        ),
        "out": RTCOutboundRtpStreamStats(
            timestamp=ts,
            type="outbound-rtp",
            id="out",
            ssrc=2,
            kind="audio",
            transportId="t",
            packetsSent=500,
            bytesSent=80000,
            trackId="a",
        ),
    }
    if rtt is not None:
        report["rin"] = RTCRemoteInboundRtpStreamStats(
            timestamp=ts,
            type="remote-inbound-rtp",
            id="rin",
            ssrc=2,
            kind="audio",
            transportId="t",
            packetsReceived=490,
            packetsLost=10,
            jitter=0,
            roundTripTime=rtt,
            fractionLost=fraction,
        )
    return report


def test_quality_from_stats_maps_jitter_loss_rtt_and_mos() -> None:
    clean = quality_from_stats(_report(1000, 0, 80, 0.04, 0.0), clock_rate=8000)
    assert clean.jitter_ms == 10.0 and clean.loss_percent == 0 and clean.rtt_ms == 40.0
    assert clean.packets_received == 1000 and clean.packets_sent == 500
    assert 4.3 <= clean.mos <= 4.5
    lossy = quality_from_stats(_report(950, 50, 80, 0.04, 0.0), clock_rate=8000)
    assert lossy.loss_percent == pytest.approx(5.0) and lossy.mos < clean.mos - 0.5
    # The peer's view of our stream counts too: the worse direction wins.
    remote = quality_from_stats(_report(1000, 0, 80, 0.04, 0.08), clock_rate=8000)
    assert remote.loss_percent == pytest.approx(8.0)
    # Opus legs report jitter at 48 kHz; no RTT yet gives None and a default delay.
    opus = quality_from_stats(_report(1000, 0, 480, None, 0.0), clock_rate=48000)
    assert opus.jitter_ms == 10.0 and opus.rtt_ms is None
