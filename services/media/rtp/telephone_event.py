# RFC 4733 telephone-events (DTMF over RTP): the 4-octet payload, a receiver that turns the stream of
# updates, retransmitted end packets and long-event segments into one digit per key press, and a
# sender that lays out the packets for one digit. Sans-IO: no sockets, no clock; the sender returns
# send offsets and the RTP adapter stamps sequence numbers (shared with the audio stream) and sends.
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from services.media.rtp.packet import ts_diff

__all__ = [
    "DIGITS",
    "EventPacket",
    "ReceivedDigit",
    "TelephoneEvent",
    "TelephoneEventError",
    "TelephoneEventReceiver",
    "digit_code",
    "digit_packets",
]

# Event codes 0..15 (RFC 4733 3.2): the index in this string is the code.
DIGITS = "0123456789*#ABCD"
FLASH = 16
MAX_DURATION = 0xFFFF

_PAYLOAD = struct.Struct("!BBH")


class TelephoneEventError(ValueError):
    """A payload or a request that RFC 4733 cannot express; the message says why."""


def digit_code(digit: str) -> int:
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise TelephoneEventError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")
    return code


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One event payload (RFC 4733 2.3): event code, end bit, volume (0..63, -dBm0) and duration
    in timestamp units since the event's start (the packet's RTP timestamp)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise TelephoneEventError(f"event code {self.event} is not in 0..255")
        if not 0 <= self.volume <= 63:
            raise TelephoneEventError(f"volume {self.volume} is not in 0..63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise TelephoneEventError(f"duration {self.duration} is not a 16-bit value")

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        # One event per packet; older events carried with RFC 2198 redundancy arrive in their own
        # block, so anything after the first 4 octets is not ours to read.
        if len(payload) < 4:
            raise TelephoneEventError(f"telephone-event payload is {len(payload)} octets, needs 4")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class ReceivedDigit:
    digit: str
    timestamp: int  # RTP timestamp of the event's start
    volume: int


@dataclass(slots=True)
class _Current:
    timestamp: int
    event: int
    duration: int
    ended: bool


class TelephoneEventReceiver:
    """Collapses one key press into one digit, reported on the first packet seen of the event.

    An event is identified by its RTP timestamp (RFC 4733 2.5.2.1): updates and the three end packets
    share it, so they report nothing new; packets of older events arriving late are ignored. A long
    press split into segments (2.5.1.3: a new timestamp, no end bit before it, same code) continues
    the same digit. Reporting at the start rather than at the end keeps barge-in fast and survives
    the loss of every end packet.
    """

    def __init__(self, *, continuation_slack: int = 800) -> None:
        # How far after the previous segment's reported duration a new segment may start and still
        # be the same press (100 ms at 8 kHz covers lost updates).
        self._slack = continuation_slack
        self._current: _Current | None = None
        self._seen: deque[int] = deque(maxlen=16)

    def on_packet(self, timestamp: int, payload: bytes) -> list[ReceivedDigit]:
        event = TelephoneEvent.parse(payload)
        current = self._current
        if current is not None:
            delta = ts_diff(timestamp, current.timestamp)
            if delta == 0 and event.event == current.event:
                current.duration = max(current.duration, event.duration)
                current.ended = current.ended or event.end
                return []
            if delta < 0 or timestamp in self._seen:
                return []  # a straggler from an event already reported
            if event.event == current.event and not current.ended and delta <= current.duration + self._slack:
                self._seen.append(timestamp)
                current.timestamp = timestamp
                current.duration = event.duration
                current.ended = event.end
                return []
        self._seen.append(timestamp)
        self._current = _Current(timestamp, event.event, event.duration, event.end)
        digit = event.digit
        if digit is None:
            return []  # flash and tones other than DTMF: not digits
        return [ReceivedDigit(digit, timestamp, event.volume)]


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One packet to send: at `offset` seconds after the digit starts, with this marker and payload.
    All packets of a digit carry the same RTP timestamp (the digit's start)."""

    offset: float
    marker: bool
    timestamp: int
    payload: bytes
    end: bool


def digit_packets(
    digit: str,
    *,
    timestamp: int,
    duration: float = 0.1,
    ptime: float = 0.02,
    clock_rate: int = 8000,
    volume: int = 10,
) -> list[EventPacket]:
    """The packets for one digit (RFC 4733 2.5.1): an update every `ptime` with the duration so far,
    the first with the marker bit; the last update carries the end bit and is sent three times in
    all, one `ptime` apart (2.5.1.4). Durations past 65535 units would need segments: refused."""
    code = digit_code(digit)
    if duration <= 0 or ptime <= 0:
        raise TelephoneEventError("duration and ptime must be positive")
    total = round(duration * clock_rate)
    step = round(ptime * clock_rate)
    if total > MAX_DURATION:
        raise TelephoneEventError(f"a {duration:.3f} s event exceeds one 65535-unit segment")
    updates = max(1, -(-total // step))
    packets = []
    for index in range(updates + 2):
        end = index >= updates - 1
        elapsed = total if end else (index + 1) * step
        payload = bytes(TelephoneEvent(code, end, volume, elapsed))
        packets.append(EventPacket(index * ptime, index == 0, timestamp & 0xFFFFFFFF, payload, end))
    return packets
