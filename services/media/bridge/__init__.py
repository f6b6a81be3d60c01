"""The bridge's sans-IO cores: per-direction relay with header rewriting (relay.py), transcoding and
resampling (transcode.py), and the supervisor mix (mixer.py). See docs/webrtc.md."""

from __future__ import annotations

from services.media.bridge.mixer import Mixer, MonitorMode, Role, hears
from services.media.bridge.relay import CodecStats, DirectionState, RelayDirection, StreamRewriter
from services.media.bridge.transcode import Resampler, g711_to_pcm, pcm_to_g711

__all__ = [
    "CodecStats",
    "DirectionState",
    "Mixer",
    "MonitorMode",
    "RelayDirection",
    "Resampler",
    "Role",
    "StreamRewriter",
    "g711_to_pcm",
    "hears",
    "pcm_to_g711",
]
