"""The RTP media path's sans-IO cores: packets, RTCP, statistics, jitter buffer, RFC 4733, G.711, MOS."""

from __future__ import annotations

from services.media.rtp.g711 import G711, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from services.media.rtp.jitter_buffer import Frame, FrameKind, JitterBuffer, PushResult
from services.media.rtp.mos import Quality, estimate
from services.media.rtp.packet import RtpError, RtpExtension, RtpPacket, is_rtcp
from services.media.rtp.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from services.media.rtp.stats import ReceiverStats, SenderStats
from services.media.rtp.telephone_event import (
    TelephoneEvent,
    TelephoneEventReceiver,
    digit_packets,
)

__all__ = [
    "G711",
    "Frame",
    "FrameKind",
    "Goodbye",
    "JitterBuffer",
    "PushResult",
    "Quality",
    "ReceiverReport",
    "ReceiverStats",
    "ReportBlock",
    "RtcpError",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "SenderReport",
    "SenderStats",
    "SourceDescription",
    "TelephoneEvent",
    "TelephoneEventReceiver",
    "alaw_decode",
    "alaw_encode",
    "digit_packets",
    "estimate",
    "is_rtcp",
    "parse_compound",
    "serialize_compound",
    "ulaw_decode",
    "ulaw_encode",
]
