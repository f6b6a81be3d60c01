# Shared mechanics of the routing engine: output and timer plumbing, the agent commands, and the moves
# every path reuses (offer, withdraw, end, wrap-up, log out). engine.py builds on this with the contact,
# site and configuration commands and the matching loop.
from __future__ import annotations

from typing import Any

from . import presence
from .agent import Agent, AgentState, Rejected, Slot, SlotPhase, Transition, derive_state
from .commands import Accept, AgentLogin, AgentLogout, Reject, SetState, WrapUpDone
from .contact import Contact, ContactState, Offer
from .expansion import levels_for
from .matcher import Matcher
from .model import PRIORITY_MAX, PRIORITY_MIN, SYSTEM_AWAY_REASONS, AgentProfile, QueueConfig, Strategy
from .outputs import (
    AgentStateChanged,
    ContactAbandoned,
    ContactAccepted,
    ContactEnded,
    ContactOffered,
    ContactRejected,
    ContactRequeued,
    ContactWrappedUp,
    Output,
    PositionChanged,
)
from .state import RoutingState, SiteStatus
from .timers import Entry, TimerKind, Timers
from .wait_estimate import record_handle_time

__all__ = ["Operations"]


class Operations:
    def __init__(self, state: RoutingState) -> None:
        self.state = state
        self._out: list[Output] = []
        # Ordered sets (dicts) so that matching order never depends on hashing.
        self.dirty_contacts: dict[str, None] = {}
        self.dirty_agents: dict[str, None] = {}
        self._rebuild()

    # -- hooks the engine provides ----------------------------------------------------------------

    def _settle(self) -> None:
        raise NotImplementedError

    def _refresh_contact(self, c: Contact, *, force_levels: bool = False) -> None:
        raise NotImplementedError

    def _on_contact_timer(self, contact_id: str) -> None:
        raise NotImplementedError

    def _on_positions_timer(self) -> None:
        raise NotImplementedError

    # -- derived structures -----------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Rebuild every index and timer from the state (after restore or reconfiguration)."""
        st = self.state
        self._config_queues: dict[str, QueueConfig] = {q.queue_id: q for q in st.config.queues}
        self.queues: dict[str, QueueConfig] = {**st.retired_queues, **self._config_queues}
        self.profiles: dict[str, AgentProfile] = {a.agent_id: a for a in st.config.agents}
        self.matcher = Matcher(st, self.queues, self.profiles)
        self.matcher.rebuild()
        self._timers = Timers()
        for offer in st.offers.values():
            self._timers.arm(offer.expires_at, TimerKind.OFFER, offer.offer_id)
        for agent in st.agents.values():
            for slot in agent.slots.values():
                if slot.phase is SlotPhase.WRAP_UP and slot.wrap_until is not None:
                    self._timers.arm(slot.wrap_until, TimerKind.WRAP, agent.agent_id, slot.contact_id)
            if agent.link_due is not None:
                self._timers.arm(agent.link_due, TimerKind.LINK, agent.agent_id)
        for c in st.contacts.values():
            if c.next_check_at is not None:
                self._timers.arm(c.next_check_at, TimerKind.CONTACT, c.contact_id)
        if st.positions_due_at is not None:
            self._timers.arm(st.positions_due_at, TimerKind.POSITIONS, "")

    def state_queue(self, queue_id: str | None) -> QueueConfig | None:
        """A configured queue (not a retired one): the only kind a contact may enter."""
        return self._config_queues.get(queue_id) if queue_id is not None else None

    # -- outputs ----------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._out = []

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _emit(self, out: Output) -> None:
        # Numbered and timed here, in one place (building the struct with **kwargs is several times
        # slower in msgspec than with literal keywords, and this is on every path).
        self.state.next_seq += 1
        out.seq = self.state.next_seq
        out.at = self.state.now
        self._out.append(out)

    def _emit_state_change(self, agent_id: str, old: str, new: str, reason: str | None) -> None:
        # Agent state changes are timed in distinct microseconds, in the order they happen: consumers order
        # an agent's states by time (reporting's facts, to the microsecond), and the changes of one step
        # (made available and offered at once) sharing a timestamp left their order to chance (a ringing
        # agent looked available, its offer counted as missed).
        out = AgentStateChanged(agent_id=agent_id, old=old, new=new, reason=reason)
        self._emit(out)
        st = self.state
        last_us = round(st.last_state_at * 1e6)
        if round(st.now * 1e6) <= last_us:
            out.at = (last_us + 1) / 1e6
        st.last_state_at = out.at

    def _emit_position(self, c: Contact, position: int, ewt: int | None) -> None:
        self._emit(
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
        return offer is not None and self._timers.is_armed(offer.expires_at, TimerKind.OFFER, offer_id)

    def _advance(self, now: float) -> None:
        """Move the clock to `now`, first firing every timer due on the way at its own time, so the
        outcome does not depend on how late the caller is. Timers due at the same instant are all
        applied before matching (two contacts widening together are matched in line order). Time never
        runs backwards inside the core, whatever the caller's clock does."""
        st = self.state
        target = max(st.now, float(now))
        while (entry := self._timers.peek()) is not None and entry[0] <= target:
            when = entry[0]
            st.now = max(st.now, when)
            while (entry := self._timers.peek()) is not None and entry[0] == when:
                self._timers.pop()
                if not self._timer_valid(entry):
                    continue
                _, kind, key, key2 = entry
                if kind == TimerKind.OFFER:
                    self._on_offer_timeout(key)
                elif kind == TimerKind.WRAP:
                    self._on_wrap_timer(key, key2)
                elif kind == TimerKind.CONTACT:
                    self._on_contact_timer(key)
                elif kind == TimerKind.LINK:
                    presence.on_link_timer(self, key)
                else:
                    self._on_positions_timer()
            self._settle()
        st.now = target

    def _on_offer_timeout(self, offer_id: str) -> None:
        """Ring-no-answer: the agent goes away ("missed"), the contact back to its original place."""
        offer = self.state.offers[offer_id]
        agent = self.state.agents[offer.agent_id]
        self._withdraw_offer(self.state.contacts[offer.contact_id], "no_answer", requeue=True)
        if agent.away_reason is None:
            agent.away_reason = "missed"
        self._sync_agent(agent, "no_answer")

    def _on_wrap_timer(self, agent_id: str, contact_id: str) -> None:
        agent = self.state.agents[agent_id]
        self._finish_wrap(agent, agent.slots[contact_id])
        self._sync_agent(agent, "wrap_up_timeout")

    # -- agent state ------------------------------------------------------------------------------

    def _after_transition(self, agent: Agent, t: Transition) -> None:
        self._emit_state_change(agent.agent_id, t.old.value, t.new.value, t.reason)
        self.matcher.agent_changed(agent.agent_id)
        self.dirty_agents[agent.agent_id] = None

    def _sync_agent(self, agent: Agent, cause: str) -> None:
        """Move the agent to the state its work and presence call for, then re-index it."""
        new = derive_state(agent)
        reason = agent.away_reason if new is AgentState.AWAY else cause
        if new is not agent.state or (new is AgentState.AWAY and agent.reason != reason):
            t = agent._set_state(new, reason, self.state.now)
            if isinstance(t, Rejected):
                raise RuntimeError(f"routing core bug: {t.reason}")
            if new is AgentState.AVAILABLE and t.old is not AgentState.RESERVED:
                agent.last_work_at = self.state.now
            self._after_transition(agent, t)
            return
        self.matcher.agent_changed(agent.agent_id)
        self.dirty_agents[agent.agent_id] = None

    def _valid_reason(self, reason: str) -> Rejected | None:
        if reason in self.state.config.away_reasons:
            return None
        allowed = ", ".join(self.state.config.away_reasons) or "(none configured)"
        if reason in SYSTEM_AWAY_REASONS:
            return Rejected(
                code="unknown_reason",
                reason=f"reason {reason!r} is set by the system only; use one of: {allowed}",
            )
        return Rejected(
            code="unknown_reason", reason=f"unknown away reason {reason!r}; use one of: {allowed}"
        )

    def _agent_or_reject(self, agent_id: str) -> Agent | Rejected:
        agent = self.state.agents.get(agent_id)
        if agent is not None:
            return agent
        if agent_id in self.profiles:
            return Rejected(code="not_logged_in", reason=f"agent {agent_id!r} is logged out: log in first")
        return Rejected(code="unknown_agent", reason=f"agent {agent_id!r} does not exist")

    # -- agent commands ---------------------------------------------------------------------------

    def _login(self, cmd: AgentLogin) -> Rejected | dict[str, Any]:
        st = self.state
        profile = self.profiles.get(cmd.agent_id)
        if profile is None:
            return Rejected(code="unknown_agent", reason=f"agent {cmd.agent_id!r} does not exist")
        if cmd.agent_id in st.agents:
            state = st.agents[cmd.agent_id].state.value
            return Rejected(
                code="already_logged_in", reason=f"agent {cmd.agent_id!r} is already logged in ({state})"
            )
        if cmd.away_reason is not None and (err := self._valid_reason(cmd.away_reason)):
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
        self._sync_agent(agent, "login")
        if cmd.session_id is not None:
            presence.link(self, agent, cmd.session_id)
        return {"state": agent.state.value, "seats": seats, "logged_in": len(st.agents)}

    def _logout(self, cmd: AgentLogout) -> Rejected | dict[str, Any]:
        agent = self._agent_or_reject(cmd.agent_id)
        if isinstance(agent, Rejected):
            return agent
        connected = sum(1 for s in agent.slots.values() if s.phase is SlotPhase.CONNECTED)
        if connected and not cmd.force:
            return Rejected(
                code="busy",
                reason=f"agent {cmd.agent_id!r} has {connected} connected contact(s): end or transfer them "
                "first, or log out with force (they go back in line at their place)",
            )
        self._log_out(agent, "logout")
        return {}

    def _set_state_cmd(self, cmd: SetState) -> Rejected | dict[str, Any]:
        agent = self._agent_or_reject(cmd.agent_id)
        if isinstance(agent, Rejected):
            return agent
        free = agent.state in (AgentState.AVAILABLE, AgentState.AWAY)
        if cmd.state == "away":
            if cmd.reason is None:
                allowed = ", ".join(self.state.config.away_reasons)
                return Rejected(code="invalid", reason=f"going away needs a reason code: one of {allowed}")
            if err := self._valid_reason(cmd.reason):
                return err
            if free:
                t = agent._set_state(AgentState.AWAY, cmd.reason, self.state.now)
                if isinstance(t, Rejected):
                    return t
                agent.away_reason = cmd.reason
                self._after_transition(agent, t)
                return {"state": agent.state.value}
            # Busy: the agent goes away as soon as its work ends, and gets no new offers meanwhile.
            agent.away_reason = cmd.reason
            self._sync_agent(agent, "away_requested")
            return {"state": agent.state.value, "pending": True}
        if free:
            t = agent._set_state(AgentState.AVAILABLE, cmd.reason or "available", self.state.now)
            if isinstance(t, Rejected):
                return t
            agent.away_reason = None
            agent.last_work_at = self.state.now
            self._after_transition(agent, t)
            return {"state": agent.state.value}
        if agent.away_reason is not None:
            agent.away_reason = None
            self._sync_agent(agent, "away_cancelled")
            return {"state": agent.state.value, "pending": False}
        return Rejected(
            code="busy",
            reason=f"agent {cmd.agent_id!r} is {agent.state.value}: it becomes available when its work ends",
        )

    def _offer_of(self, agent_id: str, offer_id: str) -> tuple[Agent, Offer] | Rejected:
        agent = self._agent_or_reject(agent_id)
        if isinstance(agent, Rejected):
            return agent
        offer = self.state.offers.get(offer_id)
        if offer is None:
            return Rejected(
                code="unknown_offer",
                reason=f"offer {offer_id!r} is not outstanding (answered, rejected, expired or withdrawn)",
            )
        if offer.agent_id != agent_id:
            return Rejected(code="not_your_offer", reason=f"offer {offer_id!r} was made to another agent")
        return agent, offer

    def _accept(self, cmd: Accept) -> Rejected | dict[str, Any]:
        found = self._offer_of(cmd.agent_id, cmd.offer_id)
        if isinstance(found, Rejected):
            return found
        agent, offer = found
        st = self.state
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
        self._emit(
            ContactAccepted(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                agent_id=agent.agent_id,
                offer_id=offer.offer_id,
                waited_s=now - c.arrived_at,
            )
        )
        self._sync_agent(agent, "accepted")
        return {"contact_id": c.contact_id, "queue_id": c.queue_id}

    def _reject(self, cmd: Reject) -> Rejected | dict[str, Any]:
        found = self._offer_of(cmd.agent_id, cmd.offer_id)
        if isinstance(found, Rejected):
            return found
        agent, offer = found
        # A declined offer is a missed one: "missed" (otherwise the system's own) is allowed here.
        reason = cmd.away_reason
        if reason is not None and reason not in SYSTEM_AWAY_REASONS and (err := self._valid_reason(reason)):
            return err
        c = self.state.contacts[offer.contact_id]
        # Not offered to this agent again while it waits in this queue.
        c.rejected_by.append(agent.agent_id)
        self._withdraw_offer(c, "rejected", requeue=True)
        if cmd.away_reason is not None:
            agent.away_reason = cmd.away_reason
        self._sync_agent(agent, "rejected")
        return {"state": agent.state.value}

    def _wrap_up_done(self, cmd: WrapUpDone) -> Rejected | dict[str, Any]:
        agent = self._agent_or_reject(cmd.agent_id)
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
            self._finish_wrap(agent, slot)
        self._sync_agent(agent, "wrap_up_done")
        return {"state": agent.state.value}

    # -- moves shared by commands and timers ------------------------------------------------------

    def _priority_for(self, q: QueueConfig, base: int, attributes: dict[str, str]) -> int:
        p = base + sum(r.raise_by for r in q.priority_rules if attributes.get(r.attribute) == r.equals)
        return max(PRIORITY_MIN, min(PRIORITY_MAX, p))

    def _place(self, c: Contact, q: QueueConfig) -> None:
        """Put a contact in line in queue `q` (arrival, overflow, transfer). It keeps its arrival seq."""
        c.queue_id = q.queue_id
        c.queued_at = self.state.now
        c.priority = self._priority_for(q, c.base_priority, c.attributes)
        c.step = 0
        c.levels = levels_for(q, c, 0)
        c.site_spilled = False
        c.rejected_by = []
        c.agent_id = None
        c.offer_id = None
        if c.state is not ContactState.CALLBACK_DUE:
            c.state = ContactState.WAITING
        self.matcher.line_add(c)
        self.dirty_contacts[c.contact_id] = None

    def _offer(self, c: Contact, agent: Agent) -> None:
        st = self.state
        q = self.queues[c.queue_id]
        now = st.now
        offer_id = f"{c.contact_id}#{c.offers_made}"
        c.offers_made += 1
        self.matcher.line_remove(c)
        c.state = ContactState.OFFERED
        c.offer_id = offer_id
        c.next_check_at = None
        c.preferred_until = None
        offer = Offer(
            offer_id=offer_id,
            contact_id=c.contact_id,
            agent_id=agent.agent_id,
            queue_id=c.queue_id,
            offered_at=now,
            expires_at=now + q.offer_timeout_s,
        )
        st.offers[offer_id] = offer
        agent.offer_id = offer_id
        agent.slots[c.contact_id] = Slot(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            channel=c.channel,
            phase=SlotPhase.OFFERED,
            since=now,
        )
        if q.strategy is Strategy.ROUND_ROBIN:
            st.rr_cursor[q.queue_id] = agent.agent_id
        self._timers.arm(offer.expires_at, TimerKind.OFFER, offer_id)
        self._emit(
            ContactOffered(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                agent_id=agent.agent_id,
                offer_id=offer_id,
                expires_at=offer.expires_at,
            )
        )
        self._sync_agent(agent, "offered")

    def _withdraw_offer(
        self, c: Contact, reason: str, *, requeue: bool, requeue_reason: str | None = None
    ) -> Agent:
        """End the contact's outstanding offer; with `requeue` it goes back to its original place.
        The caller brings the agent's state up to date."""
        st = self.state
        assert c.offer_id is not None
        offer = st.offers.pop(c.offer_id)
        agent = st.agents[offer.agent_id]
        agent.offer_id = None
        del agent.slots[c.contact_id]
        c.offer_id = None
        self._emit(
            ContactRejected(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                agent_id=agent.agent_id,
                offer_id=offer.offer_id,
                reason=reason,
            )
        )
        if requeue:
            self._requeue(c, requeue_reason or reason)
        return agent

    def _requeue(self, c: Contact, reason: str) -> None:
        c.state = ContactState.WAITING
        c.agent_id = None
        position = self.matcher.line_add(c)
        c.last_position = position
        self._emit(
            ContactRequeued(contact_id=c.contact_id, queue_id=c.queue_id, position=position, reason=reason)
        )
        self.dirty_contacts[c.contact_id] = None
        self._refresh_contact(c)

    def _abandon_offered(self, c: Contact, reason: str) -> None:
        agent = self._withdraw_offer(c, "withdrawn", requeue=False)
        self._drop_contact(c, reason, agent.agent_id)
        self._sync_agent(agent, "offer_withdrawn")

    def _drop_contact(self, c: Contact, reason: str, agent_id: str | None = None) -> None:
        """Forget a contact that left before being served (it is already out of line)."""
        del self.state.contacts[c.contact_id]
        self._emit(
            ContactAbandoned(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                waited_s=self.state.now - c.arrived_at,
                reason=reason,
                agent_id=agent_id,
            )
        )

    def _end_contact(self, c: Contact) -> None:
        assert c.agent_id is not None
        agent = self.state.agents[c.agent_id]
        slot = agent.slots[c.contact_id]
        talk = self.state.now - (slot.connected_at if slot.connected_at is not None else slot.since)
        self._emit(
            ContactEnded(contact_id=c.contact_id, queue_id=c.queue_id, agent_id=agent.agent_id, talk_s=talk)
        )
        del self.state.contacts[c.contact_id]
        self._start_wrap(agent, slot, "contact_ended")

    def _release_connected(self, c: Contact, cause: str) -> None:
        """The agent's part of a connected contact ends (transfer): wrap-up for the agent; the caller
        places the contact elsewhere."""
        assert c.agent_id is not None
        agent = self.state.agents[c.agent_id]
        slot = agent.slots[c.contact_id]
        c.agent_id = None
        c.state = ContactState.WAITING
        self._start_wrap(agent, slot, cause)

    def _start_wrap(self, agent: Agent, slot: Slot, cause: str) -> None:
        q = self.queues.get(slot.queue_id)
        wrap = q.wrap_up_s if q is not None else 0.0
        if wrap > 0:
            slot.phase = SlotPhase.WRAP_UP
            slot.wrap_until = self.state.now + wrap
            self._timers.arm(slot.wrap_until, TimerKind.WRAP, agent.agent_id, slot.contact_id)
        else:
            self._finish_wrap(agent, slot)
        self._sync_agent(agent, cause)

    def _finish_wrap(self, agent: Agent, slot: Slot) -> None:
        """The agent is done with a contact: its handle time (accept to end of wrap-up) feeds the AHT."""
        del agent.slots[slot.contact_id]
        start = slot.connected_at if slot.connected_at is not None else slot.since
        handle = self.state.now - start
        q = self.queues.get(slot.queue_id)
        if q is not None:
            record_handle_time(self.state.aht.setdefault(q.queue_id, []), handle, q.aht_window)
            self.matcher.mark(q.queue_id)
        self._emit(
            ContactWrappedUp(
                contact_id=slot.contact_id, queue_id=slot.queue_id, agent_id=agent.agent_id, handle_s=handle
            )
        )

    def _log_out(self, agent: Agent, cause: str) -> None:
        """Log an agent out now: an outstanding offer and any connected contacts go back in line at their
        place, wrap-up ends."""
        st = self.state
        if agent.offer_id is not None:
            offer = st.offers[agent.offer_id]
            # Not "withdrawn" (that is the caller leaving): the contact coordinator puts it back in line.
            self._withdraw_offer(
                st.contacts[offer.contact_id], f"agent_{cause}", requeue=True, requeue_reason=cause
            )
        for slot in list(agent.slots.values()):
            if slot.phase is SlotPhase.CONNECTED:
                del agent.slots[slot.contact_id]
                self._requeue(st.contacts[slot.contact_id], cause)
            else:
                self._finish_wrap(agent, slot)
        agent.away_reason = None
        t = agent._set_state(AgentState.LOGGED_OUT, cause, st.now)
        if isinstance(t, Rejected):
            raise RuntimeError(f"routing core bug: {t.reason}")
        self._emit_state_change(agent.agent_id, t.old.value, t.new.value, cause)
        del st.agents[agent.agent_id]
        st.stale_profiles.pop(agent.agent_id, None)
        self.matcher.agent_changed(agent.agent_id)
        for c in self.matcher.preferring_contacts(agent.agent_id):
            if c.state is ContactState.WAITING:
                self._refresh_contact(c)
