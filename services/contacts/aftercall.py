"""After the agent (docs/ivr.md, "After the agent"): the caller of a contact whose agent has left goes to an
IVR flow (the queue's post-call flow, or the agent's transfer to a flow) and the contact's record stays open
for what that flow learns (survey answers). Sans-IO functions of the `Lifecycle` (lifecycle.py), as in
consult.py: they take `now` and emit through the machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.kernel import events as ev

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = ["hand_over", "post_call_over", "survey_answered"]


def hand_over(m: Lifecycle, flow: str, now: float) -> None:
    """The agent has left; the caller, still on the line, goes to an IVR flow whose answers land on this
    contact's record (`ivr.survey_answered`, and the flow's attributes when it completes)."""
    s, r = m.state, m.state.record
    s.post_call = flow
    m._event("post_call_flow", now, flow=flow)
    m._send(
        ev.IvrRun(**m._stamp(), call_id=m.caller_call, flow=flow, caller=r.caller, dialled=r.dialled),
        "post_call",
    )


def survey_answered(m: Lifecycle, event: ev.IvrSurveyAnswered, now: float) -> None:
    r = m.state.record
    if event.call_id != m.caller_call:
        return
    r.attributes[f"survey.{event.question}"] = str(event.score)
    m._event("survey_answered", now, question=event.question, score=str(event.score), flow=event.flow)


def post_call_over(m: Lifecycle, now: float) -> None:
    """The caller left the post-call flow (hung up, or the flow hung up)."""
    s, r = m.state, m.state.record
    s.post_call = None
    if s.wrapped_early:
        m._finish("ended", now, r.outcome or "handled", cause=r.cause)
