# RTCP (RFC 3550 section 6): sender and receiver reports, a minimal SDES, BYE, and the arithmetic
# around them (NTP timestamps, LSR/DLSR round-trip time, the A.7 report interval). Packets we do not
# interpret (APP, feedback) are kept as `RtcpUnknown` so that a compound packet re-serializes exactly.
from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NTP_UNIX_OFFSET",
    "Goodbye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "RtcpType",
    "RtcpUnknown",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "blocks_for",
    "dlsr_from_seconds",
    "ntp_middle",
    "ntp_timestamp",
    "parse_compound",
    "report_interval",
    "round_trip_time",
    "serialize_compound",
]

# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800

_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")
_SENDER_INFO = struct.Struct("!IQIII")


class RtcpError(ValueError):
    """A datagram that is not a valid RTCP (compound) packet; the message says why."""


class RtcpType(enum.IntEnum):
    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


class SdesItem(enum.IntEnum):
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


def _check_padding(padding: bytes) -> None:
    if padding and (padding[-1] != len(padding) or len(padding) % 4):
        raise RtcpError(f"RTCP padding of {len(padding)} octets is invalid (count octet {padding[-1]})")


def _frame(packet_type: int, count: int, body: bytes, padding: bytes) -> bytes:
    if count > 31:
        raise RtcpError(f"{count} items do not fit the 5-bit RTCP count")
    total = len(body) + len(padding)
    if total % 4:
        raise RtcpError(f"RTCP body of {total} octets is not a multiple of 4")
    first = 0x80 | (0x20 if padding else 0) | count
    return _HEADER.pack(first, packet_type, total // 4) + body + padding


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1) about the source `ssrc`.

    fraction_lost: lost/expected since the previous report, as a fixed-point number /256.
    cumulative_lost: expected - received since the start; signed 24 bits (duplicates can make it < 0).
    highest_seq: extended highest sequence number received (cycles << 16 | max_seq).
    jitter: interarrival jitter in timestamp units. lsr: middle 32 bits of the NTP time of the last
    SR from that source (0 if none); dlsr: delay since that SR in 1/65536 s units.
    """

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_seq: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpError(f"fraction lost {self.fraction_lost} is not in 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise RtcpError(f"cumulative lost {self.cumulative_lost} does not fit 24 signed bits")
        for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFFFFFF:
                raise RtcpError(f"{name} {value} is not a 32-bit value")

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        return cls(ssrc, fraction, int.from_bytes(lost, "big", signed=True), highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = self.cumulative_lost.to_bytes(3, "big", signed=True)
        return _BLOCK.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_seq, self.jitter, self.lsr, self.dlsr
        )

    @property
    def fraction_lost_ratio(self) -> float:
        return self.fraction_lost / 256.0


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock.parse(body, offset + 24 * i) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (RFC 3550 6.4.1). `extension` is the profile-specific tail after the report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: bytes = b""

    def __post_init__(self) -> None:
        _check_padding(self.padding)
        if not 0 <= self.ntp_timestamp < 1 << 64:
            raise RtcpError(f"NTP timestamp {self.ntp_timestamp} is not a 64-bit value")

    @classmethod
    def _parse(cls, count: int, body: bytes, padding: bytes) -> SenderReport:
        need = 24 + 24 * count
        if len(body) < need:
            raise RtcpError(f"SR with {count} report blocks needs {need} octets, has {len(body)}")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        return cls(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, 24, count), body[need:], padding)

    def __bytes__(self) -> bytes:
        body = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _frame(RtcpType.SR, len(self.reports), body, self.padding)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (RFC 3550 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: bytes = b""

    def __post_init__(self) -> None:
        _check_padding(self.padding)

    @classmethod
    def _parse(cls, count: int, body: bytes, padding: bytes) -> ReceiverReport:
        need = 4 + 24 * count
        if len(body) < need:
            raise RtcpError(f"RR with {count} report blocks needs {need} octets, has {len(body)}")
        (ssrc,) = struct.unpack_from("!I", body)
        return cls(ssrc, _parse_blocks(body, 4, count), body[need:], padding)

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(block) for block in self.reports)
        return _frame(RtcpType.RR, len(self.reports), body + self.extension, self.padding)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def get(self, item: SdesItem) -> bytes | None:
        for kind, value in self.items:
            if kind == item:
                return value
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (RFC 3550 6.5); we send CNAME only, and read whatever items arrive."""

    chunks: tuple[SdesChunk, ...] = ()
    padding: bytes = b""

    def __post_init__(self) -> None:
        _check_padding(self.padding)

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((SdesItem.CNAME, cname.encode()),)),))

    @classmethod
    def _parse(cls, count: int, body: bytes, padding: bytes) -> SourceDescription:
        pos = 0
        chunks = []
        for _ in range(count):
            if len(body) < pos + 4:
                raise RtcpError("SDES chunk is truncated before its SSRC")
            (ssrc,) = struct.unpack_from("!I", body, pos)
            pos += 4
            items = []
            while True:
                if pos >= len(body):
                    raise RtcpError("SDES chunk has no terminating null octet")
                kind = body[pos]
                if kind == 0:
                    # The null octet(s) end the chunk and pad it to the next 32-bit boundary.
                    pos = (pos + 4) & ~3
                    break
                if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                    raise RtcpError(f"SDES item {kind} is truncated")
                length = body[pos + 1]
                items.append((kind, bytes(body[pos + 2 : pos + 2 + length])))
                pos += 2 + length
            chunks.append(SdesChunk(ssrc, tuple(items)))
        return cls(tuple(chunks), padding)

    def __bytes__(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += struct.pack("!I", chunk.ssrc)
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise RtcpError(f"SDES item {kind} of {len(value)} octets cannot be encoded")
                body += bytes((kind, len(value))) + value
            body += bytes(4 - len(body) % 4)  # 1..4 null octets: end of list plus alignment
        return _frame(RtcpType.SDES, len(self.chunks), bytes(body), self.padding)


@dataclass(frozen=True, slots=True)
class Goodbye:
    """BYE (RFC 3550 6.6). The reason is UTF-8; undecodable octets survive a round trip."""

    sources: tuple[int, ...] = ()
    reason: str | None = None
    padding: bytes = b""

    def __post_init__(self) -> None:
        _check_padding(self.padding)

    @classmethod
    def _parse(cls, count: int, body: bytes, padding: bytes) -> Goodbye:
        if len(body) < 4 * count:
            raise RtcpError(f"BYE announces {count} sources but carries {len(body) // 4}")
        sources = struct.unpack_from(f"!{count}I", body) if count else ()
        reason = None
        pos = 4 * count
        if pos < len(body):
            length = body[pos]
            if pos + 1 + length > len(body):
                raise RtcpError("BYE reason is truncated")
            reason = body[pos + 1 : pos + 1 + length].decode("utf-8", "surrogateescape")
        return cls(tuple(sources), reason, padding)

    def __bytes__(self) -> bytes:
        body = b"".join(struct.pack("!I", ssrc) for ssrc in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8", "surrogateescape")
            if len(text) > 255:
                raise RtcpError("BYE reason is longer than 255 octets")
            body += bytes((len(text),)) + text
            body += bytes(-len(body) % 4)
        return _frame(RtcpType.BYE, len(self.sources), body, self.padding)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, RTPFB, PSFB, XR...), kept verbatim."""

    packet_type: int
    count: int
    body: bytes
    padding: bytes = b""

    def __bytes__(self) -> bytes:
        return _frame(self.packet_type, self.count, self.body, self.padding)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpUnknown

_PARSERS: dict[int, Callable[[int, bytes, bytes], RtcpPacket]] = {
    RtcpType.SR: SenderReport._parse,
    RtcpType.RR: ReceiverReport._parse,
    RtcpType.SDES: SourceDescription._parse,
    RtcpType.BYE: Goodbye._parse,
}


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split and parse a compound RTCP packet. Any malformed part rejects the whole datagram."""
    if len(data) < 4:
        raise RtcpError(f"RTCP packet is {len(data)} octets, shorter than its 4-octet header")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) < pos + 4:
            raise RtcpError(f"{len(data) - pos} trailing octets after the last RTCP packet")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version is {first >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtcpError(f"RTCP packet type {packet_type} announces {4 * words} octets, truncated")
        body = bytes(data[pos + 4 : end])
        padding = b""
        if first & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError("RTCP padding count is invalid")
            padding = body[-body[-1] :]
            body = body[: -body[-1]]
        count = first & 0x1F
        parser = _PARSERS.get(packet_type)
        if parser is None:
            packets.append(RtcpUnknown(packet_type, count, body, padding))
        else:
            packets.append(parser(count, body, padding))
        pos = end
    return packets


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    return b"".join(bytes(packet) for packet in packets)


def ntp_timestamp(unix_seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix wall-clock time."""
    seconds = unix_seconds + NTP_UNIX_OFFSET
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32))
    return ((whole & 0xFFFFFFFF) << 32) | (fraction & 0xFFFFFFFF)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (16.16 seconds): the LSR field's format."""
    return (ntp >> 16) & 0xFFFFFFFF


def dlsr_from_seconds(seconds: float) -> int:
    """DLSR field (1/65536 s units) for the delay since the last SR was received."""
    return max(0, min(0xFFFFFFFF, round(seconds * 65536)))


def round_trip_time(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds seen by the sender of the SR that `block` refers to (RFC 3550
    6.4.1): RTT = A - LSR - DLSR, with A the middle 32 bits of the NTP time the report arrived.
    None when the peer has not yet received an SR (LSR = 0) or the figures are inconsistent."""
    if block.lsr == 0:
        return None
    rtt = (ntp_middle(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt >= 0x80000000:  # negative: a wrong DLSR or a clock step on our side
        return None
    return rtt / 65536.0


def report_interval(
    *,
    members: int,
    senders: int,
    rtcp_bandwidth: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    randomness: float,
) -> float:
    """Seconds until the next report (RFC 3550 A.7). `rtcp_bandwidth` is in octets per second (5 % of
    the session bandwidth), `randomness` a uniform draw in [0, 1) passed in to keep this pure. For a
    two-party G.711 call the 5 s minimum dominates: intervals fall in [2.05, 6.15] s."""
    min_time = 2.5 if initial else 5.0
    n = members
    if senders <= members * 0.25:
        if we_sent:
            rtcp_bandwidth *= 0.25
            n = senders
        else:
            rtcp_bandwidth *= 0.75
            n = members - senders
    interval = avg_rtcp_size * max(n, 1) / rtcp_bandwidth if rtcp_bandwidth > 0 else min_time
    interval = max(interval, min_time)
    # The randomisation factor avoids synchronised reports; dividing by e - 3/2 compensates for the
    # timer reconsideration algorithm converging below the intended average.
    return interval * (randomness + 0.5) / 1.21828


def blocks_for(reports: Sequence[ReportBlock], ssrc: int) -> list[ReportBlock]:
    """The report blocks among `reports` that describe the source `ssrc` (ours, usually)."""
    return [block for block in reports if block.ssrc == ssrc]
