"""The UA's first look at a request (services/media/ua/requests.py): answered at once, or where it goes."""

from __future__ import annotations

import pytest

from services.media import sip
from services.media.ua.requests import Answer, Goes, info_digit, screen
from services.media.ua.transport import as_peer


def _request(method: str, uri: str = "sip:+15550100200@127.0.0.1", *headers: str) -> sip.SipRequest:
    extra = "".join(f"{h}\r\n" for h in headers)
    data = (
        f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa\r\n"
        f"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()
    request = sip.parse_datagram(data)
    assert isinstance(request, sip.SipRequest)
    return request


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (_request("ACK"), Goes.ACK),
        (_request("CANCEL", "sip:+15550100200@127.0.0.1", "Require: foo"), Goes.CANCEL),
        (_request("INVITE"), Goes.DIALOG),
        (_request("BYE"), Goes.DIALOG),
        (_request("INFO"), Goes.DIALOG),
    ],
)
def test_where_a_request_goes(request_: sip.SipRequest, expected: Goes) -> None:
    assert screen(request_) is expected


def test_what_is_answered_at_once() -> None:
    assert screen(_request("INVITE", "mailto:a@b")) == Answer(416)
    assert screen(_request("INVITE", "sip:x@y", "Require: 100rel")) == Answer(
        420, (("Unsupported", "100rel"),)
    )
    options = screen(_request("OPTIONS"))
    assert isinstance(options, Answer) and options.status == 200
    assert dict(options.headers)["Allow"] == "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
    register, dance = screen(_request("REGISTER")), screen(_request("DANCE"))
    assert isinstance(register, Answer) and register.status == 405
    assert isinstance(dance, Answer) and dance.status == 501


@pytest.mark.parametrize(
    ("ctype", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"signal= a\r\n", "A"),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf", b"10", "*"),
        ("application/dtmf", b"11", "#"),
        ("application/dtmf", b"7", "7"),
        ("application/dtmf", b"77", None),
    ],
)
def test_the_digit_an_info_carries(ctype: str, body: bytes, digit: str | None) -> None:
    assert info_digit(ctype, body) == digit


def test_a_peer_back_from_the_sip_layer_is_checked_for_its_shape() -> None:
    assert as_peer(("udp", "192.0.2.7", 5070)) == ("udp", "192.0.2.7", 5070)
    for bad in (None, ("udp", "192.0.2.7"), ["udp", "192.0.2.7", 5070], ("udp", "192.0.2.7", "5070")):
        with pytest.raises(TypeError, match="not a SIP peer"):
            as_peer(bad)
