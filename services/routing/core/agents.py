# Agents over the routing state: the agent commands (log in and out, away and available, accept, reject,
# wrap-up done) and the moves on an agent every path shares (its state following its work and presence,
# wrap-up, a forced log out). An agent's states and their table are in agent.py.
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import contacts, matching, presence
from .agent import Agent, AgentState, Rejected, Slot, SlotPhase, Transition, derive_state
from .commands import (
    Accept,
    AgentLogin,
    AgentLogout,
    Reject,
    SetState,
    WrapUpDone,
)
from .contact import ContactState, Offer
from .model import (
    SYSTEM_AWAY_REASONS,
)
from .outputs import (
    ContactAccepted,
    ContactWrappedUp,
)
from .state import SiteStatus
from .timers import TimerKind
from .wait_estimate import record_handle_time

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "accept",
    "after_transition",
    "agent_or_reject",
    "finish_wrap",
    "log_out",
    "login",
    "logout",
    "offer_of",
    "on_wrap_timer",
    "reject",
    "set_state",
    "start_wrap",
    "sync",
    "valid_reason",
    "wrap_up_done",
]


def on_wrap_timer(e: Engine, agent_id: str, contact_id: str) -> None:
    agent = e.state.agents[agent_id]
    finish_wrap(e, agent, agent.slots[contact_id])
    sync(e, agent, "wrap_up_timeout")


def after_transition(e: Engine, agent: Agent, t: Transition) -> None:
    e.emit_state_change(agent.agent_id, t.old.value, t.new.value, t.reason)
    e.matcher.agent_changed(agent.agent_id)
    e.dirty_agents[agent.agent_id] = None


def sync(e: Engine, agent: Agent, cause: str) -> None:
    """Move the agent to the state its work and presence call for, then re-index it."""
    new = derive_state(agent)
    reason = agent.away_reason if new is AgentState.AWAY else cause
    if new is not agent.state or (new is AgentState.AWAY and agent.reason != reason):
        t = agent._set_state(new, reason, e.state.now)
        if isinstance(t, Rejected):
            raise RuntimeError(f"routing core bug: {t.reason}")
        if new is AgentState.AVAILABLE and t.old is not AgentState.RESERVED:
            agent.last_work_at = e.state.now
        after_transition(e, agent, t)
        return
    e.matcher.agent_changed(agent.agent_id)
    e.dirty_agents[agent.agent_id] = None


def valid_reason(e: Engine, reason: str) -> Rejected | None:
    if reason in e.state.config.away_reasons:
        return None
    allowed = ", ".join(e.state.config.away_reasons) or "(none configured)"
    if reason in SYSTEM_AWAY_REASONS:
        return Rejected(
            code="unknown_reason",
            reason=f"reason {reason!r} is set by the system only; use one of: {allowed}",
        )
    return Rejected(code="unknown_reason", reason=f"unknown away reason {reason!r}; use one of: {allowed}")


def agent_or_reject(e: Engine, agent_id: str) -> Agent | Rejected:
    agent = e.state.agents.get(agent_id)
    if agent is not None:
        return agent
    if agent_id in e.profiles:
        return Rejected(code="not_logged_in", reason=f"agent {agent_id!r} is logged out: log in first")
    return Rejected(code="unknown_agent", reason=f"agent {agent_id!r} does not exist")


def login(e: Engine, cmd: AgentLogin) -> Rejected | dict[str, Any]:
    st = e.state
    profile = e.profiles.get(cmd.agent_id)
    if profile is None:
        return Rejected(code="unknown_agent", reason=f"agent {cmd.agent_id!r} does not exist")
    if cmd.agent_id in st.agents:
        state = st.agents[cmd.agent_id].state.value
        return Rejected(
            code="already_logged_in", reason=f"agent {cmd.agent_id!r} is already logged in ({state})"
        )
    if cmd.away_reason is not None and (err := valid_reason(e, cmd.away_reason)):
        return err
    if profile.site_id is not None and st.site_status.get(profile.site_id) is SiteStatus.LOST:
        return Rejected(
            code="site_down", reason=f"site {profile.site_id!r} of agent {cmd.agent_id!r} is down"
        )
    seats = st.config.seats
    if len(st.agents) >= seats:
        return Rejected(
            code="no_seats",
            reason=f"all {seats} seats are in use ({len(st.agents)} agents logged in): "
            "buy more seats or log another agent out",
        )
    now = st.now
    agent = Agent(
        agent_id=cmd.agent_id, since=now, login_at=now, last_work_at=now, away_reason=cmd.away_reason
    )
    st.agents[agent.agent_id] = agent
    sync(e, agent, "login")
    if cmd.session_id is not None:
        presence.link(e, agent, cmd.session_id)
    return {"state": agent.state.value, "seats": seats, "logged_in": len(st.agents)}


def logout(e: Engine, cmd: AgentLogout) -> Rejected | dict[str, Any]:
    agent = agent_or_reject(e, cmd.agent_id)
    if isinstance(agent, Rejected):
        return agent
    connected = sum(1 for s in agent.slots.values() if s.phase is SlotPhase.CONNECTED)
    if connected and not cmd.force:
        return Rejected(
            code="busy",
            reason=f"agent {cmd.agent_id!r} has {connected} connected contact(s): end or transfer them "
            "first, or log out with force (they go back in line at their place)",
        )
    log_out(e, agent, "logout")
    return {}


def set_state(e: Engine, cmd: SetState) -> Rejected | dict[str, Any]:
    agent = agent_or_reject(e, cmd.agent_id)
    if isinstance(agent, Rejected):
        return agent
    free = agent.state in (AgentState.AVAILABLE, AgentState.AWAY)
    if cmd.state == "away":
        if cmd.reason is None:
            allowed = ", ".join(e.state.config.away_reasons)
            return Rejected(code="invalid", reason=f"going away needs a reason code: one of {allowed}")
        if err := valid_reason(e, cmd.reason):
            return err
        if free:
            t = agent._set_state(AgentState.AWAY, cmd.reason, e.state.now)
            if isinstance(t, Rejected):
                return t
            agent.away_reason = cmd.reason
            after_transition(e, agent, t)
            return {"state": agent.state.value}
        # Busy: the agent goes away as soon as its work ends, and gets no new offers meanwhile.
        agent.away_reason = cmd.reason
        sync(e, agent, "away_requested")
        return {"state": agent.state.value, "pending": True}
    if free:
        t = agent._set_state(AgentState.AVAILABLE, cmd.reason or "available", e.state.now)
        if isinstance(t, Rejected):
            return t
        agent.away_reason = None
        agent.last_work_at = e.state.now
        after_transition(e, agent, t)
        return {"state": agent.state.value}
    if agent.away_reason is not None:
        agent.away_reason = None
        sync(e, agent, "away_cancelled")
        return {"state": agent.state.value, "pending": False}
    return Rejected(
        code="busy",
        reason=f"agent {cmd.agent_id!r} is {agent.state.value}: it becomes available when its work ends",
    )


def offer_of(e: Engine, agent_id: str, offer_id: str) -> tuple[Agent, Offer] | Rejected:
    agent = agent_or_reject(e, agent_id)
    if isinstance(agent, Rejected):
        return agent
    offer = e.state.offers.get(offer_id)
    if offer is None:
        return Rejected(
            code="unknown_offer",
            reason=f"offer {offer_id!r} is not outstanding (answered, rejected, expired or withdrawn)",
        )
    if offer.agent_id != agent_id:
        return Rejected(code="not_your_offer", reason=f"offer {offer_id!r} was made to another agent")
    return agent, offer


def accept(e: Engine, cmd: Accept) -> Rejected | dict[str, Any]:
    found = offer_of(e, cmd.agent_id, cmd.offer_id)
    if isinstance(found, Rejected):
        return found
    agent, offer = found
    st = e.state
    now = st.now
    c = st.contacts[offer.contact_id]
    del st.offers[offer.offer_id]
    c.state = ContactState.CONNECTED
    c.offer_id = None
    c.agent_id = agent.agent_id
    slot = agent.slots[c.contact_id]
    slot.phase = SlotPhase.CONNECTED
    slot.connected_at = now
    slot.since = now
    agent.offer_id = None
    agent.last_work_at = now
    e.emit(
        ContactAccepted(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            agent_id=agent.agent_id,
            offer_id=offer.offer_id,
            waited_s=now - c.arrived_at,
        )
    )
    sync(e, agent, "accepted")
    return {"contact_id": c.contact_id, "queue_id": c.queue_id}


def reject(e: Engine, cmd: Reject) -> Rejected | dict[str, Any]:
    found = offer_of(e, cmd.agent_id, cmd.offer_id)
    if isinstance(found, Rejected):
        return found
    agent, offer = found
    # A declined offer is a missed one: "missed" (otherwise the system's own) is allowed here.
    reason = cmd.away_reason
    if reason is not None and reason not in SYSTEM_AWAY_REASONS and (err := valid_reason(e, reason)):
        return err
    c = e.state.contacts[offer.contact_id]
    # Not offered to this agent again while it waits in this queue.
    c.rejected_by.append(agent.agent_id)
    matching.withdraw_offer(e, c, "rejected", requeue=True)
    if cmd.away_reason is not None:
        agent.away_reason = cmd.away_reason
    sync(e, agent, "rejected")
    return {"state": agent.state.value}


def wrap_up_done(e: Engine, cmd: WrapUpDone) -> Rejected | dict[str, Any]:
    agent = agent_or_reject(e, cmd.agent_id)
    if isinstance(agent, Rejected):
        return agent
    slots = [
        s
        for s in agent.slots.values()
        if s.phase is SlotPhase.WRAP_UP and (cmd.contact_id is None or s.contact_id == cmd.contact_id)
    ]
    if not slots:
        what = f" contact {cmd.contact_id!r}" if cmd.contact_id else ""
        return Rejected(code="not_in_wrap_up", reason=f"agent {cmd.agent_id!r} is not wrapping up{what}")
    for slot in slots:
        finish_wrap(e, agent, slot)
    sync(e, agent, "wrap_up_done")
    return {"state": agent.state.value}


def start_wrap(e: Engine, agent: Agent, slot: Slot, cause: str) -> None:
    q = e.queues.get(slot.queue_id)
    wrap = q.wrap_up_s if q is not None else 0.0
    if wrap > 0:
        slot.phase = SlotPhase.WRAP_UP
        slot.wrap_until = e.state.now + wrap
        e.timers.arm(slot.wrap_until, TimerKind.WRAP, agent.agent_id, slot.contact_id)
    else:
        finish_wrap(e, agent, slot)
    sync(e, agent, cause)


def finish_wrap(e: Engine, agent: Agent, slot: Slot) -> None:
    """The agent is done with a contact: its handle time (accept to end of wrap-up) feeds the AHT."""
    del agent.slots[slot.contact_id]
    start = slot.connected_at if slot.connected_at is not None else slot.since
    handle = e.state.now - start
    q = e.queues.get(slot.queue_id)
    if q is not None:
        record_handle_time(e.state.aht.setdefault(q.queue_id, []), handle, q.aht_window)
        e.matcher.mark(q.queue_id)
    e.emit(
        ContactWrappedUp(
            contact_id=slot.contact_id, queue_id=slot.queue_id, agent_id=agent.agent_id, handle_s=handle
        )
    )


def log_out(e: Engine, agent: Agent, cause: str) -> None:
    """Log an agent out now: an outstanding offer and any connected contacts go back in line at their
    place, wrap-up ends."""
    st = e.state
    if agent.offer_id is not None:
        offer = st.offers[agent.offer_id]
        # Not "withdrawn" (that is the caller leaving): the contact coordinator puts it back in line.
        matching.withdraw_offer(
            e, st.contacts[offer.contact_id], f"agent_{cause}", requeue=True, requeue_reason=cause
        )
    for slot in list(agent.slots.values()):
        if slot.phase is SlotPhase.CONNECTED:
            del agent.slots[slot.contact_id]
            contacts.requeue(e, st.contacts[slot.contact_id], cause)
        else:
            finish_wrap(e, agent, slot)
    agent.away_reason = None
    t = agent._set_state(AgentState.LOGGED_OUT, cause, st.now)
    if isinstance(t, Rejected):
        raise RuntimeError(f"routing core bug: {t.reason}")
    e.emit_state_change(agent.agent_id, t.old.value, t.new.value, cause)
    del st.agents[agent.agent_id]
    st.stale_profiles.pop(agent.agent_id, None)
    e.matcher.agent_changed(agent.agent_id)
    for c in e.matcher.preferring_contacts(agent.agent_id):
        if c.state is ContactState.WAITING:
            matching.refresh_contact(e, c)
