"""The IVR as a step of the contact: the coordinator answers the caller, then runs the number's flow in the
IVR (`ivr.run`) and follows it through the IVR's events until `ivr.completed` says how it ended. Sans-IO
functions of the `Lifecycle` (lifecycle.py), as in queue_wait.py: phases move only through its
`_transition`. Issue 22 item 4's step 2 (docs/architecture.md) lands here: the queue node's hand-back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.kernel import events as ev

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = ["completed", "node", "refused", "run_flow"]


def run_flow(m: Lifecycle) -> None:
    """The caller we answered is up: the number's flow runs in the IVR, once."""
    s = m.state
    if m.phase != "arrived" or not s.owns_media or s.deadline is None:
        return
    s.deadline = None
    s.owns_media = False  # the IVR talks to the caller while the flow runs
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
    if event.path:
        r.ivr_path = list(event.path)
    r.attributes.update(event.attributes)
    if m.phase == "in_ivr":
        r.ivr_s = round(now - r.arrived_at, 3)
        r.outcome = event.outcome  # final unless the caller is queued
        m._event("ivr_completed", now, outcome=event.outcome)
        if event.outcome == "callback" and m.state.callback is None:
            # A call back asked for without its request (an IVR older than ivr.callback_requested).
            m._finish("ended", now, "callback", cause="callback")
