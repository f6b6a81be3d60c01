"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for G.711 calls with RFC 4733 telephone-events.

`parse_sdp` and `SessionDescription.__bytes__` round-trip a description whose lines are in RFC order.
`answer_offer` picks PCMU or PCMA (our preference order) and mirrors the offerer's telephone-event
payload type, answers every other stream with port 0, mirrors the direction (sendonly -> recvonly...),
and detects hold (sendonly/inactive or RFC 2543's c= with the unspecified address). When nothing can be accepted it returns
a `Rejection` for the adapter to answer 488.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.media.sip.errors import SipParseError

__all__ = [
    "PCMA",
    "PCMU",
    "Answer",
    "Codec",
    "Connection",
    "Direction",
    "Media",
    "NegotiatedMedia",
    "Origin",
    "Rejection",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
    "accept_answer",
    "answer_offer",
    "create_offer",
    "is_unspecified_address",
    "parse_sdp",
]

_IPV4_UNSPECIFIED = str(ipaddress.IPv4Address(0))


def is_unspecified_address(host: str) -> bool:
    """The unspecified IPv4 or IPv6 address: RFC 2543 hold in c=, or a peer that has no address yet."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpParseError(SipParseError):
    """Malformed SDP; the adapter answers 400 (or 488 when it prefers to call it unacceptable)."""


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The direction seen from the other side (their sendonly is our recvonly)."""
        return Direction.of(self.receives, self.sends)


@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int
    clock_rate: int = 8000


PCMU = Codec("PCMU", 0)
PCMA = Codec("PCMA", 8)
_STATIC = {0: PCMU, 8: PCMA}


@dataclass(frozen=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass
class Origin:
    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return " ".join(
            [self.username, self.session_id, self.session_version, self.nettype, self.addrtype, self.address]
        )


@dataclass
class Connection:
    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        return is_unspecified_address(self.host)

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class Media:
    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    title: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def connection(self) -> Connection | None:
        return self.connections[0] if self.connections else None

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def has_attribute(self, name: str) -> bool:
        return any(key == name for key, _ in self.attributes)

    @property
    def direction(self) -> Direction | None:
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return Direction(key)
        return None

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value and value.strip().isdigit() else None

    def rtpmaps(self) -> dict[int, RtpMap]:
        out: dict[int, RtpMap] = {}
        for key, value in self.attributes:
            if key != "rtpmap" or not value:
                continue
            pt_text, _, encoding = value.partition(" ")
            parts = encoding.strip().split("/")
            if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                continue
            channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            out[int(pt_text)] = RtpMap(int(pt_text), parts[0], int(parts[1]), channels)
        return out

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for key, value in self.attributes:
            if key == "fmtp" and value and value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    def _lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        if self.title is not None:
            lines.append(f"i={self.title}")
        lines += [f"c={c}" for c in self.connections]
        lines += [f"b={b}" for b in self.bandwidths]
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        return lines


@dataclass
class SessionDescription:
    origin: Origin
    name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    times: list[tuple[str, list[str]]] = field(default_factory=lambda: [("0 0", [])])
    zone: str | None = None
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    @property
    def direction(self) -> Direction | None:
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return Direction(key)
        return None

    def media_direction(self, media: Media) -> Direction:
        """A stream's direction: its own attribute, else the session's, else sendrecv (RFC 4566 §6)."""
        return media.direction or self.direction or Direction.SENDRECV

    def media_connection(self, media: Media) -> Connection | None:
        return media.connection or self.connection

    def __str__(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.name}"]
        for letter, value in (("i", self.info), ("u", self.uri)):
            if value is not None:
                lines.append(f"{letter}={value}")
        lines += [f"e={e}" for e in self.emails] + [f"p={p}" for p in self.phones]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        for timing, repeats in self.times:
            lines.append(f"t={timing}")
            lines += [f"r={r}" for r in repeats]
        if self.zone is not None:
            lines.append(f"z={self.zone}")
        if self.key is not None:
            lines.append(f"k={self.key}")
        lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        for m in self.media:
            lines += m._lines()
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError("malformed c= line")
    return Connection(*parts)


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 4:
        raise SdpParseError("malformed m= line")
    port_text, _, count_text = parts[1].partition("/")
    if not port_text.isdigit() or int(port_text) > 65535 or (count_text and not count_text.isdigit()):
        raise SdpParseError("invalid port in m= line")
    return Media(parts[0], int(port_text), parts[2], parts[3:], int(count_text) if count_text else None)


def _parse_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    if not name:
        raise SdpParseError("empty a= line")
    return name, rest if colon else None


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description. Line order is checked loosely (v first, o before m), values strictly
    enough to negotiate; unknown attributes are kept."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise SdpParseError("SDP is not valid UTF-8") from None
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    origin: Origin | None = None
    sd = SessionDescription(origin=Origin("-", "0", "0", "IN", "IP4", _IPV4_UNSPECIFIED), times=[])
    current: Media | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or line[0] not in _SESSION_ORDER + "m":
            raise SdpParseError(f"malformed SDP line {line[:20]!r}")
        letter, value = line[0], line[2:]
        if letter == "m":
            current = _parse_media(value)
            sd.media.append(current)
        elif current is not None:
            if letter not in _MEDIA_ORDER:
                raise SdpParseError(f"{letter}= is not allowed in a media section")
            if letter == "i":
                current.title = value
            elif letter == "c":
                current.connections.append(_parse_connection(value))
            elif letter == "b":
                current.bandwidths.append(value)
            elif letter == "k":
                current.key = value
            else:
                current.attributes.append(_parse_attribute(value))
        elif letter == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpParseError("malformed o= line")
            origin = Origin(*parts)
            sd.origin = origin
        elif letter == "s":
            sd.name = value
        elif letter == "i":
            sd.info = value
        elif letter == "u":
            sd.uri = value
        elif letter == "e":
            sd.emails.append(value)
        elif letter == "p":
            sd.phones.append(value)
        elif letter == "c":
            sd.connection = _parse_connection(value)
        elif letter == "b":
            sd.bandwidths.append(value)
        elif letter == "t":
            sd.times.append((value, []))
        elif letter == "r":
            if not sd.times:
                raise SdpParseError("r= without t=")
            sd.times[-1][1].append(value)
        elif letter == "z":
            sd.zone = value
        elif letter == "k":
            sd.key = value
        elif letter == "a":
            sd.attributes.append(_parse_attribute(value))
        else:
            raise SdpParseError(f"unexpected {letter}= line")
    if origin is None:
        raise SdpParseError("SDP has no o= line")
    if not sd.times:
        sd.times = [("0 0", [])]
    return sd


# --- offer/answer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NegotiatedMedia:
    """What both sides agreed for the audio stream, from our point of view."""

    codec: Codec  # with the payload type on the wire
    telephone_event_pt: int | None
    remote_address: str
    remote_port: int
    direction: Direction  # what we do: sendrecv, sendonly (we hold them), recvonly, inactive
    remote_direction: Direction
    ptime: int
    on_hold: bool  # the remote side has put us on hold (sendonly/inactive/unspecified c= address)
    media_index: int = 0


@dataclass(frozen=True)
class Answer:
    sdp: SessionDescription
    media: NegotiatedMedia


@dataclass(frozen=True)
class Rejection:
    """No acceptable stream: answer with `status` (488) and a Warning with `warning_code` (RFC 3261 §20.43)."""

    reason: str
    status: int = 488
    warning_code: int = 304


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _find_codec(media: Media, codec: Codec) -> int | None:
    """The payload type the offer uses for `codec` (static number, or a dynamic one named by rtpmap)."""
    maps = media.rtpmaps()
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        rtpmap = maps.get(pt)
        if rtpmap is not None:
            if rtpmap.encoding.upper() == codec.name.upper() and rtpmap.clock_rate == codec.clock_rate:
                return pt
        elif _STATIC.get(pt) == codec:
            return pt
    return None


def _find_telephone_event(media: Media) -> int | None:
    maps = media.rtpmaps()
    for fmt in media.formats:
        if fmt.isdigit():
            rtpmap = maps.get(int(fmt))
            if rtpmap and rtpmap.encoding.lower() == "telephone-event" and rtpmap.clock_rate == 8000:
                return int(fmt)
    return None


def _remote_direction(offer: SessionDescription, media: Media) -> tuple[Direction, bool]:
    """The offerer's effective direction and whether it is holding us."""
    direction = offer.media_direction(media)
    conn = offer.media_connection(media)
    if conn is not None and conn.is_hold_address:
        # RFC 3264 §8.4 (RFC 2543 style hold): they will not receive, whatever the attribute says.
        direction = Direction.of(direction.sends, False)
    return direction, direction in (Direction.SENDONLY, Direction.INACTIVE)


def _audio_lines(codec: Codec, te_pt: int | None, te_fmtp: str | None, ptime: int | None) -> Media:
    formats = [str(codec.payload_type)]
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}")
    ]
    if te_pt is not None:
        formats.append(str(te_pt))
        attributes.append(("rtpmap", f"{te_pt} telephone-event/8000"))
        attributes.append(("fmtp", f"{te_pt} {te_fmtp or '0-15'}"))
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    return Media("audio", 0, "RTP/AVP", formats, attributes=attributes)


def answer_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event: bool = True,
    local_direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
    username: str = "switchboard",
) -> Answer | Rejection:
    """Our answer to `offer` (RFC 3264 §6): the first RTP/AVP audio stream with a codec in common gets
    the first of `codecs` the offer has, with the offer's payload type numbers; every other stream is
    refused with port 0. `local_direction` is what we want (sendonly while we hold the caller)."""
    chosen: tuple[int, Codec, int | None, str | None] | None = None
    refusal = "no audio stream in the offer"
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0:
            continue
        if media.proto.upper() != "RTP/AVP":
            refusal = f"unsupported transport {media.proto}"
            continue
        found = next(((c, pt) for c in codecs if (pt := _find_codec(media, c)) is not None), None)
        if found is None:
            refusal = "no common codec"
            continue
        if offer.media_connection(media) is None:
            refusal = "no connection address"
            continue
        codec, pt = found
        te_pt = _find_telephone_event(media) if telephone_event else None
        chosen = (index, Codec(codec.name, pt, codec.clock_rate), te_pt, media.fmtp(te_pt) if te_pt else None)
        break
    if chosen is None:
        return Rejection(refusal, warning_code=305 if refusal == "no audio stream in the offer" else 304)
    index, codec, te_pt, te_fmtp = chosen
    offered = offer.media[index]
    remote_direction, on_hold = _remote_direction(offer, offered)
    ours = Direction.of(
        local_direction.sends and remote_direction.receives,
        local_direction.receives and remote_direction.sends,
    )
    use_ptime = offered.ptime or ptime
    answer = SessionDescription(
        origin=Origin(
            username, str(session_id), str(session_version), "IN", _addrtype(local_address), local_address
        ),
        connection=Connection("IN", _addrtype(local_address), local_address),
    )
    for i, media in enumerate(offer.media):
        if i == index:
            m = _audio_lines(codec, te_pt, te_fmtp, use_ptime)
            m.port = local_port
            m.attributes.append((ours.value, None))
        else:
            m = Media(media.media, 0, media.proto, media.formats[:1])
        answer.media.append(m)
    conn = offer.media_connection(offered)
    assert conn is not None  # checked above
    negotiated = NegotiatedMedia(
        codec=codec,
        telephone_event_pt=te_pt,
        remote_address=conn.host,
        remote_port=offered.port,
        direction=ours,
        remote_direction=remote_direction,
        ptime=use_ptime,
        on_hold=on_hold,
        media_index=index,
    )
    return Answer(answer, negotiated)


def create_offer(
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event_pt: int | None = 101,
    direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
    username: str = "switchboard",
) -> SessionDescription:
    """An audio offer (originate, re-INVITE for hold/resume, or the offer in a 2xx to an INVITE without SDP)."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    media = Media("audio", local_port, "RTP/AVP", [str(c.payload_type) for c in codecs])
    media.attributes += [("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}") for c in codecs]
    if telephone_event_pt is not None:
        media.formats.append(str(telephone_event_pt))
        media.attributes.append(("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        media.attributes.append(("fmtp", f"{telephone_event_pt} 0-15"))
    media.attributes += [("ptime", str(ptime)), (direction.value, None)]
    return SessionDescription(
        origin=Origin(
            username, str(session_id), str(session_version), "IN", _addrtype(local_address), local_address
        ),
        connection=Connection("IN", _addrtype(local_address), local_address),
        media=[media],
    )


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia | Rejection:
    """Read the answer to our `offer` (RFC 3264 §7): the codec is the first format of the first accepted
    audio stream that we offered."""
    if len(answer.media) != len(offer.media):
        return Rejection("the answer does not have one stream per offered stream", status=400)
    for index, (ours, media) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != "audio" or media.port == 0:
            continue
        offered = [
            Codec(c.name, c.payload_type, c.clock_rate)
            for pt, c in _STATIC.items()
            if str(pt) in ours.formats
        ]
        offered += [
            Codec(m.encoding.upper(), m.payload_type, m.clock_rate)
            for m in ours.rtpmaps().values()
            if m.encoding.upper() in ("PCMU", "PCMA") and str(m.payload_type) in ours.formats
        ]
        codec = next((c for fmt in media.formats for c in offered if str(c.payload_type) == fmt), None)
        conn = answer.media_connection(media)
        if codec is None or conn is None:
            continue
        remote_direction, on_hold = _remote_direction(answer, media)
        local = offer.media_direction(ours)
        ours_now = Direction.of(
            local.sends and remote_direction.receives, local.receives and remote_direction.sends
        )
        return NegotiatedMedia(
            codec=codec,
            telephone_event_pt=_find_telephone_event(media),
            remote_address=conn.host,
            remote_port=media.port,
            direction=ours_now,
            remote_direction=remote_direction,
            ptime=media.ptime or ours.ptime or 20,
            on_hold=on_hold,
            media_index=index,
        )
    return Rejection("the answer accepted no audio stream we offered")
