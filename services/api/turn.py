"""TURN credentials for browsers behind NAT, in the coturn REST scheme (`use-auth-secret` with
`static-auth-secret`): username `<expiry unix time>:<subject>`, password base64(HMAC-SHA1(secret, username)).
The TURN server checks the HMAC and the expiry itself, so nothing is stored and nothing is revoked: the
credentials simply stop working after SB_TURN_TTL_S. Sans-IO: the time is passed in."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from services.kernel.config import Settings

__all__ = ["ice_servers", "turn_credentials"]


def turn_credentials(secret: str, subject: str, *, now: float, ttl: int = 600) -> tuple[str, str, int]:
    """(username, credential, expiry unix time) for `subject` (an agent id, a widget session id)."""
    if not secret:
        raise ValueError("no TURN secret configured")
    if not subject or ":" in subject:
        raise ValueError("the TURN subject must be non-empty and contain no ':'")
    expires = int(now) + ttl
    username = f"{expires}:{subject}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode(), expires


def ice_servers(settings: Settings, subject: str, now: float) -> list[dict[str, Any]]:
    """The RTCPeerConnection `iceServers` a browser should use: one entry with every configured TURN URL
    and fresh credentials, or [] when no TURN server is configured (loopback and LAN set-ups; no STUN
    server is ever offered by default)."""
    urls = list(settings.turn_url_list)
    if not urls or not settings.turn_secret:
        return []
    username, credential, _ = turn_credentials(
        settings.turn_secret, subject, now=now, ttl=settings.turn_ttl_s
    )
    return [{"urls": urls, "username": username, "credential": credential}]
