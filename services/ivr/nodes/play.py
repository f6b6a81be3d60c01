"""play: a prompt, then the next node."""

from __future__ import annotations

from switchboard.flowdef.flow import Play

from ..call import Call
from ..state import GoTo

__all__ = ["run"]


def run(call: Call, node: Play, now: float) -> None:
    call.play(node.prompt, GoTo(node=node.next), now, interruptible=node.interruptible)
