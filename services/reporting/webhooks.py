"""Webhooks (sans-IO): which events go to which endpoint, the body sent, its signature, the retry schedule.

Signature: the IVR lookup's scheme (services/ivr/lookup.py), reused: X-Switchboard-Timestamp: <unix seconds>,
X-Switchboard-Signature: v1=<hex HMAC-SHA256 of "<timestamp>." + body>, with the endpoint's secret. A
receiver recomputes it and rejects timestamps older than 5 minutes (`lookup.verify`). The endpoint's secret
is derived from the platform secret and the endpoint id, so nothing secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import msgspec

from services.ivr.lookup import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from services.kernel import events as ev
from services.kernel.messages import Event

__all__ = [
    "EVENTS",
    "EVENT_HEADER",
    "MAX_ATTEMPTS",
    "backoff_s",
    "body_of",
    "endpoint_secret",
    "request_headers",
    "wants",
]

MAX_ATTEMPTS = 8
EVENT_HEADER = "X-Switchboard-Event"
DELIVERY_HEADER = "X-Switchboard-Delivery"
FAMILIES = ("contact", "recording")

# What a tenant can subscribe to: the contact's life, its recordings, and by exact type (not part of the
# default families) queue alerts (queue.alert_raised, queue.alert_cleared) and each leg's quality figures
# when it ends (call.quality: MOS, jitter, loss, RTT).
EVENTS: dict[str, type[Event]] = {
    f"{cls.domain}.{cls.name}": cls
    for cls in (
        ev.ContactQueued,
        ev.ContactAssigned,
        ev.ContactAbandoned,
        ev.ContactOverflowed,
        ev.ContactEnded,
        ev.ContactWrappedUp,
        ev.ContactStateChanged,
        ev.RecordingStarted,
        ev.RecordingPaused,
        ev.RecordingResumed,
        ev.RecordingAvailable,
        ev.RecordingDeleted,
        ev.QueueAlertRaised,
        ev.QueueAlertCleared,
        ev.CallQuality,
    )
}


def endpoint_secret(platform_secret: str, endpoint_id: uuid.UUID) -> str:
    """The endpoint's signing secret (shown once when it is made; derivable, never stored)."""
    mac = hmac.new(platform_secret.encode(), f"webhook:{endpoint_id}".encode(), hashlib.sha256).hexdigest()
    return f"whsec_{mac}"


def wants(subscribed: list[str], event_type: str) -> bool:
    """An endpoint subscribed to a family ('contact') or to the exact type ('contact.ended')."""
    return any(s == event_type or event_type.startswith(f"{s}.") for s in subscribed)


def body_of(event: Event) -> bytes:
    """What is POSTed: {"id", "type", "tenant_id", "ts", "data"} (the event's own fields in data)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    for key in ("id", "tenant_id", "ts", "v"):
        data.pop(key, None)
    return msgspec.json.encode(
        {
            "id": str(event.id),
            "type": f"{event.domain}.{event.name}",
            "tenant_id": str(event.tenant_id),
            "ts": event.ts,
            "data": data,
        }
    )


def request_headers(
    secret: str, body: bytes, now: float, event_type: str, delivery_id: uuid.UUID
) -> dict[str, str]:
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "Switchboard-Webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret.encode(), timestamp, body),
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: str(delivery_id),
    }


def backoff_s(attempts: int, base_s: float) -> float:
    """The wait before the next attempt after `attempts` failed ones: base, 2x, 4x, ... capped at 10 min."""
    return float(min(600.0, base_s * (2 ** max(0, attempts - 1))))
