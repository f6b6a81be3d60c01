"""transfer: to an outside number (media hands the call over and the IVR is done), or to a queue or an agent
(handed back to the contact coordinator, which puts the caller in line)."""

from __future__ import annotations

from switchboard.flowdef.flow import Transfer

from services.kernel.events import MediaTransfer

from ..call import Call
from ..state import Phase, next_id
from .queue import enqueue_command, hand_back

__all__ = ["after_prompt", "run"]


def run(call: Call, node: Transfer, now: float) -> None:
    call.prompt_first(node, now, after_prompt)


def after_prompt(call: Call, node: Transfer, now: float) -> None:
    """Hand the call over: to an outside number (media), or to a queue or an agent (the IVR's step ends and
    the contact coordinator puts the caller in line, with music, nodes/queue.py)."""
    s = call.state
    s.pending = None
    s.deadline = None
    if node.to == "number":
        cmd = MediaTransfer(tenant_id=s.tenant_id, call_id=s.call_id, to=node.target, id=next_id(s), ts=now)
        call.emit(cmd)
        s.attributes["transfer"] = f"{node.to}:{node.target}"
        s.phase = Phase.transferring
        s.routing_id = cmd.id
        call.finish("transferred", "transferred", now)
        return
    if node.to == "agent":
        enqueue = enqueue_command(call, "", now, preferred_agent_id=node.target)
    else:
        enqueue = enqueue_command(call, node.target, now)
    s.attributes["transfer"] = f"{node.to}:{node.target}"
    call.exit("transferred", now)
    hand_back(call, enqueue, now, music=None, on_fail=node.on_fail or "")
