"""RFC 4028 session timers, the sans-IO part: what a caller asks for, what we answer, when we give up."""

from __future__ import annotations

import pytest

from services.media import sip
from services.media.sip.session_timer import (
    MIN_SE,
    SessionTimer,
    TooSmall,
    deadline,
    requested,
    response_headers,
)


def _invite(*headers: str) -> sip.SipRequest:
    extra = "".join(f"{h}\r\n" for h in headers)
    data = (
        "INVITE sip:+15550001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()
    request = sip.parse_datagram(data)
    assert isinstance(request, sip.SipRequest)
    return request


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), None),
        (("Session-Expires: 1800", "Supported: timer, replaces"), SessionTimer(1800)),
        (("x: 600;refresher=uac", "k: timer"), SessionTimer(600)),  # compact forms
        (("Session-Expires: 1800",), None),  # cannot refresh: no timer
        (("Session-Expires: 60", "Supported: timer"), TooSmall(MIN_SE)),
        (("Session-Expires: soon", "Supported: timer"), None),
    ],
)
def test_what_the_caller_asks(headers: tuple[str, ...], expected: object) -> None:
    assert requested(_invite(*headers)) == expected


def test_answer_and_deadline() -> None:
    timer = SessionTimer(1800)
    assert response_headers(timer) == [("Session-Expires", "1800;refresher=uac"), ("Require", "timer")]
    assert deadline(100.0, timer) == 100.0 + 1800 - 32
    assert deadline(100.0, SessionTimer(90)) == 100.0 + 90 - 30
