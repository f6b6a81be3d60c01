"""branch: the first rule whose condition holds names the next node, else the default."""

from __future__ import annotations

from switchboard.flowdef.flow import Branch

from ..call import Call
from ..conditions import evaluate

__all__ = ["run"]


def run(call: Call, node: Branch, now: float) -> None:
    for i, rule in enumerate(node.rules):
        if evaluate(call.flow, rule.when, call.state.attributes, now):
            call.go(rule.next, f"rule {i}", now)
            return
    call.go(node.default, "default", now)
