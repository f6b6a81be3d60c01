# A supervisor's hand on the line: move a waiting contact to the front of its queue, or pull it to one
# agent now. Service order is (-priority, arrival seq) (contact.line_key): the front is the highest
# priority with a seq below every other contact's, so the latest contact put first is served first, and
# the contact keeps that place through a later transfer or a requeue (the supervisor's decision stands).
# A pull offers the contact to the named agent outside the line's order and skill levels (the supervisor
# chose), even to an agent who is away (who is away from automatic offers, not from a supervisor's):
# the agent table allows away -> reserved for this alone.
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import agents, matching
from .agent import Rejected, can_take
from .commands import Prioritize
from .contact import ContactState
from .model import PRIORITY_MAX

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["prioritize"]


def prioritize(engine: Engine, cmd: Prioritize) -> Rejected | dict[str, Any]:
    st = engine.state
    c = st.contacts.get(cmd.contact_id)
    if c is None:
        return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
    if c.state is not ContactState.WAITING or c.virtual_hold:
        what = "on virtual hold" if c.virtual_hold else c.state.value
        return Rejected(code="not_waiting", reason=f"contact {c.contact_id!r} is {what}, not waiting in line")
    if cmd.agent_id is not None:
        return _pull(engine, cmd.agent_id, c.contact_id)
    engine.matcher.line_remove(c)
    c.seq = min(0, *(other.seq for other in st.contacts.values())) - 1
    c.base_priority = c.priority = PRIORITY_MAX
    engine.matcher.line_add(c)
    engine.matcher.mark(c.queue_id)  # everyone behind moved back one: positions are published again
    engine.dirty_contacts[c.contact_id] = None
    return {"contact_id": c.contact_id, "queue_id": c.queue_id, "position": engine.matcher.position(c)}


def _pull(engine: Engine, agent_id: str, contact_id: str) -> Rejected | dict[str, Any]:
    agent = agents.agent_or_reject(engine, agent_id)
    if isinstance(agent, Rejected):
        return agent
    c = engine.state.contacts[contact_id]
    profile = engine.matcher.profile(agent_id)
    if profile is None or c.queue_id not in profile.queues:
        return Rejected(
            code="agent_not_in_queue", reason=f"agent {agent_id!r} does not serve the contact's queue"
        )
    if agent.link_lost_at is not None or not engine.matcher.site_up(profile.site_id):
        return Rejected(
            code="agent_unreachable", reason=f"agent {agent_id!r} is disconnected or its site down"
        )
    if agent.offer_id is not None or not can_take(agent, profile, c.channel):
        return Rejected(
            code="agent_busy", reason=f"agent {agent_id!r} has no room for it now ({agent.state.value})"
        )
    matching.offer(engine, c, agent)
    return {"contact_id": c.contact_id, "queue_id": c.queue_id, "agent_id": agent_id, "offer_id": c.offer_id}
