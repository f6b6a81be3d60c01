# RFC 4733 telephone-event for aiortc 1.16.x, which has none: it neither negotiates telephone-event nor
# keeps packets of payload types it has no codec for. This version-pinned patch does three small things:
#   1. adds telephone-event/8000 (PT 126) and telephone-event/48000 (PT 110) to aiortc's audio codecs, so
#      they are offered and answered (always after a real codec, so the sender never picks them);
#   2. wraps RTCRtpReceiver._handle_rtp_packet: a packet whose payload type is a negotiated telephone-event
#      goes to the receiver's digit handler (one digit per key press, via services.media.rtp's
#      TelephoneEventReceiver) and never reaches aiortc's jitter buffer or decoder (which would fail on it);
#      it still counts in the stream's receive statistics, as browsers send it in the audio's sequence space;
#   3. `send_digit`: a small sender shim (tests, and digits towards a browser): RFC 4733 packets on the
#      sender's SSRC through its DTLS transport (SRTP-protected like any packet).
from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from services.media.rtp.telephone_event import TelephoneEventReceiver, digit_packets

from .config import UnsupportedVersionError

__all__ = [
    "SUPPORTED_AIORTC",
    "TELEPHONE_EVENT_8K",
    "TELEPHONE_EVENT_48K",
    "DigitHandler",
    "install",
    "is_telephone_event",
    "send_digit",
    "set_digit_handler",
]

SUPPORTED_AIORTC = ("1.16.",)
TELEPHONE_EVENT_8K = RTCRtpCodecParameters(
    mimeType="audio/telephone-event", clockRate=8000, channels=1, payloadType=126
)
TELEPHONE_EVENT_48K = RTCRtpCodecParameters(
    mimeType="audio/telephone-event", clockRate=48000, channels=1, payloadType=110
)

DigitHandler = Callable[[str], None]

# Each receiver's digit handler and event state live on the receiver itself (`_DIGITS`), not in a
# module-level map: the handler is bound to the leg that owns the receiver, so a WeakKeyDictionary entry
# kept its own key alive and every WebRTC leg of the worker stayed in memory for good.
_DIGITS = "_switchboard_digits"
_installed = False


def is_telephone_event(codec: Any) -> bool:
    return str(getattr(codec, "mimeType", "")).lower() == "audio/telephone-event"


def _check_aiortc() -> None:
    version = getattr(aiortc, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIORTC):
        raise UnsupportedVersionError(
            f"the telephone-event patch is checked against aiortc {', '.join(SUPPORTED_AIORTC)}x, this is "
            f"aiortc {version}: re-check RTCRtpReceiver._handle_rtp_packet and update SUPPORTED_AIORTC"
        )
    for name in ("_handle_rtp_packet",):
        if not hasattr(RTCRtpReceiver, name):
            raise UnsupportedVersionError(f"RTCRtpReceiver.{name} is missing: the patch cannot apply")


def install() -> None:
    """Idempotent. Raises UnsupportedVersionError on an aiortc it was not checked against."""
    global _installed
    if _installed:
        return
    _check_aiortc()
    audio = CODECS["audio"]
    for codec in (TELEPHONE_EVENT_8K, TELEPHONE_EVENT_48K):
        if not any(is_telephone_event(c) and c.clockRate == codec.clockRate for c in audio):
            audio.append(codec)
    original = RTCRtpReceiver._handle_rtp_packet

    async def _handle_rtp_packet(self: RTCRtpReceiver, packet: AiortcRtpPacket, arrival_time_ms: int) -> None:
        codecs: dict[int, RTCRtpCodecParameters] = getattr(self, "_RTCRtpReceiver__codecs", {})
        if is_telephone_event(codecs.get(packet.payload_type)):
            _on_event_packet(self, packet)
            return
        await original(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet  # type: ignore[method-assign]
    _installed = True


def _on_event_packet(receiver: RTCRtpReceiver, packet: AiortcRtpPacket) -> None:
    if not getattr(receiver, "_enabled", True):
        return
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", {})
    if packet.ssrc in streams:
        streams[packet.ssrc].add(packet)  # same sequence space as the audio: not a loss
    entry: tuple[DigitHandler, TelephoneEventReceiver] | None = getattr(receiver, _DIGITS, None)
    if entry is None:
        return
    handler, events = entry
    try:
        digits = events.on_packet(packet.timestamp, packet.payload)
    except ValueError:
        return  # a malformed event payload: dropped, like any undecodable packet
    for digit in digits:
        handler(digit.digit)


@dataclass(slots=True)
class _SendClock:
    sequence: int
    base: int
    epoch: float


_send_clocks: weakref.WeakKeyDictionary[RTCRtpSender, _SendClock] = weakref.WeakKeyDictionary()


def set_digit_handler(receiver: RTCRtpReceiver, handler: DigitHandler | None) -> None:
    setattr(receiver, _DIGITS, None if handler is None else (handler, TelephoneEventReceiver()))


async def send_digit(
    sender: RTCRtpSender,
    digit: str,
    *,
    payload_type: int,
    clock_rate: int = 8000,
    duration: float = 0.1,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Send one digit as RFC 4733 packets, paced by ptime, through the sender's DTLS transport. aiortc
    keeps the audio's sequence counter private, so the events go on an SSRC of their own (next to the
    sender's): sharing the audio SSRC with a second sequence space would read as loss at the receiver.
    The receiver routes them to its audio receiver by payload type."""
    transport = sender.transport
    ssrc = (sender._ssrc + 1) & 0xFFFFFFFF
    # One RTP clock per sender, so that each digit's timestamp is later than the last (receivers drop
    # events whose timestamp goes back as stragglers).
    clock = _send_clocks.get(sender)
    if clock is None:
        clock = _send_clocks[sender] = _SendClock(
            random.randint(0, 0x7FFF), random.randint(0, 0x7FFFFFFF), time.monotonic()
        )
    start = (clock.base + round((time.monotonic() - clock.epoch) * clock_rate)) & 0xFFFFFFFF
    sequence = clock.sequence
    elapsed = 0.0
    for event in digit_packets(digit, timestamp=start, duration=duration, clock_rate=clock_rate):
        if event.offset > elapsed:
            await sleep(event.offset - elapsed)
            elapsed = event.offset
        packet = AiortcRtpPacket(
            payload_type=payload_type,
            marker=int(event.marker),
            sequence_number=sequence,
            timestamp=event.timestamp,
            ssrc=ssrc,
            payload=event.payload,
        )
        sequence = clock.sequence = (sequence + 1) & 0xFFFF
        await transport._send_rtp(packet.serialize())
