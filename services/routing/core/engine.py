# The routing engine of one tenant: commands and timer ticks in (each with `now`), replies and outputs
# back. No I/O, no clock, no randomness: the same inputs from the same state give the same outputs, and
# the whole state snapshots to bytes.
#
# This class holds the state and what is derived from it (indexes, timers), numbers and times the
# outputs, fires timers, caches replies and configures; what the commands do is split by the part of the
# state they work on: agents.py, contacts.py, sites.py, matching.py (and presence.py, floor.py). Each is a
# set of functions over the engine, dispatched from the `_handlers` table.
from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from . import agents, contacts, floor, matching, presence, sites
from . import snapshot as snap
from .agent import AgentState, Rejected, SlotPhase
from .commands import (
    Accept,
    AgentLinked,
    AgentLogin,
    AgentLogout,
    AgentsPresent,
    AgentUnlinked,
    AnyCommand,
    Cancel,
    Configure,
    DrainSite,
    EndContact,
    Enqueue,
    LoseSite,
    Prioritize,
    Reject,
    Reply,
    RequestCallback,
    RestoreSite,
    Result,
    SetState,
    SetVirtualHold,
    TransferToQueue,
    WrapUpDone,
)
from .contact import IN_LINE, Contact, ContactState
from .matcher import Matcher
from .model import AgentProfile, QueueConfig, TenantConfig, validate_config
from .outputs import AgentStateChanged, Output, PositionChanged
from .schedule import is_open
from .state import RoutingState, SiteStatus
from .timers import Entry, TimerKind, Timers
from .wait_estimate import average_handle_time, expected_wait

__all__ = ["Engine"]


class Engine:
    """Routing core for one tenant. Drive it with `handle(command, now)` and, when `next_timer()` comes
    due, `handle_timer(now)`. Both return what happened, in order."""

    def __init__(
        self,
        state: RoutingState | None = None,
        *,
        max_replies: int | None = None,
        position_interval_s: float | None = None,
    ) -> None:
        self.state = state or RoutingState()
        self._out: list[Output] = []
        # Ordered sets (dicts) so that matching order never depends on hashing.
        self.dirty_contacts: dict[str, None] = {}
        self.dirty_agents: dict[str, None] = {}
        if max_replies is not None:
            self.state.max_replies = max_replies
        if position_interval_s is not None:
            self.state.position_interval_s = position_interval_s
        # Contacts that arrived in the current call: their expected-wait rules are checked once matching
        # is done, so a contact an agent takes at once never overflows on a pessimistic estimate.
        self.fresh: dict[str, None] = {}
        # Oldest first, mirroring the replies dict (whose order the snapshot keeps).
        self._reply_order: deque[str] = deque(self.state.replies)
        self._rebuild()

    def handle(self, cmd: AnyCommand, now: float) -> Result:
        self._begin()
        self._advance(now)
        prior = self.state.replies.get(cmd.id)
        if prior is not None:
            return Result(reply=prior, outputs=self._take(), duplicate=True)
        outcome = self._dispatch(cmd)
        matching.settle(self)
        reply = self._reply(cmd, outcome)
        self._remember(cmd.id, reply)
        return Result(reply=reply, outputs=self._take())

    def handle_timer(self, now: float) -> list[Output]:
        self._begin()
        self._advance(now)
        return self._take()

    def next_timer(self) -> float | None:
        """When `handle_timer` should next be called (None: nothing is armed)."""
        while (entry := self.timers.peek()) is not None:
            if self._timer_valid(entry):
                return entry[0]
            self.timers.pop()
        return None

    def snapshot(self) -> bytes:
        return snap.to_bytes(self.state)

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        return cls(snap.from_bytes(data))

    def to_dict(self) -> dict[str, Any]:
        return snap.to_dict(self.state)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Engine:
        return cls(snap.from_dict(data))

    def agent_state(self, agent_id: str) -> AgentState:
        agent = self.state.agents.get(agent_id)
        return agent.state if agent is not None else AgentState.LOGGED_OUT

    def position(self, contact_id: str) -> dict[str, Any] | None:
        """Where a contact is: its state, and if in line its position and expected wait."""
        c = self.state.contacts.get(contact_id)
        if c is None:
            return None
        out: dict[str, Any] = {"contact_id": c.contact_id, "queue_id": c.queue_id, "state": c.state.value}
        if c.state in IN_LINE:
            q = self.queues[c.queue_id]
            pos = self.matcher.position(c)
            out["position"] = pos
            out["expected_wait_s"] = matching.ewt(self, q, c, pos)
            out["virtual_hold"] = c.virtual_hold
        elif c.state is ContactState.OFFERED and c.offer_id in self.state.offers:
            # An offered contact's agent is on its offer, not on the contact.
            out["agent_id"] = self.state.offers[c.offer_id].agent_id
            out["offer_id"] = c.offer_id
        elif c.agent_id is not None:
            out["agent_id"] = c.agent_id
        return out

    def queue_status(self, queue_id: str) -> dict[str, Any] | None:
        """Waiting, longest wait, agents by state, staffing and expected wait for a new contact."""
        q = self.queues.get(queue_id)
        if q is None:
            return None
        now = self.state.now
        line = self.matcher.lines[queue_id]
        contacts = [self.state.contacts[cid] for cid in line]
        longest = max((now - c.arrived_at for c in contacts), default=0.0)
        staffed = self.matcher.staffed_slots(q, None)
        aht = average_handle_time(self.state.aht.get(queue_id, []), q.default_aht_s)
        agents = {
            s.value: n
            for s, n in sorted(self.matcher.by_state[queue_id].items(), key=lambda i: i[0].value)
            if n
        }
        return {
            "queue_id": queue_id,
            "open": is_open(q.schedule, now),
            "waiting": len(contacts),
            "on_virtual_hold": sum(1 for c in contacts if c.virtual_hold),
            "longest_wait_s": longest,
            "agents": agents,
            "ready": len(self.matcher.ready[queue_id]),
            "staffed_slots": staffed,
            "aht_s": aht,
            "expected_wait_s": expected_wait(len(contacts) + 1, aht, staffed, q.ewt_round_s),
        }

    # -- derived structures -----------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Rebuild every index and timer from the state (after restore or reconfiguration)."""
        st = self.state
        self._config_queues: dict[str, QueueConfig] = {q.queue_id: q for q in st.config.queues}
        self.queues: dict[str, QueueConfig] = {**st.retired_queues, **self._config_queues}
        self.profiles: dict[str, AgentProfile] = {a.agent_id: a for a in st.config.agents}
        self.matcher = Matcher(st, self.queues, self.profiles)
        self.matcher.rebuild()
        self.timers = Timers()
        for offer in st.offers.values():
            self.timers.arm(offer.expires_at, TimerKind.OFFER, offer.offer_id)
        for agent in st.agents.values():
            for slot in agent.slots.values():
                if slot.phase is SlotPhase.WRAP_UP and slot.wrap_until is not None:
                    self.timers.arm(slot.wrap_until, TimerKind.WRAP, agent.agent_id, slot.contact_id)
            if agent.link_due is not None:
                self.timers.arm(agent.link_due, TimerKind.LINK, agent.agent_id)
        for c in st.contacts.values():
            if c.next_check_at is not None:
                self.timers.arm(c.next_check_at, TimerKind.CONTACT, c.contact_id)
        if st.positions_due_at is not None:
            self.timers.arm(st.positions_due_at, TimerKind.POSITIONS, "")

    def state_queue(self, queue_id: str | None) -> QueueConfig | None:
        """A configured queue (not a retired one): the only kind a contact may enter."""
        return self._config_queues.get(queue_id) if queue_id is not None else None

    # -- outputs ----------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._out = []

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def emit(self, out: Output) -> None:
        # Numbered and timed here, in one place (building the struct with **kwargs is several times
        # slower in msgspec than with literal keywords, and this is on every path).
        self.state.next_seq += 1
        out.seq = self.state.next_seq
        out.at = self.state.now
        self._out.append(out)

    def emit_state_change(self, agent_id: str, old: str, new: str, reason: str | None) -> None:
        # Agent state changes are timed in distinct microseconds, in the order they happen: consumers order
        # an agent's states by time (reporting's facts, to the microsecond), and the changes of one step
        # (made available and offered at once) sharing a timestamp left their order to chance (a ringing
        # agent looked available, its offer counted as missed).
        out = AgentStateChanged(agent_id=agent_id, old=old, new=new, reason=reason)
        self.emit(out)
        st = self.state
        last_us = round(st.last_state_at * 1e6)
        if round(st.now * 1e6) <= last_us:
            out.at = (last_us + 1) / 1e6
        st.last_state_at = out.at

    def emit_position(self, c: Contact, position: int, ewt: int | None) -> None:
        self.emit(
            PositionChanged(
                contact_id=c.contact_id, queue_id=c.queue_id, position=position, expected_wait_s=ewt
            )
        )

    # -- timers -----------------------------------------------------------------------------------

    def _timer_valid(self, entry: Entry) -> bool:
        when, kind, key, key2 = entry
        st = self.state
        if kind == TimerKind.OFFER:
            offer = st.offers.get(key)
            return offer is not None and offer.expires_at == when
        if kind == TimerKind.WRAP:
            agent = st.agents.get(key)
            slot = agent.slots.get(key2) if agent is not None else None
            return slot is not None and slot.phase is SlotPhase.WRAP_UP and slot.wrap_until == when
        if kind == TimerKind.POSITIONS:
            return st.positions_due_at == when
        if kind == TimerKind.LINK:
            linked = st.agents.get(key)
            return linked is not None and linked.link_due == when
        c = st.contacts.get(key)
        return c is not None and c.next_check_at == when

    def timer_armed_for_offer(self, offer_id: str) -> bool:
        offer = self.state.offers.get(offer_id)
        return offer is not None and self.timers.is_armed(offer.expires_at, TimerKind.OFFER, offer_id)

    def _advance(self, now: float) -> None:
        """Move the clock to `now`, first firing every timer due on the way at its own time, so the
        outcome does not depend on how late the caller is. Timers due at the same instant are all
        applied before matching (two contacts widening together are matched in line order). Time never
        runs backwards inside the core, whatever the caller's clock does."""
        st = self.state
        target = max(st.now, float(now))
        while (entry := self.timers.peek()) is not None and entry[0] <= target:
            when = entry[0]
            st.now = max(st.now, when)
            while (entry := self.timers.peek()) is not None and entry[0] == when:
                self.timers.pop()
                if not self._timer_valid(entry):
                    continue
                _, kind, key, key2 = entry
                if kind == TimerKind.OFFER:
                    matching.on_offer_timeout(self, key)
                elif kind == TimerKind.WRAP:
                    agents.on_wrap_timer(self, key, key2)
                elif kind == TimerKind.CONTACT:
                    matching.on_contact_timer(self, key)
                elif kind == TimerKind.LINK:
                    presence.on_link_timer(self, key)
                else:
                    matching.on_positions_timer(self)
            matching.settle(self)
        st.now = target

    # -- command dispatch -------------------------------------------------------------------------

    def _dispatch(self, cmd: AnyCommand) -> Rejected | dict[str, Any]:
        handler = self._handlers.get(type(cmd))
        if handler is None:
            return Rejected(code="unknown_command", reason=f"unknown command {type(cmd).__name__}")
        outcome: Rejected | dict[str, Any] = handler(self, cmd)
        return outcome

    def _reply(self, cmd: AnyCommand, outcome: Rejected | dict[str, Any]) -> Reply:
        if isinstance(outcome, Rejected):
            return Reply(ok=False, code=outcome.code, reason=outcome.reason)
        contact_id = getattr(cmd, "contact_id", None)
        if (
            isinstance(cmd, (Enqueue, RequestCallback, TransferToQueue, SetVirtualHold))
            and contact_id is not None
        ):
            where = self.position(contact_id)
            if where is not None:
                outcome = {**outcome, **where}
        return Reply(ok=True, data=outcome)

    def _remember(self, command_id: str, reply: Reply) -> None:
        replies = self.state.replies
        replies[command_id] = reply
        self._reply_order.append(command_id)
        while len(replies) > self.state.max_replies:
            del replies[self._reply_order.popleft()]

    # -- configuration ----------------------------------------------------------------------------

    def _configure(self, cmd: Configure) -> Rejected | dict[str, Any]:
        try:
            # Normalise (ints given for floats, lists for tuples) so snapshots round-trip byte for byte.
            cfg = msgspec.convert(msgspec.to_builtins(cmd.config), TenantConfig)
        except (msgspec.ValidationError, TypeError) as exc:
            return Rejected(code="invalid_config", reason=f"configuration is malformed: {exc}")
        if err := validate_config(cfg):
            return Rejected(code="invalid_config", reason=err)
        st = self.state
        new_queues = {q.queue_id: q for q in cfg.queues}
        new_profiles = {a.agent_id: a for a in cfg.agents}
        # Contacts of removed queues: waiting or offered ones are given back to the caller of routing
        # (abandoned, reason queue_removed); connected ones finish under the retired queue config.
        for c in sorted(st.contacts.values(), key=lambda c: c.seq):
            if c.queue_id in new_queues:
                continue
            if c.state is ContactState.OFFERED:
                contacts.abandon_offered(self, c, "queue_removed")
            elif c.state in IN_LINE:
                self.matcher.line_remove(c)
                contacts.drop(self, c, "queue_removed")
        old_queues = dict(self.queues)
        referenced = {c.queue_id for c in st.contacts.values()} | {
            slot.queue_id for a in st.agents.values() for slot in a.slots.values()
        }
        st.retired_queues = {
            qid: q for qid, q in old_queues.items() if qid not in new_queues and qid in referenced
        }
        old_profiles = {**st.stale_profiles, **self.profiles}
        st.stale_profiles = {
            aid: old_profiles[aid] for aid in st.agents if aid not in new_profiles and aid in old_profiles
        }
        st.site_status = {s.site_id: st.site_status.get(s.site_id, SiteStatus.UP) for s in cfg.sites}
        st.config = cfg
        for c in st.contacts.values():
            q = new_queues.get(c.queue_id)
            if q is not None and c.state in IN_LINE:
                c.priority = contacts.priority_for(self, q, c.base_priority, c.attributes)
        self._rebuild()
        for qid in self.queues:
            self.matcher.mark(qid)
        for c in sorted(st.contacts.values(), key=lambda c: c.seq):
            if c.state in IN_LINE:
                matching.refresh_contact(self, c, force_levels=True)
        for agent in list(st.agents.values()):
            agents.sync(self, agent, "config_changed")
        self.dirty_agents.update(dict.fromkeys(st.agents))
        return {"queues": len(cfg.queues), "agents": len(cfg.agents), "seats": cfg.seats}

    # One handler per command: the concept modules' functions, and this class's own for configuration.
    _handlers: dict[type, Any] = {
        Configure: _configure,
        Enqueue: contacts.enqueue,
        RequestCallback: contacts.request_callback,
        Cancel: contacts.cancel,
        EndContact: contacts.end,
        AgentLogin: agents.login,
        AgentLogout: agents.logout,
        AgentLinked: presence.linked,
        AgentUnlinked: presence.unlinked,
        AgentsPresent: presence.present,
        SetState: agents.set_state,
        Accept: agents.accept,
        Reject: agents.reject,
        WrapUpDone: agents.wrap_up_done,
        TransferToQueue: contacts.transfer,
        SetVirtualHold: contacts.virtual_hold,
        Prioritize: floor.prioritize,
        DrainSite: sites.drain,
        LoseSite: sites.lose,
        RestoreSite: sites.restore,
    }
