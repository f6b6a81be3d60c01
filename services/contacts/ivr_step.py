"""The IVR as a step of the contact: the coordinator answers the caller, then runs the number's flow in the
IVR (`ivr.run`) and follows it through the IVR's events until `ivr.completed` says how it ended. A flow
that reaches a queue ends its step there: `ivr.completed` carries the queue and its terms
(`IvrQueueWait`), and the coordinator puts the caller in line and keeps them company (queue_wait.py),
continuing the flow with another `ivr.run` where the node says (docs/architecture.md, "One owner for the
caller"). Sans-IO functions of the `Lifecycle` (lifecycle.py), as in queue_wait.py: phases move only
through its `_transition`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from services.kernel import events as ev

from . import queue_wait
from .queue_wait import Waiting

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = ["completed", "enqueue_refused", "handed_back", "node", "refused", "run_flow"]


def run_flow(m: Lifecycle) -> None:
    """The caller we answered is up: the number's flow runs in the IVR, once."""
    s = m.state
    if m.phase != "arrived" or s.deadline is None:
        return
    s.deadline = None
    m._transition("in_ivr", m._now, "flow")
    m._send(
        ev.IvrRun(
            **m._stamp(),
            call_id=m.contact_id,
            flow_id=s.record.flow_id,
            caller=s.record.caller,
            dialled=s.record.dialled,
        ),
        "flow",
    )


def refused(m: Lifecycle, code: str | None, now: float) -> None:
    """The IVR could not run the number's flow (gone, no IVR): the caller is not left in silence."""
    m._apologize("no_flow", now, cause=f"flow_refused:{code}")


def node(m: Lifecycle, event: ev.IvrNodeEntered | ev.IvrNodeExited) -> None:
    """The caller's path through the flow and the digits pressed, for the record."""
    if m.phase != "in_ivr":
        return
    if isinstance(event, ev.IvrNodeEntered):
        m.state.record.ivr_path.append(event.node)
    elif event.digits:
        m.state.record.ivr_digits += event.digits


def completed(m: Lifecycle, event: ev.IvrCompleted, now: float) -> None:
    """How the flow ended (or a post-call flow: what it learned is added to the record)."""
    r = m.state.record
    if m.phase not in ("arrived", "in_ivr", "queued"):
        # The post-call flow's end: what it learned is added, the caller's first IVR visit is kept.
        for key, value in event.attributes.items():
            r.attributes.setdefault(key, value)
        m._event("post_call_completed", now, flow=event.flow, outcome=event.outcome)
        return
    if len(event.path) > len(r.ivr_path):  # a continued flow's path is its own part only
        r.ivr_path = list(event.path)
    r.attributes.update(event.attributes)
    if m.phase == "in_ivr":
        r.ivr_s = round(now - r.arrived_at, 3)
        m._event("ivr_completed", now, outcome=event.outcome)
        if event.queue is not None:
            handed_back(m, event.flow, event.queue, now)
            return
        r.outcome = event.outcome
        if event.outcome == "callback" and m.state.callback is None:
            # A call back asked for without its request (an IVR older than ivr.callback_requested).
            m._finish("ended", now, "callback", cause="callback")


def handed_back(m: Lifecycle, flow: str, wait: ev.IvrQueueWait, now: float) -> None:
    """The flow reached a queue: the caller hears the node's music and is put in line with its terms. The
    contact stays `in_ivr` until routing says it is queued (`contact.queued`)."""
    s = m.state
    s.flow_wait, s.flow_name = wait, flow
    s.waiting = Waiting(announce_every=wait.announce_every, language=wait.language)
    s.announce_at = now + wait.announce_every if wait.announce_every else None
    s.callback_offer_at = now + wait.callback_after if wait.callback_after is not None else None
    s.give_up_at = now + wait.max_wait if wait.max_wait is not None else None
    s.callback_offered = False
    queue_wait.music(m)
    enqueue = msgspec.structs.replace(wait.enqueue, **m._stamp(), call_id=m.contact_id)
    m._send(enqueue, "flow_enqueue")


def enqueue_refused(m: Lifecycle, code: str | None, now: float) -> None:
    """Routing would not put the flow's caller in line (no such queue, closed, ...): the flow continues at
    its fallback, as the IVR did with a refused command; with none, an apology."""
    if m.state.flow_wait is None:
        return
    queue_wait.continue_flow(m, "", now, f"enqueue_refused:{code}", reason=f"command failed: {code}")
