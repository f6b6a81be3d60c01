# What the core says happened: facts (events) returned from every call, in order. The adapter turns them
# into bus events (services/kernel/events/) and media/IVR commands. `seq` counts outputs of this tenant's
# engine from its creation, so it is the same on replay: use it to de-duplicate publishes.
from __future__ import annotations

import msgspec

__all__ = [
    "AgentStateChanged",
    "AnyOutput",
    "CallbackDue",
    "ContactAbandoned",
    "ContactAccepted",
    "ContactEnded",
    "ContactOffered",
    "ContactOverflowed",
    "ContactQueued",
    "ContactRejected",
    "ContactRequeued",
    "ContactSiteSpilled",
    "ContactTransferred",
    "ContactWrappedUp",
    "Output",
    "PositionChanged",
]


class Output(msgspec.Struct, kw_only=True, tag_field="type"):
    # Set by the engine when it emits the output.
    seq: int = 0
    at: float = 0.0


class AgentStateChanged(Output, kw_only=True, tag="agent.state_changed"):
    agent_id: str
    old: str
    new: str
    reason: str | None


class ContactQueued(Output, kw_only=True, tag="contact.queued"):
    contact_id: str
    queue_id: str
    priority: int
    position: int
    expected_wait_s: int | None
    virtual_hold: bool
    attributes: dict[str, str] = {}  # what the IVR gathered: the agent's screen pop


class ContactOffered(Output, kw_only=True, tag="contact.offered"):
    contact_id: str
    queue_id: str
    agent_id: str
    offer_id: str
    expires_at: float


class ContactAccepted(Output, kw_only=True, tag="contact.accepted"):
    contact_id: str
    queue_id: str
    agent_id: str
    offer_id: str
    waited_s: float


class ContactRejected(Output, kw_only=True, tag="contact.rejected"):
    """An offer ended without an accept: reason is "rejected", "no_answer", "withdrawn" (the
    caller left) or "agent_<cause>" (the agent was logged out: "agent_logout", "agent_disconnected", ...)."""

    contact_id: str
    queue_id: str
    agent_id: str
    offer_id: str
    reason: str


class ContactRequeued(Output, kw_only=True, tag="contact.requeued"):
    """Back in line at its original place (after a reject, no answer, logout or a lost site)."""

    contact_id: str
    queue_id: str
    position: int
    reason: str


class ContactAbandoned(Output, kw_only=True, tag="contact.abandoned"):
    contact_id: str
    queue_id: str
    waited_s: float
    reason: str
    agent_id: str | None = None  # set if it was being offered


class ContactOverflowed(Output, kw_only=True, tag="contact.overflowed"):
    contact_id: str
    from_queue_id: str
    to_queue_id: str
    reason: str  # "time", "expected_wait" or "closed"


class ContactSiteSpilled(Output, kw_only=True, tag="contact.site_spilled"):
    """The contact may now go to agents of any site, not only the queue's preferred site."""

    contact_id: str
    queue_id: str
    from_site_id: str
    reason: str  # "time", "expected_wait", "site_drained", "site_lost"


class ContactTransferred(Output, kw_only=True, tag="contact.transferred"):
    contact_id: str
    from_queue_id: str
    to_queue_id: str
    agent_id: str | None


class ContactEnded(Output, kw_only=True, tag="contact.ended"):
    """A connected contact finished (hang-up, chat closed); the agent may go on to wrap-up."""

    contact_id: str
    queue_id: str
    agent_id: str
    talk_s: float


class ContactWrappedUp(Output, kw_only=True, tag="contact.wrapped_up"):
    contact_id: str
    queue_id: str
    agent_id: str
    handle_s: float


class PositionChanged(Output, kw_only=True, tag="contact.position_changed"):
    contact_id: str
    queue_id: str
    position: int
    expected_wait_s: int | None


class CallbackDue(Output, kw_only=True, tag="routing.callback_due"):
    """A contact on virtual hold reached the front: call the customer back now."""

    contact_id: str
    queue_id: str
    expires_at: float


AnyOutput = (
    AgentStateChanged
    | ContactQueued
    | ContactOffered
    | ContactAccepted
    | ContactRejected
    | ContactRequeued
    | ContactAbandoned
    | ContactOverflowed
    | ContactSiteSpilled
    | ContactTransferred
    | ContactEnded
    | ContactWrappedUp
    | PositionChanged
    | CallbackDue
)
