"""RFC 4028 session timers, when the peer asks (sans-IO): a caller that sends `Session-Expires` (and supports
`timer`) is answered with it and `refresher=uac`, so the caller refreshes with re-INVITEs; a dialog not
refreshed in time is ended by us before it expires (a caller that vanished without a BYE). An interval
below our Min-SE is refused with 422. Peers that do not ask get no timer (RTP inactivity covers them).
Min-SE is 90 s (RFC 4028's floor); SB_SIP_MIN_SE lowers it for labs and tests that cannot wait a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import SipRequest

__all__ = ["MIN_SE", "SessionTimer", "TooSmall", "deadline", "requested", "response_headers"]

MIN_SE = 90  # seconds (RFC 4028 §4: the lowest a UA may accept)


@dataclass(frozen=True)
class SessionTimer:
    interval: int


@dataclass(frozen=True)
class TooSmall:
    """422 Session Interval Too Small, with our Min-SE."""

    min_se: int = MIN_SE


def _header(request: SipRequest, *names: str) -> str | None:
    for name in names:
        value = request.headers.get(name)
        if value is not None:
            return value
    return None


def requested(request: SipRequest, min_se: int = MIN_SE) -> SessionTimer | TooSmall | None:
    """The timer an INVITE asks for; None when it asks none (or cannot refresh: no `timer` support)."""
    value = _header(request, "Session-Expires", "x")
    if value is None:
        return None
    try:
        interval = int(value.split(";", 1)[0].strip())
    except ValueError:
        return None
    if interval < min_se:
        return TooSmall(min_se)
    supported = _header(request, "Supported", "k") or ""
    if "timer" not in {token.strip().lower() for token in supported.split(",")}:
        return None  # it could not refresh, and we do not send refreshes ourselves
    return SessionTimer(interval)


def response_headers(timer: SessionTimer) -> list[tuple[str, str]]:
    return [("Session-Expires", f"{timer.interval};refresher=uac"), ("Require", "timer")]


def deadline(refreshed_at: float, timer: SessionTimer) -> float:
    """When the side that does not refresh ends the session (RFC 4028 §10: before it expires)."""
    return refreshed_at + timer.interval - min(32.0, timer.interval / 3)
