# A contact (call, chat, email) as routing sees it, and an offer of it to one agent.
from __future__ import annotations

import msgspec

from .model import Channel, FastEnum

__all__ = ["IN_LINE", "Contact", "ContactState", "Offer", "line_key"]


class ContactState(FastEnum):
    WAITING = "waiting"  # in line and matchable (on virtual hold too: then a match means callback_due)
    CALLBACK_DUE = "callback_due"  # in line at its place, waiting for the customer to be called back
    OFFERED = "offered"  # out of line, offered to exactly one agent
    CONNECTED = "connected"  # with an agent


IN_LINE = frozenset({ContactState.WAITING, ContactState.CALLBACK_DUE})


class Contact(msgspec.Struct, kw_only=True):
    contact_id: str
    queue_id: str
    channel: Channel
    base_priority: int
    priority: int
    # Arrival order in the tenant; never changes, so a contact coming back keeps its place.
    seq: int
    arrived_at: float
    queued_at: float  # entered the current queue
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    requires: dict[str, str] = msgspec.field(default_factory=dict)
    skills: dict[str, int] = msgspec.field(default_factory=dict)
    state: ContactState = ContactState.WAITING
    virtual_hold: bool = False
    # Bullseye step index and the resulting minimum level per skill (0 = not required).
    step: int = 0
    levels: dict[str, int] = msgspec.field(default_factory=dict)
    preferred_agent_id: str | None = None
    preferred_until: float | None = None  # set while the preferred-agent window is open
    preferred_only: bool = False  # never offered to anyone else (a consultation of one agent)
    site_spilled: bool = False
    visited: list[str] = msgspec.field(default_factory=list)
    rejected_by: list[str] = msgspec.field(default_factory=list)
    offer_id: str | None = None
    offers_made: int = 0
    agent_id: str | None = None
    callback_expires_at: float | None = None
    next_check_at: float | None = None
    last_position: int | None = None
    last_ewt: int | None = None


class Offer(msgspec.Struct, kw_only=True):
    offer_id: str
    contact_id: str
    agent_id: str
    queue_id: str
    offered_at: float
    expires_at: float


def line_key(c: Contact) -> tuple[int, int]:
    """Service order: higher priority first, then earlier arrival (seq is unique)."""
    return (-c.priority, c.seq)
