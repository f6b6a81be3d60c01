"""What a contact keeps while its caller waits to be called back (docs/routing.md, "Callbacks"), and the
tenant's settings for the calls the platform places. The decisions are the `Lifecycle`'s (lifecycle.py);
this module holds their data and the few pure rules about attempts.

Agent first (the default): when the contact reaches the front, routing offers it to an agent like a call;
on accept the customer is dialled through the tenant's trunk from the agent's media worker and bridged to
the agent once they answer. Customer first: the customer is dialled when the contact reaches the front;
once they answer they hear a short message and music, and the contact is offered to the next agent at its
place. An attempt nobody answers (busy, declined, ringing out, a failed dial) frees the agent, and the
contact goes back in line after the tenant's retry gap, until its attempts are spent: outcome
`callback_failed`. An agent's outbound call is the same plan with one attempt (kind "outbound").

The steps are sans-IO functions of the `Lifecycle` (as in consult.py): they take `now` and emit through it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal

import msgspec

from services.kernel import events as ev

from .records import iso_utc

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = [
    "CALLBACK_GREETING",
    "CallbackInfo",
    "CallbackPlan",
    "CallingSettings",
    "DialInfo",
    "attempt_call_id",
    "awaits_customer",
    "customer_answered",
    "dial_customer",
    "due",
    "enqueue",
    "missed",
    "requested",
]

CALLBACK_GREETING = "Hello, this is the call back you asked for. Please hold for the next available agent."
# A customer's phone rings this much longer than the INVITE's own timeout before the attempt is given up.
RING_SLACK_S = 2.0


class CallingSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The tenant's row (migration 0025): read by the coordinator's adapter when a callback is asked for."""

    callback_mode: Literal["agent_first", "customer_first"] = "agent_first"
    callback_attempts: int = 3
    callback_retry_seconds: float = 300.0
    callback_ring_seconds: float = 30.0
    caller_id: str | None = None


class CallbackInfo(msgspec.Struct, kw_only=True, frozen=True):
    """The IVR's request with the tenant's settings, as the adapter hands it to the machine."""

    request: ev.IvrCallbackRequested
    settings: CallingSettings = CallingSettings()


class DialInfo(msgspec.Struct, kw_only=True, frozen=True):
    """An agent's outbound call, checked by the adapter (permission, do-not-call, caller ID, queue)."""

    contact_id: uuid.UUID
    tenant_id: uuid.UUID
    command_id: uuid.UUID
    agent_id: uuid.UUID
    to: str
    caller_id: str
    queue_id: uuid.UUID
    queue_name: str
    ring_s: float = 30.0


class CallbackPlan(msgspec.Struct, kw_only=True):
    """A call the platform places to the customer: a callback, or an agent's outbound call (one attempt,
    agent first: the agent accepts its own call, then the number is dialled next to the agent's leg)."""

    number: str
    queue: str  # the queue's name in the flow
    kind: Literal["callback", "outbound"] = "callback"
    mode: str = "agent_first"
    max_attempts: int = 3
    retry_s: float = 300.0
    ring_s: float = 30.0
    caller_id: str = ""
    attempts: int = 0  # calls placed so far
    enqueue_at: float | None = None  # routing is asked then (a chosen time, or the next attempt)
    dialing: uuid.UUID | None = None  # the customer's call being placed (not yet answered)
    last_cause: str = ""

    @classmethod
    def of(cls, info: CallbackInfo, dialled: str) -> CallbackPlan:
        req, s = info.request, info.settings
        return cls(
            number=req.number,
            queue=req.queue,
            mode=s.callback_mode,
            max_attempts=s.callback_attempts,
            retry_s=float(s.callback_retry_seconds),
            ring_s=float(s.callback_ring_seconds),
            # The tenant's caller ID, or the number the customer called (theirs too).
            caller_id=s.caller_id or dialled,
            enqueue_at=req.at,
        )

    @classmethod
    def outbound(cls, number: str, caller_id: str, ring_s: float) -> CallbackPlan:
        return cls(
            number=number, queue="", kind="outbound", max_attempts=1, ring_s=ring_s, caller_id=caller_id
        )

    @property
    def failed_outcome(self) -> str:
        return "callback_failed" if self.kind == "callback" else "not_answered"

    @property
    def spent(self) -> bool:
        return self.attempts >= self.max_attempts


def attempt_call_id(contact_id: uuid.UUID, attempt: int) -> uuid.UUID:
    """The customer's call of one attempt: derived, so a step taken again dials the same call."""
    return uuid.uuid5(contact_id, f"callback:{attempt}")


# -- the Lifecycle's steps (functions of the machine, as in consult.py) -------------------------------


def awaits_customer(m: Lifecycle) -> bool:
    """A callback whose customer is not on the line (yet): nothing to play to, nobody to hang up."""
    return m.state.callback is not None and m.state.customer_call is None


def requested(m: Lifecycle, info: CallbackInfo, now: float) -> None:
    s, r = m.state, m.state.record
    if s.callback is not None or m.phase not in ("in_ivr", "queued"):
        return
    s.callback = plan = CallbackPlan.of(info, r.dialled)
    r.attributes["callback_number"] = plan.number
    detail = {"number": plan.number, "mode": plan.mode}
    if plan.enqueue_at is not None:
        detail["at"] = iso_utc(plan.enqueue_at)
    m._event("callback_requested", now, **detail)


def due(m: Lifecycle, now: float) -> None:
    """Routing says the contact reached the front of its queue."""
    s = m.state
    plan = s.callback
    if m.phase in ("in_ivr", "queued") and s.customer_call is None and not s.accepted:
        s.callback_due = True  # acted on once the caller has hung up
        return
    if plan is None or m.phase != "callback" or plan.dialing is not None:
        return
    s.callback_due = False
    if plan.mode == "customer_first":
        dial_customer(m, now, near=None)
        return
    # Agent first: offered like a call at its place; the customer is dialled on the accept.
    m._send(ev.RoutingSetVirtualHold(**m._stamp(), call_id=m.routing_id, on=False), "callback_offer")
    m._transition("queued", now, "callback_due")


def enqueue(m: Lifecycle, now: float) -> None:
    """A chosen time, or the next attempt after the retry gap: in line again (at the back)."""
    s, r = m.state, m.state.record
    plan = s.callback
    assert plan is not None
    plan.enqueue_at = None
    m._send(
        ev.RoutingCallback(
            **m._stamp(),
            call_id=m.routing_id,
            queue=plan.queue,
            queue_id=r.queue_id,
            number=plan.number,
            attributes=dict(r.attributes),
        ),
        "callback_enqueue",
    )
    m._event("callback_queued", now, attempt=str(plan.attempts + 1))


def dial_customer(m: Lifecycle, now: float, *, near: uuid.UUID | None) -> None:
    s = m.state
    plan = s.callback
    assert plan is not None
    plan.attempts += 1
    plan.dialing = attempt_call_id(m.contact_id, plan.attempts)
    m._event("callback_dialing", now, attempt=str(plan.attempts), number=plan.number)
    m._send(
        ev.MediaOriginate(
            **m._stamp(),
            call_id=plan.dialing,
            to=plan.number,
            caller_id=plan.caller_id,
            timeout=plan.ring_s,
            near_call_id=near,
        ),
        "callback_dial",
    )
    s.deadline = now + plan.ring_s + RING_SLACK_S


def customer_answered(m: Lifecycle, call: uuid.UUID, now: float) -> None:
    s, r = m.state, m.state.record
    plan = s.callback
    assert plan is not None
    plan.dialing = None
    s.customer_call = call
    s.deadline = None
    r.attributes["callback.attempts"] = str(plan.attempts)
    m._event("callback_answered", now, attempt=str(plan.attempts))
    if m.phase == "callback":
        # Customer first: they hear why we call, then wait at the front for the next agent.
        m._send(ev.MediaPlay(**m._stamp(), call_id=call, text=CALLBACK_GREETING), "greeting")
        m._send(ev.MediaPlay(**m._stamp(), call_id=call, tone="moh", loop=True), "moh")
        m._send(ev.RoutingSetVirtualHold(**m._stamp(), call_id=m.routing_id, on=False), "callback_offer")
        m._transition("queued", now, "callback_answered")
    elif m.phase == "offered" and s.accepted and s.leg_ready:
        m._bridge()
    else:
        m._send(ev.MediaHangup(**m._stamp(), call_id=call, cause="agent_gone"), "hangup_customer")


def missed(m: Lifecycle, now: float, cause: str) -> None:
    """Nobody took the customer's call (busy, declined, rang out, not dialled): free the agent, then a
    retry after the tenant's gap, or the final outcome once the attempts are spent."""
    s, r = m.state, m.state.record
    plan = s.callback
    assert plan is not None
    plan.dialing = None
    plan.last_cause = cause
    s.deadline = None
    m._event("callback_not_answered", now, attempt=str(plan.attempts), cause=cause)
    if m.phase == "offered" and s.accepted and r.agent_id is not None:
        agent = r.agent_id
        m._release_agent_media()
        m._send(ev.RoutingEnd(**m._stamp(), call_id=m.routing_id), "end")
        m._send(ev.RoutingWrapUpDone(**m._stamp(), agent_id=agent, call_id=m.routing_id), "wrap_up")
        missed = "callback_not_answered" if plan.kind == "callback" else "not_answered"
        m._desk(str(agent), "contact_ended", now=now, cause=missed, by="system")
        r.agent_id = None
        s.offer_id = s.offer_agent_id = None
    else:
        # Customer first: routing still holds the contact at the front.
        m._send(
            ev.RoutingCancel(**m._stamp(), call_id=m.routing_id, reason="callback_not_answered"),
            "cancel",
        )
    r.attributes["callback.attempts"] = str(plan.attempts)
    if plan.spent:
        m._finish("ended", now, plan.failed_outcome, cause=cause)
        return
    plan.enqueue_at = now + plan.retry_s
    s.deadline = plan.enqueue_at
    m._transition("callback", now, "callback_not_answered")
