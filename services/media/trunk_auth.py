"""Inbound trunk authentication, sans-IO: IP allowlist and/or digest (RFC 8760: SHA-256 and MD5).

A tenant without trunks accepts calls from anywhere; otherwise a call is accepted from an allowed source
address, or after a digest challenge answered with a trunk's username (HA1 stored per algorithm).
"""

from __future__ import annotations

from services.media import sip
from services.media.sip.auth import Credentials, build_challenges, verify_authorization
from services.media.store import Trunk

__all__ = ["check_trunk_auth"]


def check_trunk_auth(
    invite: sip.SipRequest,
    trunks: tuple[Trunk, ...],
    source_host: str,
    *,
    default_realm: str,
    secret: bytes,
    now: float,
) -> tuple[int, list[tuple[str, str]]] | None:
    """None when the INVITE may proceed, else (401 with challenges | 403, headers)."""
    if not trunks or any(t.allows(source_host) for t in trunks):
        return None
    digest = [t for t in trunks if t.username and t.realm]
    if not digest:
        return 403, []
    realm = digest[0].realm or default_realm
    value = invite.headers.get("Authorization")
    stale = False
    if value is not None:
        by_user = {
            t.username: Credentials(
                username=t.username or "",
                ha1=tuple((k, v) for k, v in (("SHA-256", t.ha1_sha256), ("MD5", t.ha1_md5)) if v),
            )
            for t in digest
            if t.realm == realm
        }
        result = verify_authorization(
            value,
            method=invite.method,
            realm=realm,
            secret=secret,
            now=now,
            credentials=lambda user: by_user.get(user),
            request_uri=invite.uri,
        )
        if result.ok:
            return None
        stale = result.stale
    return 401, [("WWW-Authenticate", c) for c in build_challenges(realm, secret, now, stale=stale)]
