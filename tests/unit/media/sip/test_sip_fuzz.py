"""Property-style fuzzing with a fixed seed: random bytes and mutations of valid messages only ever raise
SipParseError, whatever is accepted serializes to something accepted again, and the SDP and digest
parsers fail with a reason, never an exception of another kind."""

from __future__ import annotations

import random
import re
from pathlib import Path

from services.media.sip import (
    SipParseError,
    SipRequest,
    StreamParser,
    answer_offer,
    make_response,
    parse_datagram,
    parse_sdp,
    verify_authorization,
)
from services.media.sip.auth import Credentials

CORPUS = Path(__file__).with_name("data") / "rfc4475.txt"
# Every RFC 4475 message (valid and invalid) as a seed, with CRLF line ends.
SEEDS = [
    block.partition("\n")[2].replace("\n", "\r\n").encode("utf-8")
    for block in re.split(r"(?m)^=== ", CORPUS.read_bytes().decode("utf-8"))[1:]
]
SEEDS.append(
    b"INVITE sip:+15550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK7;rport\r\n"
    b'Max-Forwards: 70\r\nTo: <sip:+15550100@127.0.0.1>\r\nFrom: "A" <sip:a@10.0.0.1>;tag=19\r\n'
    b"Call-ID: c@h\r\nCSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.1:5070>\r\nContent-Type: application/sdp\r\n"
    b"Content-Length: 5\r\n\r\nv=0\r\n"
)
TOKENS = [b"\r\n", b"\r\n ", b";", b",", b'"', b"\\", b"<", b">", b":", b"@", b"=", b"%", b"?", b"[", b"]"]
TOKENS += [b"/", b" ", b"\t", b"\x00", b"\xff", b"\xc3", b"\r", b"\n", b"9" * 12, b"-1", b"sip:", b"z9hG4bK"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rng.choice(TOKENS)
            continue
        pos = rng.randrange(len(buf))
        op = rng.randrange(6)
        if op == 0:
            buf[pos] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 20)]
        elif op == 3:
            end = min(len(buf), pos + rng.randint(1, 40))
            buf[pos:pos] = buf[pos:end]
        elif op == 4:
            del buf[pos:]
        else:
            buf[pos : pos + 1] = bytes([buf[pos]]).swapcase()
    return bytes(buf)


def check_accepted(data: bytes) -> None:
    """Parse; if accepted, every accessor works and the serialized form is accepted and stable."""
    try:
        msg = parse_datagram(data)
    except SipParseError:
        return
    for value in (msg.via, msg.from_, msg.to, msg.cseq, msg.contacts, msg.routes, msg.record_routes):
        assert value is not None
    again = parse_datagram(bytes(msg))
    assert bytes(again) == bytes(msg)
    if isinstance(msg, SipRequest) and msg.method != "ACK":
        response = make_response(msg, 200, to_tag="fuzz")
        assert parse_datagram(bytes(response)).status == 200  # type: ignore[union-attr]


def test_random_bytes_only_raise_sip_parse_error() -> None:
    rng = random.Random(4475)
    for _ in range(1500):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        if rng.random() < 0.5:
            data = b"INVITE sip:a@b SIP/2.0\r\n" + data
        check_accepted(data)


def test_mutated_messages_only_raise_sip_parse_error() -> None:
    rng = random.Random(3261)
    accepted = 0
    for i in range(3000):
        data = mutate(rng, SEEDS[i % len(SEEDS)])
        try:
            parse_datagram(data)
            accepted += 1
        except SipParseError:
            pass
        check_accepted(data)
    assert 0 < accepted < 3000  # the mutations hit both sides


def test_stream_parser_survives_mutated_streams() -> None:
    rng = random.Random(18)
    for _ in range(300):
        parser = StreamParser(max_header_bytes=4096, max_body_bytes=4096)
        stream = b"".join(
            mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.3 else rng.choice(SEEDS) for _ in range(4)
        )
        pos = 0
        while pos < len(stream) and not parser.broken:
            step = rng.randint(1, 200)
            parser.feed(stream[pos : pos + step])
            pos += step
            for _ in range(10):
                try:
                    if parser.next_message() is None:
                        break
                except SipParseError:
                    if parser.broken:
                        break


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    b"m=video 4002 RTP/AVP 31\r\n"
)


def test_mutated_sdp_only_raises_sdp_errors_and_answers_never_crash() -> None:
    rng = random.Random(4566)
    for _ in range(2000):
        data = mutate(rng, SDP)
        try:
            offer = parse_sdp(data)
        except SipParseError:
            continue
        answer_offer(offer, local_address="127.0.0.1", local_port=5000, session_id=1, session_version=1)
        assert parse_sdp(bytes(offer)) is not None


def test_garbage_authorization_never_raises() -> None:
    rng = random.Random(8760)
    base = (
        b'Digest username="alice", realm="sb", nonce="65f0a1b2.0011aabbccdd.00", uri="sip:a@b", '
        b'response="0123456789abcdef", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="xyz"'
    )
    creds = Credentials("alice", password="pw")
    for _ in range(2000):
        text = mutate(rng, base).decode("utf-8", "replace")
        result = verify_authorization(
            text, method="INVITE", realm="sb", secret=b"k", now=1e9, credentials=creds
        )
        assert not result.ok and result.reason
