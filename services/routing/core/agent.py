# The agent state machine: states, the one transition table, the one place a state changes, and the
# per-channel capacity rule. An agent's work is a set of slots (one per contact offered, connected or in
# wrap-up); its state follows from those slots and its presence (available or away).
from __future__ import annotations

import msgspec

from .model import AgentProfile, Channel, FastEnum

__all__ = [
    "BUSY_STATES",
    "TRANSITIONS",
    "Agent",
    "AgentState",
    "Rejected",
    "Slot",
    "SlotPhase",
    "Transition",
    "can_take",
    "derive_state",
]


class AgentState(FastEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    AWAY = "away"
    RESERVED = "reserved"  # an offer is outstanding and nothing is connected
    ON_CONTACT = "on_contact"  # at least one contact connected
    WRAP_UP = "wrap_up"  # after-contact work, nothing connected or offered


S = AgentState
# Every legal move. The edges between busy states exist for agents holding several chats/emails at once
# (e.g. a chat ends while a second one is being offered: on_contact -> reserved).
TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.LOGGED_OUT: frozenset({S.AVAILABLE, S.AWAY}),
    S.AVAILABLE: frozenset({S.AWAY, S.RESERVED, S.LOGGED_OUT}),
    # away -> reserved: only a supervisor's pull offers a contact to an agent who is away (core/floor.py).
    S.AWAY: frozenset({S.AVAILABLE, S.AWAY, S.RESERVED, S.LOGGED_OUT}),
    S.RESERVED: frozenset({S.ON_CONTACT, S.AVAILABLE, S.AWAY, S.WRAP_UP, S.LOGGED_OUT}),
    S.ON_CONTACT: frozenset({S.WRAP_UP, S.AVAILABLE, S.AWAY, S.RESERVED, S.LOGGED_OUT}),
    S.WRAP_UP: frozenset({S.AVAILABLE, S.AWAY, S.LOGGED_OUT}),
}
BUSY_STATES = frozenset({S.RESERVED, S.ON_CONTACT, S.WRAP_UP})


class SlotPhase(FastEnum):
    OFFERED = "offered"
    CONNECTED = "connected"
    WRAP_UP = "wrap_up"


class Slot(msgspec.Struct, kw_only=True):
    contact_id: str
    queue_id: str
    channel: Channel
    phase: SlotPhase
    since: float
    connected_at: float | None = None
    wrap_until: float | None = None


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """A refused command or transition: nothing was applied."""

    code: str
    reason: str


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    old: AgentState
    new: AgentState
    reason: str | None


class Agent(msgspec.Struct, kw_only=True):
    """Run-time state of one logged-in agent (logged-out agents have no record)."""

    agent_id: str
    state: AgentState = AgentState.LOGGED_OUT
    reason: str | None = None
    since: float = 0.0
    login_at: float = 0.0
    # Longest-idle key: when the agent last became available after work or a break, or last accepted.
    last_work_at: float = 0.0
    # Seconds spent reserved/on contact/in wrap-up since login (least-occupied key).
    busy_s: float = 0.0
    slots: dict[str, Slot] = msgspec.field(default_factory=dict)
    offer_id: str | None = None
    # Set while the agent is (or asked to be, once free) away; None means available when free.
    away_reason: str | None = None
    # The client's socket (presence.py): its session id, when it was lost (None: linked), the away reason
    # to restore when it comes back, and the next link deadline (lease end, or grace end once lost).
    # link_closed: lost because that socket closed (not a lapsed lease), so that socket cannot come back.
    link: str | None = None
    link_lost_at: float | None = None
    link_closed: bool = False
    away_before_lost: str | None = None
    link_due: float | None = None

    def _set_state(self, new: AgentState, reason: str | None, now: float) -> Transition | Rejected:
        """The only place an agent's state changes. Illegal moves are refused, never applied."""
        old = self.state
        if new not in TRANSITIONS[old]:
            return Rejected(
                code="illegal_transition",
                reason=f"agent {self.agent_id} cannot go from {old.value} to {new.value}",
            )
        if old == new and reason == self.reason:
            return Rejected(
                code="illegal_transition", reason=f"agent {self.agent_id} is already {old.value} ({reason})"
            )
        if old in BUSY_STATES:
            self.busy_s += max(0.0, now - self.since)
        self.state = new
        self.reason = reason
        self.since = now
        return Transition(old=old, new=new, reason=reason)


def derive_state(agent: Agent) -> AgentState:
    """The state an agent's slots and presence call for (connected beats offered beats wrap-up)."""
    phases = {slot.phase for slot in agent.slots.values()}
    if SlotPhase.CONNECTED in phases:
        return S.ON_CONTACT
    if agent.offer_id is not None:
        return S.RESERVED
    if SlotPhase.WRAP_UP in phases:
        return S.WRAP_UP
    if agent.away_reason is not None:
        return S.AWAY
    return S.AVAILABLE


def can_take(agent: Agent, profile: AgentProfile, channel: Channel) -> bool:
    """Capacity rule: a voice contact needs an agent holding nothing and, while held, blocks everything
    else; other channels combine, each up to the agent's capacity for that channel. Offered, connected
    and wrap-up slots all count."""
    limit = profile.capacity.get(channel, 0)
    if limit < 1:
        return False
    if not agent.slots:
        return True
    if channel is Channel.VOICE:
        return False
    held = 0
    for slot in agent.slots.values():
        if slot.channel is Channel.VOICE:
            return False
        if slot.channel is channel:
            held += 1
    return held < limit
