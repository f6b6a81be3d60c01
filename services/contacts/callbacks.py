"""What a contact keeps while its caller waits to be called back (docs/routing.md, "Callbacks"), and the
tenant's settings for the calls the platform places. The decisions are the `Lifecycle`'s (lifecycle.py);
this module holds their data and the few pure rules about attempts.

Agent first (the default): when the contact reaches the front, routing offers it to an agent like a call;
on accept the customer is dialled through the tenant's trunk from the agent's media worker and bridged to
the agent once they answer. Customer first: the customer is dialled when the contact reaches the front;
once they answer they hear a short message and music, and the contact is offered to the next agent at its
place. An attempt nobody answers (busy, declined, ringing out, a failed dial) frees the agent, and the
contact goes back in line after the tenant's retry gap, until its attempts are spent: outcome
`callback_failed`.
"""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

from services.kernel import events as ev

__all__ = [
    "CALLBACK_GREETING",
    "CallbackInfo",
    "CallbackPlan",
    "CallingSettings",
    "DialInfo",
    "attempt_call_id",
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
