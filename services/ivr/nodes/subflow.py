"""subflow: run a named subflow, then come back to `next` (its `return` pops the frame; call.py's enter)."""

from __future__ import annotations

from switchboard.flowdef.flow import Subflow

from ..call import Call
from ..state import Frame

__all__ = ["run"]


def run(call: Call, node: Subflow, now: float) -> None:
    s = call.state
    s.stack.append(Frame(scope=s.scope, next=node.next))
    s.scope = node.flow
    call.exit("enter", now)
    call.enter(call.flow.subflows[node.flow].start, now)
