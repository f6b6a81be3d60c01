"""transfer: to an outside number (media hands the call over and the IVR is done), or to a queue or an agent
through routing (music until an agent accepts)."""

from __future__ import annotations

from switchboard.flowdef.flow import Transfer

from services.kernel.events import MediaPlay, MediaTransfer, RoutingEnqueue

from ..call import Call
from ..state import Phase, next_id
from .queue import enqueue_command

__all__ = ["after_prompt", "run"]


def run(call: Call, node: Transfer, now: float) -> None:
    call.prompt_first(node, now, after_prompt)


def after_prompt(call: Call, node: Transfer, now: float) -> None:
    """Hand the call over."""
    s = call.state
    cmd: MediaTransfer | RoutingEnqueue
    if node.to == "number":
        cmd = MediaTransfer(tenant_id=s.tenant_id, call_id=s.call_id, to=node.target, id=next_id(s), ts=now)
    elif node.to == "agent":
        cmd = enqueue_command(call, "", now, preferred_agent_id=node.target)
    else:
        cmd = enqueue_command(call, node.target, now)
    call.emit(cmd)
    s.attributes["transfer"] = f"{node.to}:{node.target}"
    s.phase = Phase.transferring
    s.pending = None
    s.routing_id = cmd.id
    s.deadline = None
    if node.to == "number":
        call.finish("transferred", "transferred", now)
    else:
        call.exit("transferred", now)
        # Music until routing reports an agent took the call (ContactAccepted).
        call.emit(
            MediaPlay(tenant_id=s.tenant_id, call_id=s.call_id, tone="moh", loop=True, id=next_id(s), ts=now)
        )
