"""The SIP edge's configuration and one call's SIP-side state (shared by edge.py and outbound.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from services.media import sip
from services.media.prompts import APOLOGY
from services.media.rtp.session import RtpSession
from services.media.sip.session_timer import SessionTimer
from services.media.ua.call import Call
from services.media.ua.store import NumberRoute, Trunk
from services.media.ua.transport import Peer

__all__ = ["ALLOW", "EdgeConfig", "Leg"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"


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


@dataclass
class Leg:
    """One call's SIP side."""

    call: Call
    peer: Peer
    invite: sip.SipRequest | None = None
    invite_key: sip.TransactionKey | None = None
    to_tag: str = field(default_factory=sip.new_tag)
    dialog: sip.Dialog | None = None
    rtp: RtpSession | None = None
    route: NumberRoute | None = None
    ok: sip.InviteOkRetransmitter | None = None
    ok_key: sip.TransactionKey | None = None
    sdp_version: int = 1
    session_id: int = field(default_factory=lambda: random.getrandbits(31))
    outbound: bool = False
    pending_offer: sip.SessionDescription | None = None
    final_sent: bool = False
    reliable: bool = False
    answer_sdp: bytes = b""
    session_timer: SessionTimer | None = None  # RFC 4028, when the caller asked (sip/session_timer.py)
    late_offer: sip.SessionDescription | None = None  # our offer in the 200 OK, awaiting the ACK's answer
    # originate: the trunk, and what a retried INVITE (after a digest challenge) must repeat
    trunk: Trunk | None = None
    auth_attempted: bool = False
    out_number: str = ""
    out_from: str = ""
    out_call_id: str = ""
