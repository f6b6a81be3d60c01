# WebRTC configuration for aiortc legs: ICE servers only from configuration (never aiortc's default
# Google STUN), and the ICE host addresses. aioice 0.13 leaves 127.0.0.1 out of its host candidates, so
# on a loopback-only host a peer connection gathers nothing and stays `new` forever; the small,
# version-pinned hook (switchboard.ice_hosts, shared with the SDK's AgentSession) makes the host addresses
# a configuration value (STACK-NOTES.md).
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer
from switchboard.ice_hosts import (
    SUPPORTED_AIOICE,
    UnsupportedVersionError,
    host_addresses_patched,
    set_host_addresses,
)

__all__ = [
    "SUPPORTED_AIOICE",
    "IceServer",
    "UnsupportedVersionError",
    "WebRtcConfig",
    "host_addresses_patched",
    "rtc_configuration",
    "set_host_addresses",
]


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server (RFC 7064/7065 URLs). TURN credentials are short-lived (coturn REST
    scheme: username `expiry:agent`, credential HMAC), issued by the API."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in self.urls:
            if url.split(":", 1)[0] not in {"stun", "stuns", "turn", "turns"}:
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    """ice_servers: empty for local runs (host candidates only). host_addresses: the addresses ICE
    offers as host candidates; None keeps aioice's own discovery (every interface but loopback)."""

    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] | None = ("127.0.0.1",)
    # Opus voice settings offered to the browser in our SDP (RFC 7587 fmtp).
    opus_max_average_bitrate: int = 32000
    ptime_ms: int = 20
    # Codec order on a leg whose other side is G.711: False prefers that law (no transcoding) and takes
    # Opus only from an offer without G.711; True prefers Opus (better audio, costs transcoding).
    prefer_opus: bool = False
    # Audio frames aiortc's receive jitter buffer holds before decoding (aiortc's own default is 4, 80 ms:
    # twice the worker's whole delay budget). 1 suits LANs and loopback; raise it for lossy home links.
    # On our own path (own_media) it is the receive jitter buffer's start, which adapts up to 2 frames more.
    jitter_frames: int = 1
    # True: aiortc does ICE and DTLS only, media runs on our RTP/SRTP path (srtp_media.py); False: aiortc's
    # RTCRtpSender/Receiver carry it (kept for comparison in the media-bridge benchmark).
    own_media: bool = False
    # libopus encoder complexity on our path (0-10; libopus's default is 10; SB_MEDIA_OPUS_COMPLEXITY).
    # 8 kHz input codes as narrowband SILK; per 20 ms frame here: 24 us at 0, 26 at 1, 42 at 2, 58 at 5,
    # 71 at 10. 1 is the cheapest with SILK's mid pitch estimator and order-14 noise shaping; 2 and up add
    # the delayed-decision quantiser, whose gain a G.711 source (already quantised, 300-3400 Hz) does not
    # show: SNR and log-spectral distance of a voice-like signal were the same from 0 to 10
    # (docs/media.md, "Opus at 8 kHz").
    opus_complexity: int = 1
    # ICE consent freshness (RFC 7675; ice.py): a check every interval (0.8-1.2x), the leg lost after this
    # many unanswered in a row. aioice's own values; process-wide (aioice has no per-connection setting).
    consent_interval_s: float = 5.0
    consent_failures: int = 6
    # One DTLS certificate for every leg of the process, replaced after this many seconds (certificate.py;
    # SB_MEDIA_DTLS_CERT_ROTATE_S); 0: a new key and certificate per leg (aiortc's own way).
    dtls_certificate_lifetime_s: float = 86400.0

    def __post_init__(self) -> None:
        if not 0 <= self.opus_complexity <= 10:
            raise ValueError(f"opus_complexity {self.opus_complexity} is outside 0-10")
        if self.consent_interval_s <= 0 or self.consent_failures < 1:
            raise ValueError("consent_interval_s must be above 0 and consent_failures at least 1")
        if not 0 <= self.dtls_certificate_lifetime_s <= 7 * 86400:
            raise ValueError("dtls_certificate_lifetime_s must be within 0-604800 s (7 days)")
        for address in self.host_addresses or ():
            ipaddress.ip_address(address)  # ValueError names the bad address


def rtc_configuration(config: WebRtcConfig) -> RTCConfiguration:
    """Always an explicit list: aiortc falls back to Google's public STUN server when iceServers is None."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in config.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)
