"""A contact's state as the coordinator saves it after every step (`Contact`: the record and the live
state around it), the phases it may move through (`PHASES`, the one transition table `Lifecycle._transition`
checks), and what the adapter adds to routing's offer (`OfferInfo`). Data only: the decisions are in
lifecycle.py and the modules it delegates to."""

from __future__ import annotations

import uuid

import msgspec

from services.kernel import events as ev

from .callbacks import CallbackPlan
from .consult import Consult
from .queue_wait import Waiting
from .records import ContactRecord

__all__ = ["PHASES", "ROUTING_EVENTS", "TERMINAL", "Contact", "IllegalTransition", "OfferInfo"]

TERMINAL: tuple[ev.ContactPhase, ...] = ("ended", "abandoned", "failed")
_ENDS = frozenset(TERMINAL)


def _to(*phases: ev.ContactPhase) -> frozenset[ev.ContactPhase]:
    return frozenset(phases)


# Every phase a contact may move to from each (docs/contacts.md): `_transition` refuses any other move.
# The phase also says who talks to the caller: the coordinator while `arrived` (the answer, a queue number's
# notice or closed message), the IVR while `in_ivr` (a flow runs; the flow's queue hands the caller back
# and the coordinator puts them in line), the coordinator while `queued` and `offered` (music,
# announcements, a flow queue's callback offer and maximum wait), the agent once `connected`; in
# `callback` nobody is on the line until the customer answers.
PHASES: dict[ev.ContactPhase | None, frozenset[ev.ContactPhase]] = {
    None: _to("arrived"),
    "arrived": _to("in_ivr", "queued") | _ENDS,
    "in_ivr": _to("queued", "callback") | _ENDS,
    # "in_ivr" from queued: a flow's queue gave up (its maximum wait) or a call back was agreed, and the
    # flow continues (its on_timeout / on_callback node).
    "queued": _to("offered", "callback", "in_ivr") | _ENDS,
    # "callback" from offered: the customer of an agent-first callback did not answer (a retry waits).
    "offered": _to("connected", "queued", "wrap_up", "callback") | _ENDS,
    "connected": _to("wrap_up", "queued") | _ENDS,
    "wrap_up": _ENDS,
    # The caller hung up to be called back: in line again for an attempt (or the customer answered).
    "callback": _to("queued") | _ENDS,
    "ended": frozenset(),
    "abandoned": frozenset(),
    "failed": frozenset(),
}


class OfferInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What the adapter looks up for an offer before the machine sees it."""

    offer: ev.ContactOffered
    queue_name: str = ""
    endpoint: str | None = None  # None: the agent's browser (WebRTC)
    history_today: int = 0
    history_last: list[dict[str, str]] = []
    # The queue's recording share (0-100; the tenant's when the queue has none): docs/recording.md.
    record_percent: int = 0
    survey_flow: str | None = None  # the queue's flow for callers once the agent leaves (a survey)


# Routing's events about a contact (the adapter maps a consultation's to its contact).
ROUTING_EVENTS: tuple[type, ...] = (
    OfferInfo,
    ev.ContactQueued,
    ev.ContactAccepted,
    ev.ContactRejected,
    ev.ContactAbandoned,
    ev.ContactOverflowed,
    ev.ContactRequeued,
    ev.ContactEnded,
    ev.ContactWrappedUp,
)


class Contact(msgspec.Struct, kw_only=True):
    record: ContactRecord
    # Live state, not stored in the contact record.
    offer_id: str | None = None
    offer_expires_at: float | None = None
    offer_agent_id: str | None = None
    leg_id: uuid.UUID | None = None  # the offered/connected agent's audio leg
    leg_ready: bool = False
    dialing: bool = False  # the leg is our call to the agent's phone (a sip: URI or a number)
    early_legs: dict[str, uuid.UUID] = {}  # agent id -> a leg that connected before its offer was seen
    accepted: bool = False
    bridged: bool = False
    bridge_command: uuid.UUID | None = None
    held: bool = False
    muted: bool = False
    # Recording: decided at the offer (by the queue's share), started once when the agent's leg is bridged.
    record_call: bool = False
    recording_started: bool = False
    recording_paused: bool = False
    segments: int = 0  # recording segments started: each bridge of the caller to an agent, each consultation
    notice: str = ""  # the recording announcement: "" none, "playing", "heard", "failed" (no recording then)
    note: str = ""
    note_from: str = ""
    transfer: dict[str, str] | None = None  # a blind transfer sent to routing, applied once it accepts
    deadline: float | None = None  # accept-without-leg or answer timeout
    waiting: Waiting | None = (
        None  # what the caller hears in line: a queue number's, or a flow's queue node's
    )
    announce_at: float | None = None
    # A flow's queue (ivr_step.handed_back): the node's terms while its caller waits in line, the flow to
    # continue in (its on_timeout, on_callback, fallback), and the node's own times (queue_wait.py).
    flow_wait: ev.IvrQueueWait | None = None
    flow_name: str = ""
    callback_offer_at: float | None = None
    give_up_at: float | None = None
    callback_offered: bool = False
    bye: str = ""  # a goodbye is playing (`playing`): the caller is hung up with this cause when it ends
    position: int | None = None
    expected_wait_s: float | None = None
    playing: str | None = None  # the announcement or closed message playing now (its command id)
    pending: dict[str, str] = {}  # command id -> what it was for (failures are fed back)
    seen: list[str] = []
    # The last moment this coordinator knew the contact alive (checkpoints, every step): where its record
    # ends if the call turns out to be gone after a restart of the platform.
    alive_at: float | None = None
    consult: Consult | None = None  # an attended transfer under way (consult.py)
    task: str | None = None  # "voicemail": a task without a call (voicemail.py)
    # Routing's id of this contact once an attended transfer completed (None: the contact's own id).
    routing_id: uuid.UUID | None = None
    # Agent id -> the contact id that agent's desk knows, where it is not this contact's (a consultation).
    desk_ids: dict[str, str] = {}
    callback: CallbackPlan | None = None  # the caller asked to be called back (callbacks.py)
    # After the agent: the flow the caller goes to when the agent leaves (the queue's), the flow the caller
    # is in now (the record stays open for its answers), and a wrap-up that ended meanwhile.
    survey_flow: str | None = None
    post_call: str | None = None
    wrapped_early: bool = False
    # Routing found the contact due while its caller was still on the line (hearing the confirmation).
    callback_due: bool = False
    # The caller's media call once it is not the contact's own (the customer's call of a callback).
    customer_call: uuid.UUID | None = None


class IllegalTransition(RuntimeError):
    pass
