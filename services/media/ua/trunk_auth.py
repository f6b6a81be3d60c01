"""Inbound trunk authentication, sans-IO: IP allowlist and/or digest (RFC 8760: SHA-256 and MD5).

A tenant without trunks accepts calls from anywhere; otherwise a call is accepted from an allowed source
address, or after a digest challenge answered with a trunk's username (HA1 stored per algorithm).
Outbound (originate), `answer_challenge` answers a trunk's 401/407 with the same stored HA1: digest
needs H(user:realm:password), never the password itself, as long as the realm is the trunk's.
"""

from __future__ import annotations

import hashlib
import re

from services.media import sip
from services.media.sip.auth import Credentials, build_challenges, verify_authorization
from services.media.ua.store import Trunk

__all__ = ["answer_challenge", "check_trunk_auth", "parse_challenge"]


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


# --- outbound: answering a trunk's challenge ------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*,?')


def parse_challenge(value: str) -> dict[str, str] | None:
    """The parameters of a `Digest ...` WWW-/Proxy-Authenticate value (names lower-cased), or None."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            return None
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
        position = match.end()
    return params if "nonce" in params and "realm" in params else None


def answer_challenge(
    challenges: list[str], trunk: Trunk, *, method: str, uri: str, cnonce: str
) -> str | None:
    """An Authorization value for the first challenge we can answer with the trunk's stored HA1
    (SHA-256 preferred, then MD5; the realm must be the trunk's), or None."""
    if not trunk.username or not trunk.realm:
        return None
    parsed = [p for p in (parse_challenge(c) for c in challenges) if p is not None]
    order = {"SHA-256": 0, "MD5": 1}
    parsed.sort(key=lambda p: order.get(p.get("algorithm", "MD5").upper(), 9))
    for params in parsed:
        algorithm = params.get("algorithm", "MD5").upper()
        ha1 = {"SHA-256": trunk.ha1_sha256, "MD5": trunk.ha1_md5}.get(algorithm)
        if ha1 is None or params["realm"] != trunk.realm:
            continue
        h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
        ha2 = h(f"{method}:{uri}".encode()).hexdigest()
        nonce = params["nonce"]
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        fields = [
            f'username="{trunk.username}"',
            f'realm="{trunk.realm}"',
            f'nonce="{nonce}"',
            f'uri="{uri}"',
            f"algorithm={'SHA-256' if algorithm == 'SHA-256' else 'MD5'}",
        ]
        if "auth" in qops:
            nc = "00000001"
            response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        elif not qops:
            response = h(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
            fields.append(f'response="{response}"')
        else:
            continue  # only auth-int offered: we do not sign bodies
        if "opaque" in params:
            fields.append(f'opaque="{params["opaque"]}"')
        return "Digest " + ", ".join(fields)
    return None
