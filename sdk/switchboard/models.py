"""Typed models of the control-plane API objects (docs/api.md), decoded straight from JSON by msgspec.

Fields the API may add later are ignored on decode, so an older SDK keeps working against a newer API.
Ids stay plain strings: callers pass them back to the API and never compute with them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "Agent",
    "AgentStateSet",
    "AgentToken",
    "AlertPolicies",
    "AlertPolicy",
    "AuditEntry",
    "Choice",
    "Contact",
    "ContactMoved",
    "ContactPrioritized",
    "ContactSummary",
    "DeskSettings",
    "Invite",
    "Key",
    "KeyWithSecret",
    "Me",
    "MonitorSession",
    "Number",
    "Page",
    "Queue",
    "QueueAlertPolicy",
    "Seats",
    "Signout",
    "SignupResult",
    "Site",
    "SupervisorScope",
    "Tenant",
    "TenantSettings",
    "TimelineEntry",
    "Trunk",
    "Usage",
    "UsageInterval",
    "WidgetKey",
    "WidgetToken",
    "to_dict",
]

T = TypeVar("T")


class Model(msgspec.Struct, kw_only=True):
    """Base of every API object."""


class Tenant(Model, kw_only=True):
    id: str
    name: str
    admin_email: str
    plan: str
    created_at: datetime


class Key(Model, kw_only=True):
    id: str
    name: str = ""
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyWithSecret(Key, kw_only=True):
    # The secret itself (`sbk_...`): the API shows it once, when the key is created.
    key: str


class Seats(Model, kw_only=True):
    purchased: int
    logged_in: int
    available: int
    plan: str


class Me(Model, kw_only=True):
    tenant: Tenant
    key: Key


class SignupResult(Model, kw_only=True):
    tenant: Tenant
    api_key: KeyWithSecret
    seats: Seats


class UsageInterval(Model, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    seats: int
    seconds: float


class Usage(Model, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    seat_seconds: float
    seat_hours: float
    intervals: list[UsageInterval] = msgspec.field(default_factory=list)


class AuditEntry(Model, kw_only=True):
    id: str
    at: datetime
    actor_key_id: str | None = None
    actor_role: str | None = None
    action: str
    target_type: str
    target_id: str | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Site(Model, kw_only=True):
    id: str
    name: str
    timezone: str
    kind: str
    created_at: datetime
    updated_at: datetime
    # Set while drained (Sites.drain): its agents are offered nothing new; its queues' calls spill.
    drained_at: datetime | None = None


class Agent(Model, kw_only=True):
    id: str
    name: str
    email: str
    site_id: str | None = None
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    languages: list[str] = msgspec.field(default_factory=list)
    # Where the agent is reached: None = the browser (WebRTC), a sip:/sips: URI, or an E.164 number.
    endpoint: str | None = None
    can_dial: bool = False  # may place outbound calls
    voicemail_capacity: int = 1  # voicemails held at once (0: never offered one)
    created_at: datetime
    updated_at: datetime


class Invite(Model, kw_only=True):
    """A one-time link for a person to set a password and sign in at /agent/ (shown once)."""

    id: str
    account_id: str
    email: str
    role: str
    agent_id: str | None = None
    path: str  # /agent/#invite=...: put the platform's address in front (`url` does)
    token: str
    expires_at: datetime
    url: str = ""


class Signout(Model, kw_only=True):
    sessions_ended: int


class Choice(Model):
    code: str
    label: str


class DeskSettings(Model, kw_only=True):
    """The tenant's disposition codes and away reasons, and whether an open wrap-up form extends wrap-up."""

    dispositions: list[Choice]
    away_reasons: list[Choice]
    wrap_up_form_extends: bool = True


class TenantSettings(Model, kw_only=True):
    """Tenant-wide settings (`/v1/me/settings`). `agent_grace_seconds`: how long an agent whose client lost
    its socket keeps its seat and calls before it is signed out (docs/agent-protocol.md, Reconnecting)."""

    agent_grace_seconds: int
    timezone: str = "UTC"  # queue opening hours and holidays are read in it
    language: str = "en"  # what the platform says to callers: en, fr, es or de
    # Who is told when a supervisor steps into a call: none, agent (a desk message), caller, both.
    monitor_notice: str = "none"


class AgentToken(Model, kw_only=True):
    """A short-lived agent token for the signalling websocket (docs/agent-protocol.md): 10 minutes by default."""

    token: str
    token_type: str = "Bearer"
    agent_id: str
    expires_at: float
    expires_in: int
    # RTCPeerConnection iceServers for the agent's browser: TURN with short-lived credentials when the
    # platform has a TURN server configured, else empty.
    ice_servers: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Queue(Model, kw_only=True):
    id: str
    name: str
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    priority: int
    sl_percent: int
    sl_seconds: int
    short_abandon_seconds: int
    wrap_up_seconds: int
    offer_timeout_seconds: int = 20
    # Share of calls recorded (100 all, 0 none) and days recordings are kept; None: the tenant's setting.
    recording_percent: int | None = None
    recording_retention_days: int | None = None
    # Said to recorded callers before an agent; None: the tenant's; "": none for this queue.
    recording_announcement: str | None = None
    site_id: str | None = None
    created_at: datetime
    updated_at: datetime
    # Routing rules (Queues.set_rules; docs/routing.md, "Queue rules").
    strategy: str = "longest_idle"
    # [{"target_queue_id": ..., "after_seconds": 60, "expected_wait_over_seconds": None}]
    overflow: list[dict[str, Any]] = msgspec.field(default_factory=list)
    hours: dict[str, list[str]] | None = None  # {"mon": ["09:00-17:00"]} in the tenant's time zone
    holidays: list[date] = msgspec.field(default_factory=list)
    closed_treatment: str = "message"  # "message" (then goodbye) or "queue" (to closed_queue_id)
    closed_message: str | None = None
    closed_queue_id: str | None = None
    closed_flow_id: str | None = None  # closed_treatment "flow": the IVR flow callers are handed to
    survey_flow_id: str | None = None  # after the agent leaves, callers go to this flow (a post-call survey)
    # [{"attribute": "vip", "equals": "true", "raise_by": 30}]
    priority_rules: list[dict[str, Any]] = msgspec.field(default_factory=list)
    spill_after_seconds: int | None = None
    spill_expected_wait_seconds: int | None = None
    announce_seconds: int | None = 60


class Number(Model, kw_only=True):
    id: str
    e164: str
    queue_id: str | None = None
    flow_id: str | None = None
    created_at: datetime
    updated_at: datetime


class Trunk(Model, kw_only=True):
    """A SIP trunk. The password is write-only: `has_credentials` says whether digest is set."""

    id: str
    name: str
    allowed_ips: list[str] = msgspec.field(default_factory=list)
    username: str | None = None
    realm: str | None = None
    has_credentials: bool = False
    outbound_host: str | None = None
    outbound_port: int | None = None
    outbound_transport: str = "udp"
    created_at: datetime
    updated_at: datetime


class ContactSummary(Model, kw_only=True):
    """One contact (a call from arrival to wrap-up) as listed; `Contact` adds its timeline and details."""

    id: str
    direction: str = "inbound"
    caller: str = ""
    caller_name: str = ""
    dialled: str = ""
    queue_id: str | None = None
    queue_name: str = ""
    agent_id: str | None = None
    state: str
    outcome: str | None = None
    cause: str | None = None
    disposition: str | None = None
    arrived_at: datetime
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    ivr_s: float | None = None
    queue_s: float | None = None
    talk_s: float | None = None


class TimelineEntry(Model, kw_only=True):
    at: datetime
    event: str
    detail: dict[str, str] = msgspec.field(default_factory=dict)


class Contact(ContactSummary, kw_only=True):
    number_id: str | None = None
    flow_id: str | None = None
    notes: str | None = None
    ivr_path: list[str] = msgspec.field(default_factory=list)
    ivr_digits: str = ""
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    transfers: list[dict[str, str]] = msgspec.field(default_factory=list)
    timeline: list[TimelineEntry] = msgspec.field(default_factory=list)
    queued_at: datetime | None = None
    offered_at: datetime | None = None
    wrapped_at: datetime | None = None
    updated_at: datetime | None = None
    # Its recording ({"id", "status", "partial", "duration_s", "url"}) when there is one.
    recording: dict[str, Any] | None = None
    # Every recording of its conversation, in order ({"id", "segment", "kind", "agent_id", ...}).
    recordings: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # Messages the caller left on this call ({"id", "status", "duration_s", "url", "task"}): recordings of
    # kind voicemail (client.recordings.download(id, path) fetches one).
    voicemails: list[dict[str, Any]] = msgspec.field(default_factory=list)


class MonitorSession(Model, kw_only=True):
    """A supervisor on a live contact: `leg_id` (their browser's WebRTC leg, or their desk phone's) hears and speaks by `mode`
    (listen, whisper: the agent hears them, barge: both do; none: left)."""

    contact_id: str
    leg_id: str
    mode: str
    agent_leg_id: str | None = None
    phone: str | None = None  # the desk phone rung as the leg, on the request that gave it


class AgentStateSet(Model, kw_only=True):
    """A supervisor set an agent's presence (`reason` only for away)."""

    agent_id: str
    state: str
    reason: str | None = None


class SupervisorScope(Model, kw_only=True):
    """The queues and sites a supervisor sees and acts on (and the agents at those sites or serving those
    queues); both None: the whole tenant."""

    account_id: str
    email: str
    queue_ids: list[str] | None = None
    site_ids: list[str] | None = None


class ContactMoved(Model, kw_only=True):
    """A waiting contact moved to `queue_id`."""

    contact_id: str
    queue_id: str


class AlertPolicy(Model, kw_only=True):
    """Alert thresholds (None: the queue's own SL threshold for the wait, its own target for the service
    level; waiting and away not watched)."""

    longest_wait_seconds: int | None = None
    service_level_below_percent: int | None = None
    waiting_over: int | None = None
    away_over_percent: int | None = None


class QueueAlertPolicy(Model, kw_only=True):
    queue_id: str
    queue_name: str
    policy: AlertPolicy


class AlertPolicies(Model, kw_only=True):
    """The tenant's default thresholds and the queues that have their own."""

    default: AlertPolicy
    queues: list[QueueAlertPolicy] = []


class ContactPrioritized(Model, kw_only=True):
    """A waiting contact put first in its queue (`position` 1), or pulled: offered now to `agent_id`."""

    contact_id: str
    queue_id: str
    position: int | None = None
    agent_id: str | None = None


class WidgetKey(Model, kw_only=True):
    """A public widget key (`pk_...`) for a web page: it only gets caller tokens for `queue_ids`, and only
    from `origins` when any are listed. Not a secret: it is published in the page."""

    id: str
    name: str = ""
    public_key: str
    queue_ids: list[str] = msgspec.field(default_factory=list)
    origins: list[str] = msgspec.field(default_factory=list)
    flow_id: str | None = None  # web callers go through this IVR flow first
    created_at: datetime
    revoked_at: datetime | None = None


class WidgetToken(Model, kw_only=True):
    """A widget caller's short-lived token (5 minutes) for one queue."""

    token: str
    token_type: str = "Bearer"
    session_id: str
    queue_id: str
    expires_at: float
    expires_in: int
    ice_servers: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Recording(Model, kw_only=True):
    """A call's recording (its id is the contact's): `status` recording, available or deleted; `pauses` are
    [start, end] seconds with no audio kept; `partial` when it was cut short."""

    id: str
    status: str
    partial: bool = False
    law: str = "PCMU"
    duration_s: float = 0.0
    pauses: list[list[float]] = msgspec.field(default_factory=list)
    started_at: datetime
    ended_at: datetime | None = None
    available_at: datetime | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    retention_days: int | None = None
    purge_after: datetime | None = None
    legal_hold: bool = False
    deleted_at: datetime | None = None
    deleted_reason: str | None = None
    formats: list[str] = msgspec.field(default_factory=lambda: ["wav"])
    # Its place in the contact's conversation: segment 0, 1, ...; "talk" (caller and agent) or "consult"
    # (agent_id consulting consulted_agent_id); or "voicemail", a message a caller left (one channel, law
    # "L16"), left on the call `left_on`.
    segment: int = 0
    kind: str = "talk"
    consulted_agent_id: str | None = None
    left_on: str | None = None
    contact_id: str = ""
    caller: str = ""
    dialled: str = ""
    queue_id: str | None = None
    queue_name: str = ""
    agent_id: str | None = None


class Conversation(Model, kw_only=True):
    """Every recording of one contact's conversation, in order (transfers and consultations)."""

    contact_id: str
    duration_s: float = 0.0
    segments: list[Recording] = msgspec.field(default_factory=list)


class RecordingUrl(Model, kw_only=True):
    """A signed URL that plays or downloads one recording until `expires_at` (no API key needed)."""

    url: str
    expires_at: datetime


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list; pass `next_cursor` back as `cursor` for the next one (None: this was the last)."""

    items: list[T]
    next_cursor: str | None = None


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data (dicts, lists, ISO 8601 strings) with the API's own field names."""
    return msgspec.to_builtins(obj)
