"""WebRTC legs on aiortc: configuration (ICE servers and host addresses), the pinned telephone-event
patch, the leg wrapper and its quality figures. See docs/webrtc.md."""

from __future__ import annotations

from services.media.webrtc.config import (
    IceServer,
    UnsupportedVersionError,
    WebRtcConfig,
    rtc_configuration,
    set_host_addresses,
)
from services.media.webrtc.leg import DigitSource, LegState, OutboundAudio, WebRtcError, WebRtcLeg
from services.media.webrtc.quality import LegQuality, quality_from_stats

__all__ = [
    "DigitSource",
    "IceServer",
    "LegQuality",
    "LegState",
    "OutboundAudio",
    "UnsupportedVersionError",
    "WebRtcConfig",
    "WebRtcError",
    "WebRtcLeg",
    "quality_from_stats",
    "rtc_configuration",
    "set_host_addresses",
]
