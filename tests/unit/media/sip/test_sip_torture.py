"""RFC 4475 torture tests, reconstructed: valid messages parse, invalid ones raise SipParseError only,
and the invalid requests that can be answered get the error response RFC 4475 asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.media.sip import SipParseError, SipRequest, SipResponse, error_response, parse_datagram

CORPUS = Path(__file__).with_name("data") / "rfc4475.txt"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    valid: bool
    status: int = 400
    respond: bool = True


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def load_corpus() -> dict[str, Case]:
    """The RFC 4475 messages, one per `=== name valid|invalid <status> respond|drop` block, LF line ends."""
    cases: dict[str, Case] = {}
    for block in re.split(r"(?m)^=== ", CORPUS.read_bytes().decode("utf-8"))[1:]:
        head, _, text = block.partition("\n")
        name, kind, *rest = head.split()
        if kind == "valid":
            cases[name] = Case(name, wire(text), True)
        else:
            cases[name] = Case(name, wire(text), False, int(rest[0]), rest[1] == "respond")
    return cases


CASES = load_corpus()
VALID = sorted(name for name, case in CASES.items() if case.valid and name != "dblreq")
INVALID = sorted(name for name, case in CASES.items() if not case.valid)


def test_corpus_is_complete() -> None:
    # RFC 4475 has 49 messages; mpart01 (binary body) is built below, the IPv6 ones (§4) are not used.
    assert len(VALID) == 26 and len(INVALID) == 21 and "dblreq" in CASES


def test_mpart01_binary_multipart_body_is_framed_by_content_length() -> None:
    binary = bytes(range(256)) + b"\r\n\r\n--7a9cbec02ceef655\r\n\x00\x00"
    body = (
        b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello\r\n"
        b"--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + binary
        + b"\r\n--7a9cbec02ceef655--\r\n"
    )
    head = wire(
        "MESSAGE sip:kumiko@example.org SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n"
        "Max-Forwards: 70\n"
        "Route: <sip:127.0.0.1:5080>\n"
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
        "Contact: <sip:fluffy@127.0.0.1:5070>\n"
        "To: <sip:kumiko@example.org>\n"
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n"
        "CSeq: 1 MESSAGE\n"
        "Content-Transfer-Encoding: binary\n"
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
        "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
        "User-Agent: SIPimp.org/0.2.5 (curses)\n"
        f"Content-Length: {len(body)}\n\n"
    )
    msg = parse_datagram(head + body)
    assert msg.body == body
    assert msg.via[0].wants_rport and msg.via[0].port == 5070
    assert msg.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert parse_datagram(bytes(msg)).body == body


@pytest.mark.parametrize("name", VALID)
def test_valid_torture_message_parses_and_round_trips(name: str) -> None:
    msg = parse_datagram(CASES[name].data)
    again = parse_datagram(bytes(msg))
    assert bytes(again) == bytes(msg)
    # Serializing adds a Content-Length when the datagram had none (inv2543); nothing else changes.
    assert [h for h in again.headers.items() if h[0] != "Content-Length"] == [
        h for h in msg.headers.items() if h[0] != "Content-Length"
    ]
    assert again.body == msg.body


def test_wsinv_fields() -> None:
    msg = parse_datagram(CASES["wsinv"].data)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in msg.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params.get("newparam") == "newvalue"
    assert "secondparam" in contact.params and contact.params.get("secondparam") is None
    assert contact.params.get("q") == "0.33"
    assert len(msg.body) == 150


def test_intmeth_unusual_characters() -> None:
    msg = parse_datagram(CASES["intmeth"].data)
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = msg.to.sip_uri
    assert uri is not None and uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_escapes_and_compact_forms() -> None:
    esc01 = parse_datagram(CASES["esc01"].data)
    to = esc01.to.sip_uri
    assert to is not None and to.user_unescaped == "user"
    assert esc01.content_type == "application/sdp"
    assert esc01.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    esc02 = parse_datagram(CASES["esc02"].data)
    assert isinstance(esc02, SipRequest) and esc02.method == "RE%47IST%45R"
    assert [c.uri for c in esc02.contacts] == ["sip:alias1@host1.example.com", "sip:alias3@host3.example.com"]
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    escnull = parse_datagram(CASES["escnull"].data)
    assert [c.uri for c in escnull.contacts] == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]


def test_longreq_has_34_vias_in_order() -> None:
    msg = parse_datagram(CASES["longreq"].data)
    hosts = [v.host for v in msg.via]
    assert len(hosts) == 34
    assert hosts[0] == "sip33.example.com" and hosts[-1] == "host.example.com"
    assert msg.via[-1].received == "192.0.2.5"


def test_dblreq_keeps_only_the_first_message_of_the_datagram() -> None:
    msg = parse_datagram(CASES["dblreq"].data)
    assert isinstance(msg, SipRequest) and msg.method == "REGISTER"
    assert msg.body == b""


def test_responses_with_unusual_reason_phrases() -> None:
    unreason = parse_datagram(CASES["unreason"].data)
    assert isinstance(unreason, SipResponse) and unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    noreason = parse_datagram(CASES["noreason"].data)
    assert isinstance(noreason, SipResponse) and noreason.status == 100 and noreason.reason == ""


def test_rfc2543_invite_without_content_length_takes_the_rest_of_the_datagram() -> None:
    msg = parse_datagram(CASES["inv2543"].data)
    assert msg.body.startswith(b"v=0") and msg.body.endswith(b"RTP/AVP 0\r\n")
    assert not msg.top_via.has_magic_cookie


def test_unknown_schemes_parse_opaquely() -> None:
    unkscm = parse_datagram(CASES["unkscm"].data)
    assert isinstance(unkscm, SipRequest) and unkscm.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    unksm2 = parse_datagram(CASES["unksm2"].data)
    assert unksm2.to.uri == "isbn:2983792873"
    assert unksm2.contacts[0].uri == "name:John_Smith"


@pytest.mark.parametrize("name", INVALID)
def test_invalid_torture_message_raises_sip_parse_error(name: str) -> None:
    case = CASES[name]
    status, can_respond = case.status, case.respond
    with pytest.raises(SipParseError) as info:
        parse_datagram(case.data)
    err = info.value
    assert err.status == status
    assert err.can_respond is can_respond
    response = error_response(err, to_tag="abc")
    if not can_respond:
        assert response is None
        return
    assert response is not None and response.status == status
    assert err.partial is not None
    assert response.headers.get_all("Via") == list(err.partial.via)
    # The error response itself must be a well-formed message the caller can parse, whenever the
    # request's own Via/From/To were well formed enough to copy.
    if name not in ("badinv01", "quotbal", "badaspec", "baddn", "badvers", "insuf", "multi01", "scalar02"):
        again = parse_datagram(bytes(response))
        assert isinstance(again, SipResponse) and again.status == status
        assert again.to.tag is not None


def test_invalid_reasons_name_the_problem() -> None:
    def reason(name: str) -> str:
        with pytest.raises(SipParseError) as info:
            parse_datagram(CASES[name].data)
        return info.value.reason

    assert reason("clerr") == "Content-Length larger than the body"
    assert reason("ncl") == "invalid Content-Length"
    assert reason("mismatch01") == "CSeq method does not match the request method"
    assert reason("insuf") == "missing From header"
    assert reason("mcl01") == "more than one Content-Length header"
    assert reason("ltgtruri") == "Request-URI must not be enclosed in <>"
    assert reason("escruri") == "headers are not allowed in a Request-URI"
    assert reason("regbadct") == "invalid Contact header: URI with headers must be enclosed in <>"
    assert reason("badvers") == "unsupported SIP version"
