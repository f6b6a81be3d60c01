"""set: attributes from templates, then the next node (the caller hears nothing)."""

from __future__ import annotations

from switchboard.flowdef.flow import SetNode

from ..call import Call
from ..conditions import render

__all__ = ["run"]


def run(call: Call, node: SetNode, now: float) -> None:
    attributes = call.state.attributes
    for name, value in node.attributes.items():
        attributes[name] = render(value, attributes)
    call.go(node.next, "set", now)
