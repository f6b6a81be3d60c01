"""What the UA does with a request before any dialog or call is looked at, sans-IO: the method and
extension checks of RFC 3261 §8.2, OPTIONS, and the digit an INFO carries.

`screen(request)` answers a request the UA does not serve (416, 420, 405, 501, OPTIONS 200) or names where
it goes: ACK and CANCEL to their transactions, INVITE, BYE and INFO to the dialog layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.media import sip

__all__ = ["ALLOW", "DTMF_INFO_TYPES", "Answer", "Goes", "info_digit", "screen"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
KNOWN_UNSUPPORTED = {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "UPDATE", "PRACK", "PUBLISH"}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
DTMF_INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
_OPTIONS = (("Allow", ALLOW), ("Accept", "application/sdp"), ("Accept-Language", "en"), ("Supported", ""))
_DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True)
class Answer:
    """Answer the request at once with this status (it goes no further)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()


class Goes(enum.Enum):
    ACK = "ack"
    CANCEL = "cancel"
    DIALOG = "dialog"  # INVITE (new or re-INVITE), BYE, INFO


def screen(request: sip.SipRequest) -> Answer | Goes:
    method = request.method
    if method == "ACK":
        return Goes.ACK
    # Max-Forwards is not checked: the platform never forwards a request (it is the endpoint, a
    # B2BUA, for every URI it serves), and 483 is a proxy's answer (RFC 3261 §16.3).
    scheme = request.uri.split(":", 1)[0].lower()
    if scheme not in ("sip", "sips", "tel"):
        return Answer(416)
    required = [r.lower() for r in request.headers.get_list("Require")]
    unsupported = [r for r in required if r not in SUPPORTED_EXTENSIONS]
    if unsupported and method != "CANCEL":
        return Answer(420, (("Unsupported", ", ".join(unsupported)),))
    if method == "OPTIONS":
        return Answer(200, _OPTIONS)
    if method == "CANCEL":
        return Goes.CANCEL
    if method not in ("INVITE", "BYE", "INFO"):
        return Answer(405 if method in KNOWN_UNSUPPORTED else 501, (("Allow", ALLOW),))
    return Goes.DIALOG


def info_digit(ctype: str | None, body: bytes) -> str | None:
    """The key an INFO reports (application/dtmf-relay `Signal=`, or application/dtmf), or None."""
    text = body.decode("utf-8", errors="replace")
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value.upper() if len(value) == 1 and value.upper() in _DIGITS else None
        return None
    value = text.strip()
    if value == "10":
        return "*"
    if value == "11":
        return "#"
    return value.upper() if len(value) == 1 and value.upper() in _DIGITS else None
