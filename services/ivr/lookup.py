"""Data dips: the HTTP request a `lookup` node asks for (performed by the adapter, or stubbed by the simulator),
its HMAC-SHA256 signature, and turning the answer into attributes.

Signature: X-Switchboard-Timestamp: <unix seconds>, X-Switchboard-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>." + payload> where payload is the request body (POST) or the query string (GET). A receiver
recomputes it with the tenant's lookup secret and rejects timestamps older than 5 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import msgspec

__all__ = [
    "MAX_SKEW_S",
    "LookupRequest",
    "LookupResult",
    "derive_secret",
    "result_attributes",
    "sign",
    "verify",
]

MAX_SKEW_S = 300
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
SIGNATURE_HEADER = "X-Switchboard-Signature"


class LookupRequest(msgspec.Struct, kw_only=True, frozen=True):
    """What the adapter must send; answered with a LookupResult carrying the same `id`."""

    id: uuid.UUID
    call_id: uuid.UUID
    node: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: float


class LookupResult(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    status: int | None = None  # None: no answer (timeout, connection refused)
    body: bytes = b""
    error: str | None = None


def derive_secret(platform_secret: str, tenant_id: uuid.UUID) -> bytes:
    """The tenant's lookup signing secret, derived from the platform secret (nothing extra to store)."""
    return hmac.new(platform_secret.encode(), f"ivr-lookup:{tenant_id}".encode(), hashlib.sha256).digest()


def sign(secret: bytes, timestamp: int, payload: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: bytes, timestamp: str, signature: str, payload: bytes, now: float) -> bool:
    """What a tenant's server does: check freshness, then compare in constant time."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > MAX_SKEW_S:
        return False
    return hmac.compare_digest(sign(secret, ts, payload), signature)


def result_attributes(
    result: LookupResult, mapping: dict[str, str] | None, prefix: str
) -> dict[str, str] | None:
    """Attributes from a 2xx JSON object answer; None when the answer is unusable (take the error branch)."""
    if result.status is None or not 200 <= result.status < 300:
        return None
    try:
        data: Any = msgspec.json.decode(result.body) if result.body else {}
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None

    def text(v: Any) -> str | None:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (str, int, float)):
            return str(v)
        return None

    out: dict[str, str] = {}
    if mapping is None:
        for key, value in data.items():
            t = text(value)
            if t is not None:
                out[f"{prefix}{key}"] = t
    else:
        for attr, member in mapping.items():
            t = text(data.get(member))
            if t is not None:
                out[f"{prefix}{attr}"] = t
    return out
