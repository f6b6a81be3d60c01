"""SIP message parsing, serialization and framing; URIs and the dialled number."""

from __future__ import annotations

import pytest

from services.media.sip import (
    Headers,
    Params,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamParser,
    TelUri,
    Via,
    build_request,
    dialled_number,
    error_response,
    is_keepalive,
    make_response,
    new_branch,
    parse_datagram,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from services.media.sip.headers import canonical_name, split_list, unquote
from services.media.sip.uri import SipUri


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


INVITE = wire(
    """INVITE sip:+15550100@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: <sip:+15550100@127.0.0.1>
From: "Alice" <sip:alice@10.0.0.1>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.com
CSeq: 314159 INVITE
Contact: <sip:alice@10.0.0.1:5070>
Content-Type: application/sdp
Content-Length: 5

v=0
"""
)


def options(extra: str = "", *, body: str = "") -> bytes:
    return wire(
        "OPTIONS sip:svc@127.0.0.1 SIP/2.0\n"
        "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKopt1\n"
        "From: <sip:probe@10.0.0.2>;tag=p1\n"
        "To: <sip:svc@127.0.0.1>\n"
        "Call-ID: opt-1\n"
        "CSeq: 1 OPTIONS\n"
        f"{extra}"
        f"Content-Length: {len(body.replace(chr(10), chr(13) + chr(10)).encode())}\n"
        "\n"
        f"{body}"
    )


# --- headers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
        ("b", "Referred-By"),
        ("a", "Accept-Contact"),
        ("j", "Reject-Contact"),
        ("d", "Request-Disposition"),
        ("n", "Identity-Info"),
        ("I", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("X-Custom-Thing", "X-Custom-Thing"),
    ],
)
def test_header_names_are_canonical(compact: str, full: str) -> None:
    assert canonical_name(compact) == full


def test_compact_and_case_insensitive_headers_parse_to_full_names() -> None:
    data = wire(
        """MESSAGE sip:svc@127.0.0.1 SIP/2.0
v: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKm1
f: <sip:a@10.0.0.3>;tag=t1
t: <sip:svc@127.0.0.1>
i: msg-1
cSeQ: 7 MESSAGE
k: timer, 100rel
s: hello
c: text/plain
l: 2

hi"""
    )
    msg = parse_datagram(data)
    assert [name for name, _ in msg.headers] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Supported",
        "Subject",
        "Content-Type",
        "Content-Length",
    ]
    assert msg.headers.get("SUPPORTED") == "timer, 100rel"
    assert msg.headers.get_list("supported") == ["timer", "100rel"]
    assert msg.body == b"hi"
    assert bytes(msg).startswith(
        b"MESSAGE sip:svc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKm1\r\n"
    )


def test_folded_lines_are_unfolded_and_serialization_is_normalised() -> None:
    data = wire(
        """OPTIONS sip:svc@127.0.0.1 SIP/2.0
via: SIP/2.0/UDP 10.0.0.4;branch=z9hG4bKf1,
   SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKf2
FROM:   <sip:a@10.0.0.4>
\t;tag=x9
To:<sip:svc@127.0.0.1>
Call-ID: fold-1
CSeq: 2
 OPTIONS
Subject: one
  two
l:0

"""
    )
    expected = wire(
        """OPTIONS sip:svc@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.4;branch=z9hG4bKf1
Via: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKf2
From: <sip:a@10.0.0.4> ;tag=x9
To: <sip:svc@127.0.0.1>
Call-ID: fold-1
CSeq: 2 OPTIONS
Subject: one two
Content-Length: 0

"""
    )
    msg = parse_datagram(data)
    assert bytes(msg) == expected
    assert bytes(parse_datagram(expected)) == expected
    assert msg.from_.tag == "x9"
    assert msg.cseq.number == 2


def test_bare_lf_line_ends_are_accepted() -> None:
    msg = parse_datagram(INVITE.replace(b"\r\n", b"\n").replace(b"Length: 5", b"Length: 4"))
    assert isinstance(msg, SipRequest) and msg.body == b"v=0\n"


def test_comma_lists_split_outside_quotes_and_angle_brackets() -> None:
    data = options(
        'Contact: "Smith, John" <sip:j@10.0.0.9;x=a,b>;q=0.5, <sip:k@10.0.0.10>\n'
        "Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\n"
        "Route: <sip:p3.example.com;lr>\n"
        'X-Note: a, "b, c"\n'
    )
    msg = parse_datagram(data)
    contacts = msg.contacts
    assert [c.uri for c in contacts] == ["sip:j@10.0.0.9;x=a,b", "sip:k@10.0.0.10"]
    assert contacts[0].display_name == "Smith, John" and contacts[0].params.get("q") == "0.5"
    assert [r.uri for r in msg.routes] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
        "sip:p3.example.com;lr",
    ]
    assert msg.headers.get_all("X-Note") == ['a, "b, c"']
    assert split_list('a, "b, c", <d,e>') == ["a", '"b, c"', "<d,e>"]


def test_quoted_strings_with_escapes() -> None:
    na = parse_name_addr(r'"The \"Boss\" \\ o/" <sip:boss@10.0.0.1>;tag=1;note="x;y, z"')
    assert na.display_name == 'The "Boss" \\ o/'
    assert na.params.get("note") == '"x;y, z"'
    assert unquote(na.params.get("note") or "") == "x;y, z"
    assert str(na) == r'"The \"Boss\" \\ o/" <sip:boss@10.0.0.1>;tag=1;note="x;y, z"'
    assert parse_name_addr(str(na)) == na


def test_via_parameters() -> None:
    via = parse_via("SIP/2.0/udp 10.0.0.1:5070;branch=z9hG4bK1a;rport;received=192.0.2.9;ttl=16")
    assert via.transport == "UDP" and via.host == "10.0.0.1" and via.port == 5070
    assert via.branch == "z9hG4bK1a" and via.has_magic_cookie
    assert via.wants_rport and via.rport is None and via.received == "192.0.2.9"
    assert via.sent_by == "10.0.0.1:5070"
    via.params.set("rport", "5071")
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1a;rport=5071;received=192.0.2.9;ttl=16"
    v6 = parse_via("SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bKv6")
    assert v6.host == "[2001:db8::1]" and v6.port == 5062
    assert parse_via("SIP/2.0/TLS host.example.com;branch=z9hG4bKx").sent_by == "host.example.com:5061"
    assert not parse_via("SIP/2.0/UDP h;branch=z9hG4bK").has_magic_cookie


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0 10.0.0.1",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP 10.0.0.1:99999",
        "SIP/2.0/UDP 10.0.0.1;branch=",
        "SIP/2.0/UDP 10.0.0.1;;branch=z9hG4bK1",
        "SIP/2.0/UDP 10.0.0.1 junk",
        "SIP/2.0/UDP [2001:db8::1",
    ],
)
def test_invalid_via(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


def test_headers_container() -> None:
    h = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("X-A", "1")])
    h.prepend("Via", "SIP/2.0/UDP b;branch=z9hG4bK2")
    h.add("x-a", "2")
    assert h.get_all("VIA") == ["SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP a;branch=z9hG4bK1"]
    assert h.count("X-A") == 2
    h.set("X-A", "3")
    assert h.get_all("x-a") == ["3"]
    assert h.remove("via") == 2 and "Via" not in h
    with pytest.raises(ValueError):
        h.add("X-Evil", "a\r\nVia: injected")


# --- framing ---------------------------------------------------------------------------------------


def test_datagram_without_content_length_runs_to_the_end() -> None:
    data = INVITE.replace(b"Content-Length: 5\r\n", b"")
    assert parse_datagram(data).body == b"v=0\r\n"


def test_datagram_with_extra_octets_after_the_body_truncates() -> None:
    assert parse_datagram(INVITE + b"garbage").body == b"v=0\r\n"


def test_datagram_content_length_larger_than_body_is_400_with_partial() -> None:
    with pytest.raises(SipParseError) as info:
        parse_datagram(INVITE.replace(b"Content-Length: 5", b"Content-Length: 400"))
    err = info.value
    assert err.status == 400 and err.can_respond and not err.fatal
    assert err.partial is not None and err.partial.call_id == "a84b4c76e66710@pc33.atlanta.com"


def test_keepalives_and_empty_datagrams() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"") and not is_keepalive(INVITE)
    with pytest.raises(SipParseError):
        parse_datagram(b"\r\n\r\n")
    assert isinstance(parse_datagram(b"\r\n" + INVITE), SipRequest)


def test_datagram_size_limit() -> None:
    with pytest.raises(SipParseError) as info:
        parse_datagram(INVITE, max_size=100)
    assert info.value.status == 513


def test_stream_parser_byte_by_byte() -> None:
    parser = StreamParser()
    out: list[SipRequest | SipResponse] = []
    for i in range(len(INVITE)):
        parser.feed(INVITE[i : i + 1])
        msg = parser.next_message()
        if msg is not None:
            out.append(msg)
            assert i == len(INVITE) - 1  # complete only with the last body byte
    assert len(out) == 1 and out[0].body == b"v=0\r\n"
    assert parser.next_message() is None and parser.buffered == 0


def test_stream_parser_many_messages_in_one_chunk_and_keepalives() -> None:
    parser = StreamParser()
    chunk = INVITE + b"\r\n\r\n" + options() + INVITE[:50]
    parser.feed(chunk)
    first, second = parser.next_message(), parser.next_message()
    assert isinstance(first, SipRequest) and first.method == "INVITE"
    assert isinstance(second, SipRequest) and second.method == "OPTIONS"
    assert parser.next_message() is None
    assert parser.pings == 1
    parser.feed(INVITE[50:])
    third = parser.next_message()
    assert isinstance(third, SipRequest) and third.call_id == first.call_id


def test_stream_parser_skips_a_malformed_but_framed_message() -> None:
    parser = StreamParser()
    bad = options().replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
    parser.feed(bad + options())
    with pytest.raises(SipParseError) as info:
        parser.next_message()
    assert not info.value.fatal and info.value.can_respond
    assert isinstance(parser.next_message(), SipRequest)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ((b"Content-Length: 0", b"Content-Length: -1"), 400),
        ((b"Content-Length: 0", b"Content-Length: five"), 400),
        ((b"Content-Length: 0\r\n", b""), 400),
        ((b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"), 400),
        ((b"Content-Length: 0", b"Content-Length: 999999999"), 513),
    ],
)
def test_stream_parser_framing_errors_are_fatal(change: tuple[bytes, bytes], status: int) -> None:
    parser = StreamParser(max_body_bytes=10000)
    parser.feed(options().replace(*change) + options())
    with pytest.raises(SipParseError) as info:
        parser.next_message()
    err = info.value
    assert err.fatal and err.status == status and err.can_respond
    assert parser.broken
    with pytest.raises(SipParseError):
        parser.next_message()  # stays broken: the adapter closes the connection


def test_stream_parser_header_size_limit() -> None:
    parser = StreamParser(max_header_bytes=1024)
    parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX-Long: " + b"a" * 2000)
    with pytest.raises(SipParseError) as info:
        parser.next_message()
    assert info.value.fatal and info.value.status == 513 and not info.value.can_respond
    # A long header under the limit is fine.
    ok = StreamParser()
    ok.feed(options("X-Long: " + "b" * 10000 + "\n"))
    msg = ok.next_message()
    assert msg is not None and len(msg.headers.get("X-Long") or "") == 10000


def test_non_utf8_header_is_400_with_what_could_be_read() -> None:
    data = INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nX-Bad: \xff\xfe")
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    err = info.value
    assert err.reason == "header is not valid UTF-8" and err.can_respond
    response = error_response(err, to_tag="t0")
    assert response is not None and response.status == 400
    assert response.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.com"
    assert parse_datagram(bytes(response)).to.tag == "t0"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"SIP/2.0 999 Nope\r\nVia: SIP/2.0/UDP a\r\n\r\n",
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n",
    ],
)
def test_unanswerable_input_gives_no_error_response(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_datagram(data)
    assert error_response(info.value) is None


# --- responses and requests we build -----------------------------------------------------------------


def test_make_response_copies_per_8_2_6() -> None:
    req = parse_datagram(
        INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nRecord-Route: <sip:p1;lr>")
    )
    assert isinstance(req, SipRequest)
    trying = make_response(req, 100, to_tag="ourtag")
    assert trying.reason == "Trying" and trying.to.tag is None
    assert trying.headers.get_all("Record-Route") == []
    ringing = make_response(req, 180, to_tag="ourtag")
    assert ringing.to.tag == "ourtag" and ringing.headers.get("Record-Route") == "<sip:p1;lr>"
    assert [v.branch for v in ringing.via] == ["z9hG4bK776asdhds"]
    assert ringing.from_.tag == "1928301774" and ringing.call_id == req.call_id
    assert ringing.cseq == req.cseq
    ok = make_response(
        req, 200, to_tag="ourtag", body=b"v=0\r\n", headers=[("Contact", "<sip:svc@127.0.0.1>")]
    )
    again = parse_datagram(bytes(ok))
    assert isinstance(again, SipResponse) and again.status == 200 and again.body == b"v=0\r\n"
    assert again.content_type == "application/sdp"


def test_build_request_round_trips() -> None:
    req = build_request(
        "OPTIONS",
        "sip:peer@10.0.0.9",
        via=Via("UDP", "127.0.0.1", 5060, Params([("branch", new_branch())])),
        from_="<sip:switchboard@127.0.0.1>;tag=abc",
        to="<sip:peer@10.0.0.9>",
        call_id="c1",
        cseq=1,
    )
    again = parse_datagram(bytes(req))
    assert isinstance(again, SipRequest) and again.method == "OPTIONS" and again.max_forwards == 70
    assert again.top_via.has_magic_cookie


# --- URIs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:secretword@atlanta.com;transport=tcp",
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sips:1212@gateway.com",
        "sip:alice@192.0.2.4",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:[2001:db8::10]:5070;lr",
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "urn:service:sos",
    ],
)
def test_uri_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_sip_uri_components() -> None:
    uri = parse_uri("sip:alice:pw@atlanta.com:5070;transport=TCP;lr?x=1")
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "pw", "atlanta.com", 5070)
    assert uri.transport == "tcp" and uri.loose_route and uri.headers == [("x", "1")]
    tel = parse_uri("tel:+1-201-555-0123;ext=1")
    assert isinstance(tel, TelUri) and tel.is_global and tel.params.get("ext") == "1"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@host",
        "sip:alice@",
        "sip:alice@host:70000",
        "sip:alice@host:port",
        "sip:alice@ho st",
        "sip:alice@host;;lr",
        "sip:a@b@c",
        "sip:[2001:db8::1",
        "nocolon",
        "1sip:x",
        "tel:",
        "tel:+",
    ],
)
def test_invalid_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:+15550100@127.0.0.1", "+15550100"),
        ("sip:+1-555-0100@127.0.0.1;user=phone", "+15550100"),
        ("sip:%2B15550100@127.0.0.1", "+15550100"),
        ("sip:0015550100@127.0.0.1", "+15550100"),
        ("sip:15550100@127.0.0.1", "+15550100"),
        ("sip:+15550100;npdi;rn=+15559999@carrier.example", "+15550100"),
        ("tel:+1-555-0100", "+15550100"),
        ("sips:+(555)0100@127.0.0.1", "+5550100"),
        ("sip:alice@127.0.0.1", None),
        ("sip:127.0.0.1", None),
        ("sip:+@127.0.0.1", None),
        ("sip:+1234567890123456@127.0.0.1", None),
        ("mailto:a@b", None),
        ("garbage", None),
    ],
)
def test_dialled_number(uri: str, number: str | None) -> None:
    assert dialled_number(uri) == number


def test_dialled_number_without_assuming_international() -> None:
    assert dialled_number("sip:1000@127.0.0.1", assume_international=False) == "1000"
    assert dialled_number("sip:+15550100@127.0.0.1", assume_international=False) == "+15550100"
