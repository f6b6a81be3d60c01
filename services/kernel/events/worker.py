"""Media workers behind a SIP front: registration in KV and the loss of a worker (platform records)."""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

__all__ = ["MediaWorkerCall", "MediaWorkerLost", "MediaWorkerRegistration"]

# Media workers behind one SIP front (services/media/front/server.py, docs/media.md "Sharding"). Each worker keeps
# a MediaWorkerRegistration in the JetStream KV bucket `sb_media_workers` (key: its worker id), refreshed
# every second and at once when its calls change; the front dispatches new calls by it and, when a worker
# is lost, ends that worker's calls (`call.ended`, cause `media_worker_lost`) and publishes
# MediaWorkerLost on sb.sys.media.worker_lost. These are platform records, not tenant events.


class MediaWorkerCall(msgspec.Struct, kw_only=True, frozen=True):
    """One live call of a worker: what the front needs to end it if the worker dies."""

    tenant_id: uuid.UUID
    call_id: uuid.UUID
    sip_call_id: str = ""  # the SIP dialog's Call-ID (empty for WebRTC legs)
    answered_at: float | None = None  # wall clock; None while ringing
    # A process without a front: the BYE that ends this answered SIP dialog should the process die (the
    # contacts coordinator sends it, services/contacts/media_watch.py), and where to, (transport, host, port).
    lost_bye: str = ""
    lost_bye_to: tuple[str, str, int] | None = None


class MediaWorkerRegistration(msgspec.Struct, kw_only=True, frozen=True):
    v: int = 1
    worker_id: str
    site: str
    link_host: str  # where the front connects to exchange SIP with this worker
    link_port: int
    capacity: int  # calls before the worker sheds with 503 (SB_MEDIA_MAX_CALLS)
    active_calls: int
    calls: list[MediaWorkerCall] = msgspec.field(default_factory=list)
    state: Literal["up", "stopping"] = "up"
    pid: int = 0
    started_at: float = 0.0
    ts: float = 0.0  # the worker's wall clock at the put


class MediaWorkerLost(msgspec.Struct, kw_only=True, frozen=True):
    v: int = 1
    id: uuid.UUID
    ts: float
    worker_id: str
    site: str
    reason: Literal["link_closed", "registration_expired"]
    calls_ended: int
    pid: int = 0  # the lost incarnation: a worker that reads its own pid here stops at once (fenced)
