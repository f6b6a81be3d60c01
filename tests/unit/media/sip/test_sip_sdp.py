"""SDP parsing and RFC 3264 offer/answer: codec choice, telephone-event mirroring, 488, hold and resume."""

from __future__ import annotations

import pytest

from services.media.sip import (
    PCMA,
    PCMU,
    Answer,
    Direction,
    Rejection,
    SdpParseError,
    SipParseError,
    accept_answer,
    answer_offer,
    create_offer,
    parse_sdp,
)


def sdp(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


OFFER = sdp(
    """v=0
o=alice 2890844526 2890844526 IN IP4 198.51.100.1
s=call
c=IN IP4 198.51.100.1
t=0 0
m=audio 49170 RTP/AVP 8 0 96
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ptime:30
a=sendrecv
m=video 51372 RTP/AVP 31
a=rtpmap:31 H261/90000
"""
)


def answer(offer: bytes, **kwargs: object) -> Answer:
    options: dict[str, object] = {
        "local_address": "127.0.0.1",
        "local_port": 20000,
        "session_id": 7,
        "session_version": 1,
    }
    result = answer_offer(parse_sdp(offer), **(options | kwargs))  # type: ignore[arg-type]
    assert isinstance(result, Answer), result
    return result


def test_parse_and_round_trip() -> None:
    parsed = parse_sdp(OFFER)
    assert bytes(parsed) == OFFER
    assert parsed.origin.username == "alice" and parsed.connection is not None
    audio = parsed.media[0]
    assert audio.formats == ["8", "0", "96"] and audio.ptime == 30 and audio.direction is Direction.SENDRECV
    assert audio.rtpmaps()[96].encoding == "telephone-event" and audio.fmtp(96) == "0-16"
    full = sdp(
        """v=0
o=- 1 2 IN IP6 2001:db8::1
s=-
i=info
u=http://example.com
e=a@example.com
p=+1 555 0100
c=IN IP6 2001:db8::1
b=AS:64
t=0 0
r=7d 1h 0 25h
z=2882844526 -1h
k=prompt
a=recvonly
m=audio 5004/2 RTP/AVP 0
i=audio
c=IN IP6 2001:db8::2
b=AS:64
k=prompt
a=ptime:20
"""
    )
    assert bytes(parse_sdp(full)) == full
    assert parse_sdp(full.replace(b"\r\n", b"\n")).media[0].port_count == 2


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"o=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm =audio 5000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nx=unknown\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 \xff\r\n",
    ],
)
def test_malformed_sdp(text: bytes) -> None:
    with pytest.raises(SdpParseError) as info:
        parse_sdp(text)
    assert isinstance(info.value, SipParseError) and info.value.reason


def test_answer_prefers_pcmu_and_mirrors_the_telephone_event_payload_type() -> None:
    result = answer(OFFER)
    media = result.media
    assert media.codec.name == "PCMU" and media.codec.payload_type == 0
    assert media.telephone_event_pt == 96
    assert (media.remote_address, media.remote_port) == ("198.51.100.1", 49170)
    assert media.ptime == 30 and media.direction is Direction.SENDRECV and not media.on_hold
    text = bytes(result.sdp).decode()
    assert "m=audio 20000 RTP/AVP 0 96\r\n" in text
    assert "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n" in text
    assert "m=video 0 RTP/AVP 31\r\n" in text  # refused stream kept in place with port 0
    assert "c=IN IP4 127.0.0.1\r\n" in text and "o=switchboard 7 1 IN IP4 127.0.0.1\r\n" in text
    assert len(parse_sdp(bytes(result.sdp)).media) == 2


def test_preference_order_is_configurable() -> None:
    assert answer(OFFER, codecs=(PCMA, PCMU)).media.codec == PCMA
    only_pcma = OFFER.replace(b"RTP/AVP 8 0 96", b"RTP/AVP 8 96")
    assert answer(only_pcma).media.codec == PCMA
    assert answer(OFFER, telephone_event=False).media.telephone_event_pt is None


def test_static_payload_types_without_rtpmap_and_dynamic_g711() -> None:
    bare = sdp(
        """v=0
o=- 1 1 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 4000 RTP/AVP 18 8
"""
    )
    assert answer(bare).media.codec == PCMA
    dynamic = bare.replace(b"RTP/AVP 18 8", b"RTP/AVP 112\r\na=rtpmap:112 pcmu/8000")
    assert answer(dynamic).media.codec.payload_type == 112


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ((b"RTP/AVP 8 0 96", b"RTP/AVP 18 96"), "no common codec"),
        ((b"m=audio 49170 RTP/AVP", b"m=audio 49170 RTP/SAVP"), "unsupported transport RTP/SAVP"),
        ((b"m=audio 49170", b"m=audio 0"), "no audio stream in the offer"),
        ((b"c=IN IP4 198.51.100.1\r\n", b""), "no connection address"),
    ],
)
def test_no_acceptable_stream_is_a_488_rejection(change: tuple[bytes, bytes], reason: str) -> None:
    result = answer_offer(
        parse_sdp(OFFER.replace(*change)),
        local_address="127.0.0.1",
        local_port=1,
        session_id=1,
        session_version=1,
    )
    assert isinstance(result, Rejection)
    assert result.status == 488 and result.reason == reason


@pytest.mark.parametrize(
    ("offer_change", "answered", "on_hold"),
    [
        ((b"a=sendrecv", b"a=sendonly"), Direction.RECVONLY, True),
        ((b"a=sendrecv", b"a=inactive"), Direction.INACTIVE, True),
        ((b"a=sendrecv", b"a=recvonly"), Direction.SENDONLY, False),
        ((b"c=IN IP4 198.51.100.1", b"c=IN IP4 0.0.0.0"), Direction.RECVONLY, True),
        ((b"a=sendrecv", b"a=sendrecv"), Direction.SENDRECV, False),
    ],
)
def test_hold_detection_and_answering_direction(
    offer_change: tuple[bytes, bytes], answered: Direction, on_hold: bool
) -> None:
    result = answer(OFFER.replace(*offer_change))
    assert result.media.direction is answered and result.media.on_hold is on_hold
    assert parse_sdp(bytes(result.sdp)).media[0].direction is answered


def test_session_level_direction_applies_to_media() -> None:
    held = OFFER.replace(b"a=sendrecv\r\n", b"").replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    assert answer(held).media.on_hold


def test_hold_and_resume_by_reinvite() -> None:
    first = answer(OFFER)
    held = answer(OFFER.replace(b"a=sendrecv", b"a=sendonly"), session_version=2)
    resumed = answer(OFFER, session_version=3)
    assert [r.media.on_hold for r in (first, held, resumed)] == [False, True, False]
    assert resumed.media.direction is Direction.SENDRECV
    assert parse_sdp(bytes(resumed.sdp)).origin.session_version == "3"
    # We put the caller on hold: our wish (sendonly) meets their sendrecv.
    ours = answer(OFFER, local_direction=Direction.SENDONLY)
    assert ours.media.direction is Direction.SENDONLY and not ours.media.on_hold


def test_our_offer_and_their_answer() -> None:
    offer = create_offer(local_address="127.0.0.1", local_port=30000, session_id=9, session_version=1)
    text = bytes(offer).decode()
    assert "m=audio 30000 RTP/AVP 0 8 101\r\n" in text and "a=fmtp:101 0-15\r\n" in text
    reply = answer(bytes(offer), codecs=(PCMA,))
    negotiated = accept_answer(offer, reply.sdp)
    assert not isinstance(negotiated, Rejection)
    assert negotiated.codec == PCMA and negotiated.telephone_event_pt == 101
    assert (negotiated.remote_address, negotiated.remote_port) == ("127.0.0.1", 20000)
    hold_offer = create_offer(
        local_address="127.0.0.1",
        local_port=30000,
        session_id=9,
        session_version=2,
        direction=Direction.SENDONLY,
    )
    held = accept_answer(hold_offer, answer(bytes(hold_offer)).sdp)
    assert not isinstance(held, Rejection) and held.direction is Direction.SENDONLY
    refused = answer_offer(
        parse_sdp(bytes(offer)),
        local_address="127.0.0.1",
        local_port=1,
        session_id=1,
        session_version=1,
        codecs=(),
    )
    assert isinstance(refused, Rejection)
    assert isinstance(accept_answer(offer, parse_sdp(OFFER)), Rejection)  # two streams for our one
