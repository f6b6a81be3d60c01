"""The SIP edge's configuration and one call's SIP-side state (shared by edge.py and outbound.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.media import sip
from services.media.prompts import APOLOGY
from services.media.rtp.session import RtpSession
from services.media.ua.call import Call
from services.media.ua.dialog_core import DialogCore, LegTimer
from services.media.ua.requests import ALLOW
from services.media.ua.store import NumberRoute
from services.media.ua.transport import Peer

__all__ = ["ALLOW", "EdgeConfig", "Leg"]


@dataclass
class EdgeConfig:
    host: str = "127.0.0.1"  # the address announced in SDP, Via and Contact (never 0.0.0.0)
    bind: str = ""  # the address the SIP and RTP sockets bind (empty: host); 0.0.0.0 in a pod
    port: int = 5060
    rtp_low: int = 20000
    rtp_high: int = 30000
    max_calls: int = 1000  # per process: beyond it, 503
    max_setup: int = 200  # INVITEs being set up at once: beyond it, 503 (a burst we cannot absorb)
    max_lag: float = 0.25  # event-loop lag (s) beyond which new INVITEs get 503 (0: off)
    max_cpu: float = 0.95  # CPU seconds per second beyond which new INVITEs get 503 (0: off)
    rate: float = 50.0  # requests per second per source address
    burst: float = 100.0
    ban_after: int = 50
    ban_seconds: float = 60.0
    realm: str = "switchboard"
    auth_secret: bytes = b""
    no_answer_timeout: float = 30.0
    media_timeout: float = 30.0  # no RTP/RTCP this long while not on hold ends the call (0: off)
    min_se: int = 90  # RFC 4028 Min-SE: a shorter Session-Expires gets 422 (SB_SIP_MIN_SE)
    # Played to a caller of a number with no flow and no queue before hanging up (SB_UNROUTED_MESSAGE).
    unrouted_message: str = APOLOGY
    timers: sip.TimerConfig = field(default_factory=sip.TimerConfig)


@dataclass(eq=False)
class Leg:
    """One call's SIP side: the call, its peer, its dialog's core (the decisions) and what the edge holds
    for it (RTP sockets, timer handles)."""

    call: Call
    peer: Peer
    core: DialogCore
    rtp: RtpSession | None = None
    route: NumberRoute | None = None
    timers: dict[LegTimer, asyncio.TimerHandle] = field(default_factory=dict)

    @property
    def outbound(self) -> bool:
        return self.core.outbound

    @property
    def dialog(self) -> sip.Dialog | None:
        return self.core.dialog
