"""hangup: an optional goodbye, then the end of the call (the caller was served by the flow)."""

from __future__ import annotations

from switchboard.flowdef.flow import Hangup

from ..call import Call

__all__ = ["after_prompt", "run"]


def run(call: Call, node: Hangup, now: float) -> None:
    call.prompt_first(node, now, after_prompt)


def after_prompt(call: Call, node: Hangup, now: float) -> None:
    call.hangup("self_served", "hangup", now)
