# Presence that matches reality: whether a signed-in agent's client still holds its socket.
#
# An agent signed in through a socket is "linked" to that socket's session. The API processes renew the
# link (AgentsPresent, every few seconds) and report a close without logout (AgentUnlinked). A lost link
# starts the tenant's grace (`link_grace_s`): the agent gets no new offers (it is away "disconnected"), its
# calls go on (the audio never went through the socket). Back in time (AgentLinked, or a renewal) it
# resumes as it was; not back, it is logged out: its seat is freed and a connected contact goes back in
# line at its place. A lease that is not renewed (the API process holding the socket died with it) counts
# as a lost link from the lease's end, so presence also survives a restart of the whole platform truthfully.
# Agents that never signed in through a socket (link None) are not watched.
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import agents
from .agent import Agent, Rejected
from .commands import AgentLinked, AgentsPresent, AgentUnlinked
from .model import DEFAULT_LINK_LEASE_S
from .timers import TimerKind

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["LEASE_S", "link", "linked", "on_link_timer", "present", "unlinked"]

# An API process renews its sockets' leases every 5 s (services/api/presence.py); three missed renewals
# mean the process is gone. Each report carries its lease (a process beating faster asks for less).
LEASE_S = DEFAULT_LINK_LEASE_S
LOST_REASON = "disconnected"


def _arm(ops: Engine, agent: Agent, when: float) -> None:
    agent.link_due = when
    ops.timers.arm(when, TimerKind.LINK, agent.agent_id)


def link(ops: Engine, agent: Agent, session_id: str, lease_s: float = LEASE_S) -> bool:
    """(Re)link the agent to a socket and renew its lease; True when the agent goes on as it was through
    this socket: it was lost and now resumes, or its client reconnected before the old socket's close
    reached us (the close is then stale and ignored, see `unlinked`)."""
    before, agent.link, agent.link_closed = agent.link, session_id, False
    _arm(ops, agent, ops.state.now + lease_s)
    if agent.link_lost_at is None:
        return before is not None and before != session_id
    agent.link_lost_at = None
    agent.away_reason, agent.away_before_lost = agent.away_before_lost, None
    agents.sync(ops, agent, "reconnected")
    return True


def _lose(ops: Engine, agent: Agent) -> None:
    now = ops.state.now
    agent.link_lost_at = now
    _arm(ops, agent, now + ops.state.config.link_grace_s)
    agent.away_before_lost = agent.away_reason
    agent.away_reason = LOST_REASON
    agents.sync(ops, agent, LOST_REASON)


def _summary(agent: Agent) -> dict[str, Any]:
    return {
        "logged_in": True,
        "state": agent.state.value,
        "reason": agent.reason,
        "offer_id": agent.offer_id,
        "contacts": [{"contact_id": s.contact_id, "phase": s.phase.value} for s in agent.slots.values()],
    }


def linked(ops: Engine, cmd: AgentLinked) -> Rejected | dict[str, Any]:
    agent = ops.state.agents.get(cmd.agent_id)
    if agent is None:
        return {"logged_in": False}
    resumed = link(ops, agent, cmd.session_id, cmd.lease_s)
    return {**_summary(agent), "resumed": resumed}


def unlinked(ops: Engine, cmd: AgentUnlinked) -> Rejected | dict[str, Any]:
    agent = ops.state.agents.get(cmd.agent_id)
    if agent is None or agent.link_lost_at is not None or agent.link not in (None, cmd.session_id):
        # Logged out, already lost, or a stale socket closing after the client reconnected elsewhere.
        return {"lost": False}
    _lose(ops, agent)
    agent.link_closed = True
    return {"lost": True, "grace_s": ops.state.config.link_grace_s}


def present(ops: Engine, cmd: AgentsPresent) -> Rejected | dict[str, Any]:
    """Renew the leases of the reported sockets. `signed_out`: the reported agents that are not signed in
    (a socket whose process could not report for longer than the lease and the grace: its agent was signed
    out meanwhile, and the event saying so may have been lost with it; the process tells the socket)."""
    renewed, signed_out = 0, []
    for agent_id, sessions in cmd.sessions.items():
        agent = ops.state.agents.get(agent_id)
        if agent is None:
            signed_out.append(agent_id)
            continue
        if agent.link is None:
            continue
        if agent.link_closed:
            # A beat counted before the socket's close may still name it: only another socket resumes.
            sessions = [s for s in sessions if s != agent.link]
        if agent.link in sessions:
            link(ops, agent, agent.link, cmd.lease_s)
        elif agent.link_lost_at is not None and sessions:
            link(ops, agent, sessions[0], cmd.lease_s)
        else:
            continue  # linked through another process's socket: that process renews it
        renewed += 1
    return {"renewed": renewed, "signed_out": sorted(signed_out)}


def on_link_timer(ops: Engine, agent_id: str) -> None:
    agent = ops.state.agents[agent_id]
    agent.link_due = None
    if agent.link_lost_at is None:
        _lose(ops, agent)  # the lease ran out: the socket's process is gone
        return
    agents.log_out(ops, agent, LOST_REASON)
