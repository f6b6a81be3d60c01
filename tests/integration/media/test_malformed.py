"""A corpus of malformed and edge-case messages sent over UDP and TCP, each with its exact outcome
(a status code, or silence); afterwards the edge still answers and a normal call still works."""

from __future__ import annotations

import secrets
import socket
import time

import pytest

from .sipclient import TcpSip, UdpSip, request, sdp, status_of

U = "sip:+15550001@127.0.0.1"


def msg(
    start: str = f"OPTIONS {U} SIP/2.0",
    *,
    drop: tuple[str, ...] = (),
    add: str = "",
    body: str = "",
    length: str | None = None,
    via: str | None = None,
    cseq: str = "1 OPTIONS",
) -> bytes:
    headers = {
        "Via": via or f"SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{secrets.token_hex(5)}",
        "Max-Forwards": "70",
        "From": f"<sip:a@127.0.0.1>;tag={secrets.token_hex(3)}",
        "To": "<sip:+15550001@127.0.0.1>",
        "Call-ID": secrets.token_hex(6),
        "CSeq": cseq,
    }
    lines = [start] + [f"{k}: {v}" for k, v in headers.items() if k not in drop]
    if add:
        lines.append(add.rstrip("\r\n"))
    lines.append(f"Content-Length: {len(body.encode()) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", errors="surrogateescape")


def raw(text: str) -> bytes:
    return text.encode("latin-1")


def inv(uri: str = U, *, ctype: str = "application/sdp", **kw) -> bytes:  # type: ignore[no-untyped-def]
    if kw.get("body"):
        kw["add"] = (kw.get("add", "") + f"\r\nContent-Type: {ctype}").lstrip("\r\n")
    return msg(f"INVITE {uri} SIP/2.0", cseq="1 INVITE", **kw)


NAME_TOO_LONG = "X-Long: " + "a" * 40000
CASES: list[tuple[str, bytes, int | None]] = [
    # start lines
    ("garbage", b"hello world\r\n\r\n", None),
    ("binary", bytes(range(256)), None),
    ("empty lines only", b"\r\n\r\n\r\n", None),
    ("extra spaces in request line", msg(f"OPTIONS  {U}  SIP/2.0"), 400),
    ("angle brackets around uri", msg(f"OPTIONS <{U}> SIP/2.0"), 400),
    ("foreign sip version", msg(f"OPTIONS {U} SIP/7.0"), 505),
    ("lowercase version", msg(f"OPTIONS {U} sip/2.0"), 200),
    ("missing version", msg(f"OPTIONS {U}"), None),
    (
        "response with no transaction",
        raw(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ),
        None,
    ),
    ("response with bad status", raw("SIP/2.0 99999 Huge\r\n\r\n"), None),
    ("unknown scheme uri", msg("OPTIONS http://example.com/ SIP/2.0"), 416),
    ("urn uri", msg("OPTIONS urn:service:sos SIP/2.0"), 416),
    ("tel uri options", msg("OPTIONS tel:+15550001 SIP/2.0"), 200),
    ("escaped uri user", msg("OPTIONS sip:%2B1555%30001@127.0.0.1 SIP/2.0"), 200),
    ("headers in request uri", msg(f"OPTIONS {U}?Subject=x SIP/2.0"), 400),
    ("space in uri", msg("OPTIONS sip:a b@127.0.0.1 SIP/2.0"), 400),
    # mandatory headers
    ("missing via", msg(drop=("Via",)), None),
    ("missing from", msg(drop=("From",)), 400),
    ("missing to", msg(drop=("To",)), 400),
    ("missing call-id", msg(drop=("Call-ID",)), 400),
    ("missing cseq", msg(drop=("CSeq",)), 400),
    ("missing max-forwards is fine", msg(drop=("Max-Forwards",)), 200),
    ("repeated call-id", msg(add="Call-ID: second"), 400),
    ("repeated from", msg(add="From: <sip:x@y>;tag=2"), 400),
    ("cseq method mismatch", msg(cseq="1 INVITE"), 400),
    ("cseq not a number", msg(cseq="one OPTIONS"), 400),
    ("cseq too large", msg(cseq="4294967296 OPTIONS"), 400),
    # The platform is the endpoint of what it serves, never a proxy: 0 is answered like any value.
    (
        "max-forwards zero",
        msg(add="", drop=("Max-Forwards",)).replace(b"CSeq:", b"Max-Forwards: 0\r\nCSeq:"),
        200,
    ),
    ("max-forwards huge", msg(drop=("Max-Forwards",)).replace(b"CSeq:", b"Max-Forwards: 300\r\nCSeq:"), 400),
    # via
    # A broken Via still gets its 400, sent back to the packet's source.
    ("invalid via protocol", msg(via="SIP/2.0/UDP"), 400),
    ("via without host", msg(via="SIP/2.0/UDP ;branch=z9hG4bKa"), 400),
    ("via bad port", msg(via="SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKa"), 400),
    ("via rfc2543 without branch", msg(via="SIP/2.0/UDP 127.0.0.1:5999"), 200),
    (
        "via compact form",
        msg(drop=("Via",)).replace(
            b"Max-Forwards", b"v: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKcmp\r\nMax-Forwards"
        ),
        200,
    ),
    # content-length
    ("negative content-length", msg(length="-5"), 400),
    ("huge content-length", msg(length="999999999"), 400),
    ("content-length larger than body", msg(body="abc", length="10"), 400),
    ("content-length not a number", msg(length="ten"), 400),
    ("content-length shorter than body", msg(body="abcdef", length="2"), 200),
    ("repeated content-length", msg(add="Content-Length: 0"), 400),
    # header syntax
    ("header without colon", msg(add="NoColonHere"), 400),
    ("folded header", msg(add="Subject: one\r\n two"), 200),
    (
        "compact headers",
        raw(
            f"OPTIONS {U} SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKcc\r\nf: <sip:a@b>;tag=1\r\nt: <{U}>\r\ni: cc1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
        ),
        200,
    ),
    (
        "odd case header names",
        raw(
            f"OPTIONS {U} SIP/2.0\r\nvIA: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKoc\r\nfROM: <sip:a@b>;tag=1\r\nTO: <{U}>\r\ncall-id: oc1\r\ncseq: 1 OPTIONS\r\ncontent-length: 0\r\n\r\n"
        ),
        200,
    ),
    ("unbalanced quote in display name", msg(drop=("From",), add='From: "Alice <sip:a@b>;tag=1'), 400),
    ("quoted display name with escapes", msg(drop=("From",), add='From: "A \\"q\\" B" <sip:a@b>;tag=1'), 200),
    # 40 kB of header fits a UDP datagram (accepted); on TCP it exceeds the 32 KiB header limit (513).
    ("very long header", msg(add=NAME_TOO_LONG), 200),
    ("non utf-8 header", msg(add="Subject: \udcff\udcfe"), 400),
    ("bare cr", msg().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\rX: y\r\n"), 400),
    ("bare lf line ends", msg().replace(b"\r\n", b"\n"), 200),
    ("unknown header kept", msg(add="X-Whatever: ;;;"), 200),
    ("require unknown extension", msg(add="Require: 100rel, foo"), 420),
    ("empty require list", msg(add="Require: ,,"), 200),
    # methods
    ("register", msg(f"REGISTER {U} SIP/2.0", cseq="1 REGISTER"), 405),
    ("subscribe", msg(f"SUBSCRIBE {U} SIP/2.0", cseq="1 SUBSCRIBE"), 405),
    ("message", msg(f"MESSAGE {U} SIP/2.0", cseq="1 MESSAGE"), 405),
    ("unknown method", msg(f"FOOBAR {U} SIP/2.0", cseq="1 FOOBAR"), 501),
    ("ack without dialog", msg(f"ACK {U} SIP/2.0", cseq="1 ACK"), None),
    ("bye without dialog", msg(f"BYE {U} SIP/2.0", cseq="1 BYE", drop=("To",), add=f"To: <{U}>;tag=zz"), 481),
    (
        "info without dialog",
        msg(f"INFO {U} SIP/2.0", cseq="1 INFO", drop=("To",), add=f"To: <{U}>;tag=zz"),
        481,
    ),
    ("bye without to tag", msg(f"BYE {U} SIP/2.0", cseq="1 BYE"), 481),
    ("cancel without invite", msg(f"CANCEL {U} SIP/2.0", cseq="1 CANCEL"), 481),
    ("reinvite unknown dialog", inv(drop=("To",), add=f"To: <{U}>;tag=zz", body=sdp(4000).decode()), 481),
    # INVITE specifics
    ("invite unknown number", inv("sip:+19990000000@127.0.0.1", body=sdp(4000).decode()), 404),
    ("invite non-number user", inv("sip:alice@127.0.0.1", body=sdp(4000).decode()), 404),
    ("invite non-sdp body", inv(body="hello", ctype="text/plain"), 415),
    ("invite bad sdp", inv("sip:CLAIMED@127.0.0.1", body="v=0\r\nthis is not sdp\r\n"), 400),
    (
        "invite sdp without audio",
        inv("sip:CLAIMED@127.0.0.1", body=sdp(4000).decode().replace("m=audio", "m=video")),
        488,
    ),
]


@pytest.fixture()
def udp(media_edge):  # type: ignore[no-untyped-def]
    client = UdpSip(media_edge.port)
    yield client
    client.close()


def _claimed(case: bytes, number: str) -> bytes:
    return case.replace(b"+19990000000", b"+19990000000")


@pytest.mark.parametrize(("name", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_udp_corpus(media_edge, udp, name: str, data: bytes, expected: int | None) -> None:
    udp.send(data.replace(b"CLAIMED", media_edge.number.encode()))
    replies = []
    deadline = time.monotonic() + (0.6 if expected is None else 3.0)
    while time.monotonic() < deadline:
        got = udp.recv(max(0.01, deadline - time.monotonic()))
        if got is None:
            break
        if status_of(got) in (100, 180):
            continue
        replies.append(got)
        if expected is not None:
            break
    if expected is None:
        assert replies == [], f"{name}: expected silence, got {replies[0][:80]!r}"
    else:
        assert replies, f"{name}: no answer"
        assert status_of(replies[0]) == expected, f"{name}: {replies[0][:120]!r}"
    if 400 <= (expected or 0) < 500 and expected not in (404, 481, 405, 415, 416, 420, 483, 488):
        assert b"(" in replies[0].split(b"\r\n")[0], "a 400 names its reason"


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 60


TCP_CASES = [
    c for c in CASES if c[0] not in ("binary", "content-length shorter than body", "bare lf line ends")
]


def test_tcp_corpus(media_edge) -> None:
    """Each case on its own connection: a status, or silence / a closed connection."""
    failures = []
    for name, data, expected in TCP_CASES:
        client = TcpSip(media_edge.port)
        # A fresh branch: the same bytes already went over UDP and would match that transaction.
        data = data.replace(b"branch=z9hG4bK", b"branch=z9hG4bKtcp")
        client.send(
            data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(b"CLAIMED", media_edge.number.encode())
        )
        got = client.recv(0.4 if expected is None else 3.0)
        while got and status_of(got) in (100, 180):
            got = client.recv(3.0)
        client.close()
        if expected is None or name in (
            "negative content-length",
            "huge content-length",
            "content-length not a number",
            "repeated content-length",
            "content-length larger than body",
            "very long header",
        ):
            # Framing is lost: an error response if the head was readable, then the connection closes.
            if got and status_of(got) not in (400, 513):
                failures.append(f"{name}: {got[:100]!r}")
        elif not got or status_of(got) != expected:
            failures.append(f"{name}: expected {expected}, got {got[:100] if got else got!r}")
    assert not failures, "\n".join(failures)


def test_torn_tcp_frames_and_pipelining(media_edge) -> None:
    client = TcpSip(media_edge.port)
    a, b = msg(), msg()
    a, b = a.replace(b"/UDP", b"/TCP"), b.replace(b"/UDP", b"/TCP")
    for i in range(len(a)):
        client.send(a[i : i + 1])  # byte by byte
    assert status_of(client.recv(3.0) or b"") == 200
    client.send(b + msg().replace(b"/UDP", b"/TCP"))  # two in one segment
    assert status_of(client.recv(3.0) or b"") == 200
    assert status_of(client.recv(3.0) or b"") == 200
    client.send(b"\r\n\r\n")  # keepalive ping: no answer, connection stays
    client.send(msg().replace(b"/UDP", b"/TCP"))
    assert status_of(client.recv(3.0) or b"") == 200
    client.close()


def test_a_normal_call_still_works_after_the_corpus(media_edge, udp) -> None:
    for _, data, _ in CASES:
        udp.send(data)
    time.sleep(0.5)
    udp.collect(0.3)
    udp.send(
        request("INVITE", f"sip:{media_edge.number}@127.0.0.1", local_port=udp.local_port, body=sdp(4010))
    )
    final = udp.recv_final(5.0)
    assert final is not None and status_of(final) == 200


def test_rate_limit_sheds_a_flooding_source_only(media_edge) -> None:
    flood = UdpSip(media_edge.port, host="127.0.0.2")
    other = UdpSip(media_edge.port, host="127.0.0.3")
    flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    statuses: list[int] = []
    for i in range(600):
        flood.send(msg())
        if i % 20 == 19:
            time.sleep(0.004)
            statuses += [status_of(m) for m in flood.collect(0.001)]
    statuses += [status_of(m) for m in flood.collect(1.0)]
    assert 200 in statuses and 503 in statuses
    assert len(statuses) < 700, "once banned the flooding source gets silence"
    flood.send(msg())
    assert flood.recv(0.5) is None, "still ignored"
    other.send(msg())
    got = other.recv(2.0)
    assert got is not None and status_of(got) == 200
    flood.close()
    other.close()
