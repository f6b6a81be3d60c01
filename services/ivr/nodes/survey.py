"""survey: one digit per question within its range (an answer out of range is skipped, not retried)."""

from __future__ import annotations

from switchboard.flowdef.flow import Survey

from services.kernel.events import IvrSurveyAnswered

from ..call import Call
from ..state import next_id

__all__ = ["answered", "run"]


def run(call: Call, node: Survey, now: float) -> None:
    call.collect(node.questions[call.state.sub].prompt, now, first=node.timeout)


def answered(call: Call, node: Survey, digits: str, now: float) -> None:
    s = call.state
    question = node.questions[s.sub]
    if len(digits) == 1 and digits.isdigit() and question.min <= int(digits) <= question.max:
        s.attributes[question.into] = digits
        call.emit(
            IvrSurveyAnswered(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                flow=s.flow,
                version=s.version,
                node=s.node,
                question=question.into,
                score=int(digits),
                min=question.min,
                max=question.max,
                id=next_id(s),
                ts=now,
            )
        )
    s.sub += 1
    if s.sub >= len(node.questions):
        call.go(node.next, "answered", now)
    else:
        run(call, node, now)
