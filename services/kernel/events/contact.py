"""A contact's life: routing's contact.* facts and the coordinator's contact.state_changed."""

from __future__ import annotations

import uuid
from typing import Literal

from ..messages import Event

__all__ = [
    "ContactAbandoned",
    "ContactAccepted",
    "ContactAssigned",
    "ContactEnded",
    "ContactOffered",
    "ContactOverflowed",
    "ContactPhase",
    "ContactPositionChanged",
    "ContactQueued",
    "ContactRejected",
    "ContactRequeued",
    "ContactStateChanged",
    "ContactWrappedUp",
]

# The contact coordinator (services/contacts): a contact's life from arrival to wrap-up, and the agent desk.
# A contact's id is its caller's `call_id`. Agents' desks (the API's websocket) send the Desk* commands to
# sb.<tenant>.cmd.contacts.<name>; the coordinator pushes what an agent must see as `desk.push` events.


class ContactQueued(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "queued"
    call_id: uuid.UUID
    queue: str = ""
    position: int = 0
    expected_wait_s: float | None = None
    attributes: dict[str, str] = {}  # the contact's attributes (the IVR's screen pop)


class ContactPositionChanged(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "position_changed"
    call_id: uuid.UUID
    position: int
    expected_wait_s: float | None = None


class ContactAccepted(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "accepted"
    call_id: uuid.UUID
    agent_id: str = ""


class ContactOffered(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "offered"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str
    expires_at: float


class ContactAssigned(Event, kw_only=True, frozen=True):
    """The agent accepted: bridge the contact's media to the agent."""

    domain = "contact"
    name = "assigned"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str


class ContactRejected(Event, kw_only=True, frozen=True):
    """An offer ended without an accept (reason rejected, no_answer, withdrawn): stop ringing."""

    domain = "contact"
    name = "rejected"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    offer_id: str
    reason: str


class ContactRequeued(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "requeued"
    call_id: uuid.UUID
    queue_id: str
    position: int
    reason: str


class ContactAbandoned(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "abandoned"
    call_id: uuid.UUID
    queue_id: str
    waited_s: float
    reason: str
    agent_id: str | None = None


class ContactOverflowed(Event, kw_only=True, frozen=True):
    """The contact moved: to another queue (kind overflow or transfer) or to every site (site_spill)."""

    domain = "contact"
    name = "overflowed"
    call_id: uuid.UUID
    kind: Literal["overflow", "transfer", "site_spill"]
    from_queue_id: str
    to_queue_id: str
    reason: str


class ContactEnded(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "ended"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    talk_s: float


class ContactWrappedUp(Event, kw_only=True, frozen=True):
    domain = "contact"
    name = "wrapped_up"
    call_id: uuid.UUID
    queue_id: str
    agent_id: str
    handle_s: float


ContactPhase = Literal[
    "arrived",
    "in_ivr",
    "queued",
    "offered",
    "connected",
    "wrap_up",
    "callback",
    "ended",
    "abandoned",
    "failed",
]


class ContactStateChanged(Event, kw_only=True, frozen=True):
    """One transition of a contact's life (docs/contacts.md)."""

    domain = "contact"
    name = "state_changed"
    call_id: uuid.UUID
    old: ContactPhase | None  # None for the first
    new: ContactPhase
    cause: str = ""
    agent_id: str | None = None
    queue_id: str | None = None
