# The routing engine of one tenant: commands and timer ticks in (each with `now`), replies and outputs
# back. No I/O, no clock, no randomness: the same inputs from the same state give the same outputs, and
# the whole state snapshots to bytes. Contact and site commands live here; agent commands and the shared
# offer/contact mechanics live in operations.py.
from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from . import floor, presence
from . import snapshot as snap
from .agent import AgentState, Rejected
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
from .expansion import levels_for, step_at
from .model import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    PROFICIENCY_MAX,
    Channel,
    QueueConfig,
    TenantConfig,
    queue_takes,
    validate_config,
)
from .operations import Operations
from .outputs import (
    CallbackDue,
    ContactOverflowed,
    ContactQueued,
    ContactSiteSpilled,
    ContactTransferred,
    Output,
)
from .schedule import is_open
from .state import RoutingState, SiteStatus
from .timers import TimerKind
from .wait_estimate import average_handle_time, expected_wait

__all__ = ["Engine"]


class Engine(Operations):
    """Routing core for one tenant. Drive it with `handle(command, now)` and, when `next_timer()` comes
    due, `handle_timer(now)`. Both return what happened, in order."""

    def __init__(
        self,
        state: RoutingState | None = None,
        *,
        max_replies: int | None = None,
        position_interval_s: float | None = None,
    ) -> None:
        super().__init__(state or RoutingState())
        if max_replies is not None:
            self.state.max_replies = max_replies
        if position_interval_s is not None:
            self.state.position_interval_s = position_interval_s
        # Contacts that arrived in the current call: their expected-wait rules are checked once matching
        # is done, so a contact an agent takes at once never overflows on a pessimistic estimate.
        self._fresh: dict[str, None] = {}
        # Oldest first, mirroring the replies dict (whose order the snapshot keeps).
        self._reply_order: deque[str] = deque(self.state.replies)

    # -- public API -------------------------------------------------------------------------------

    def handle(self, cmd: AnyCommand, now: float) -> Result:
        self._begin()
        self._advance(now)
        prior = self.state.replies.get(cmd.id)
        if prior is not None:
            return Result(reply=prior, outputs=self._take(), duplicate=True)
        outcome = self._dispatch(cmd)
        self._settle()
        reply = self._reply(cmd, outcome)
        self._remember(cmd.id, reply)
        return Result(reply=reply, outputs=self._take())

    def handle_timer(self, now: float) -> list[Output]:
        self._begin()
        self._advance(now)
        return self._take()

    def next_timer(self) -> float | None:
        """When `handle_timer` should next be called (None: nothing is armed)."""
        while (entry := self._timers.peek()) is not None:
            if self._timer_valid(entry):
                return entry[0]
            self._timers.pop()
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
            out["expected_wait_s"] = self._ewt(q, c, pos)
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
                self._abandon_offered(c, "queue_removed")
            elif c.state in IN_LINE:
                self.matcher.line_remove(c)
                self._drop_contact(c, "queue_removed")
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
                c.priority = self._priority_for(q, c.base_priority, c.attributes)
        self._rebuild()
        for qid in self.queues:
            self.matcher.mark(qid)
        for c in sorted(st.contacts.values(), key=lambda c: c.seq):
            if c.state in IN_LINE:
                self._refresh_contact(c, force_levels=True)
        for agent in list(st.agents.values()):
            self._sync_agent(agent, "config_changed")
        self.dirty_agents.update(dict.fromkeys(st.agents))
        return {"queues": len(cfg.queues), "agents": len(cfg.agents), "seats": cfg.seats}

    # -- contacts ---------------------------------------------------------------------------------

    def _entry_queue(self, queue_id: str, channel: Channel | None) -> str | Rejected:
        """The queue a contact arriving for `queue_id` joins now (its closed target when it is shut)."""
        q = self.state_queue(queue_id)
        if q is None:
            return Rejected(code="unknown_queue", reason=f"queue {queue_id!r} does not exist")
        if channel is not None and not queue_takes(q, channel):
            return Rejected(
                code="channel_mismatch",
                reason=f"queue {queue_id!r} takes {q.channel.value} contacts, not {channel.value}",
            )
        now = self.state.now
        if is_open(q.schedule, now):
            return queue_id
        target = self.state_queue(q.closed_target_queue_id) if q.closed_target_queue_id else None
        if target is not None and target.channel is q.channel and is_open(target.schedule, now):
            return target.queue_id
        return Rejected(code="queue_closed", reason=f"queue {queue_id!r} is closed now (opening hours)")

    def _enqueue(self, cmd: Enqueue) -> Rejected | dict[str, Any]:
        st = self.state
        if not cmd.contact_id:
            return Rejected(code="invalid", reason="contact_id must not be empty")
        if cmd.contact_id in st.contacts:
            return Rejected(code="duplicate_contact", reason=f"contact {cmd.contact_id!r} is already routed")
        if cmd.priority is not None and not PRIORITY_MIN <= cmd.priority <= PRIORITY_MAX:
            return Rejected(code="invalid", reason=f"priority must be {PRIORITY_MIN}-{PRIORITY_MAX}")
        for skill, level in cmd.skills.items():
            if not skill or not 1 <= level <= PROFICIENCY_MAX:
                return Rejected(code="invalid", reason=f"skill {skill!r} level must be 1-{PROFICIENCY_MAX}")
        if cmd.preferred_window_s is not None and cmd.preferred_window_s < 0:
            return Rejected(code="invalid", reason="preferred_window_s must not be negative")
        entry = self._entry_queue(cmd.queue_id, cmd.channel)
        if isinstance(entry, Rejected):
            return entry
        if cmd.preferred_only and (
            cmd.preferred_agent_id is None
            or cmd.preferred_agent_id not in st.agents
            or entry not in self.matcher.queues_of(cmd.preferred_agent_id)
        ):
            return Rejected(
                code="agent_not_in_queue",
                reason=f"agent {cmd.preferred_agent_id!r} is not logged in to {entry!r}",
            )
        q = self.queues[entry]
        now = st.now
        # No priority given: the default of the queue asked for (a closed queue's, not its target's).
        priority = cmd.priority if cmd.priority is not None else self.queues[cmd.queue_id].default_priority
        c = Contact(
            contact_id=cmd.contact_id,
            queue_id=entry,
            channel=cmd.channel or q.channel,
            base_priority=priority,
            priority=priority,
            seq=st.next_arrival,
            arrived_at=now,
            queued_at=now,
            attributes=dict(cmd.attributes),
            requires=dict(cmd.requires),
            skills=dict(cmd.skills),
            virtual_hold=cmd.virtual_hold,
            preferred_agent_id=cmd.preferred_agent_id,
            preferred_only=cmd.preferred_only,
        )
        st.next_arrival += 1
        st.contacts[c.contact_id] = c
        if entry != cmd.queue_id:
            c.visited.append(cmd.queue_id)
            self._emit(
                ContactOverflowed(
                    contact_id=c.contact_id, from_queue_id=cmd.queue_id, to_queue_id=entry, reason="closed"
                )
            )
        window = q.preferred_agent_window_s if cmd.preferred_window_s is None else cmd.preferred_window_s
        agent_id = cmd.preferred_agent_id
        if (
            agent_id is not None
            and window > 0
            and agent_id in st.agents
            and entry in self.matcher.queues_of(agent_id)
        ):
            c.preferred_until = now + window
        self._place(c, q)
        pos = self.matcher.position(c)
        ewt = self._ewt(q, c, pos)
        c.last_position, c.last_ewt = pos, ewt
        self._emit(
            ContactQueued(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                priority=c.priority,
                position=pos,
                expected_wait_s=ewt,
                virtual_hold=c.virtual_hold,
                attributes=dict(c.attributes),
            )
        )
        self._fresh[c.contact_id] = None
        self._refresh_contact(c)
        return {}

    def _request_callback(self, cmd: RequestCallback) -> Rejected | dict[str, Any]:
        """Policy: a callback keeps the caller's place when they have one (virtual hold), else it is a new
        contact on virtual hold, carrying the number to call."""
        if cmd.contact_id in self.state.contacts:
            return self._virtual_hold(SetVirtualHold(id=cmd.id, contact_id=cmd.contact_id, on=True))
        return self._enqueue(
            Enqueue(
                id=cmd.id,
                contact_id=cmd.contact_id,
                queue_id=cmd.queue_id,
                attributes={**cmd.attributes, "callback_number": cmd.number},
                virtual_hold=True,
            )
        )

    def _cancel(self, cmd: Cancel) -> Rejected | dict[str, Any]:
        c = self.state.contacts.get(cmd.contact_id)
        if c is None:
            return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
        if c.state is ContactState.CONNECTED:
            self._end_contact(c)
            return {"ended": True}
        if c.state is ContactState.OFFERED:
            self._abandon_offered(c, cmd.reason)
        else:
            self.matcher.line_remove(c)
            self._drop_contact(c, cmd.reason)
        return {"abandoned": True}

    def _end(self, cmd: EndContact) -> Rejected | dict[str, Any]:
        c = self.state.contacts.get(cmd.contact_id)
        if c is None:
            return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
        if c.state is not ContactState.CONNECTED:
            return Rejected(
                code="not_connected",
                reason=f"contact {cmd.contact_id!r} is {c.state.value}, not connected: use cancel",
            )
        self._end_contact(c)
        return {}

    def _transfer(self, cmd: TransferToQueue) -> Rejected | dict[str, Any]:
        c = self.state.contacts.get(cmd.contact_id)
        if c is None:
            return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
        entry = self._entry_queue(cmd.queue_id, c.channel)
        if isinstance(entry, Rejected):
            return entry
        if entry == c.queue_id and c.state in IN_LINE:
            return Rejected(code="same_queue", reason=f"contact {c.contact_id!r} is already in {entry!r}")
        target = cmd.preferred_agent_id
        if target is not None and (
            target not in self.state.agents or entry not in self.matcher.queues_of(target)
        ):
            return Rejected(
                code="agent_not_in_queue", reason=f"agent {target!r} is not logged in to {entry!r}"
            )
        if cmd.preferred_window_s is not None and cmd.preferred_window_s < 0:
            return Rejected(code="invalid", reason="preferred_window_s must not be negative")
        members = sum(self.matcher.by_state[entry].values())
        if c.agent_id is not None and entry in self.matcher.queues_of(c.agent_id):
            members -= 1  # the transferring agent does not count: it is handing the contact on
        if members < 1:
            # Blind, nobody would ever answer: refused, and the contact stays exactly where it is.
            return Rejected(code="no_agents", reason=f"no other agent is signed in to queue {entry!r}")
        from_queue = c.queue_id
        agent_id: str | None = None
        if c.state is ContactState.OFFERED:
            agent = self._withdraw_offer(c, "withdrawn", requeue=False)
            self._sync_agent(agent, "offer_withdrawn")
        elif c.state is ContactState.CONNECTED:
            agent_id = c.agent_id
            self._release_connected(c, "transferred")
        else:
            self.matcher.line_remove(c)
        c.visited.append(from_queue)
        c.preferred_until = None
        self._emit(
            ContactTransferred(
                contact_id=c.contact_id, from_queue_id=from_queue, to_queue_id=entry, agent_id=agent_id
            )
        )
        q = self.queues[entry]
        if target is not None:
            c.preferred_agent_id = target
            window = q.preferred_agent_window_s if cmd.preferred_window_s is None else cmd.preferred_window_s
            c.preferred_until = self.state.now + window if window > 0 else None
        self._place(c, q)
        self._refresh_contact(c)
        return {}

    def _virtual_hold(self, cmd: SetVirtualHold) -> Rejected | dict[str, Any]:
        c = self.state.contacts.get(cmd.contact_id)
        if c is None:
            return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
        if c.state not in IN_LINE:
            return Rejected(code="not_waiting", reason=f"contact {c.contact_id!r} is {c.state.value}")
        if cmd.on:
            if c.virtual_hold or c.state is ContactState.CALLBACK_DUE:
                return Rejected(
                    code="already_on_virtual_hold", reason=f"contact {c.contact_id!r} is on virtual hold"
                )
            c.virtual_hold = True
        else:
            if not c.virtual_hold and c.state is ContactState.WAITING:
                return Rejected(
                    code="not_on_virtual_hold", reason=f"contact {c.contact_id!r} is not on virtual hold"
                )
            c.virtual_hold = False
            c.state = ContactState.WAITING
            c.callback_expires_at = None
        self._refresh_contact(c)
        self.dirty_contacts[c.contact_id] = None
        return {}

    # -- sites ------------------------------------------------------------------------------------

    def _site(self, site_id: str) -> SiteStatus | Rejected:
        status = self.state.site_status.get(site_id)
        if status is None:
            return Rejected(code="unknown_site", reason=f"site {site_id!r} does not exist")
        return status

    def _drain_site(self, cmd: DrainSite) -> Rejected | dict[str, Any]:
        status = self._site(cmd.site_id)
        if isinstance(status, Rejected):
            return status
        if status is not SiteStatus.UP:
            return Rejected(code="site_not_up", reason=f"site {cmd.site_id!r} is {status.value}")
        self.state.site_status[cmd.site_id] = SiteStatus.DRAINING
        for agent_id in self._agents_at(cmd.site_id):
            self.matcher.agent_changed(agent_id)
        return {"spilled": self._spill_site(cmd.site_id, "site_drained")}

    def _lose_site(self, cmd: LoseSite) -> Rejected | dict[str, Any]:
        status = self._site(cmd.site_id)
        if isinstance(status, Rejected):
            return status
        if status is SiteStatus.LOST:
            return Rejected(code="site_not_up", reason=f"site {cmd.site_id!r} is already lost")
        self.state.site_status[cmd.site_id] = SiteStatus.LOST
        agents = self._agents_at(cmd.site_id)
        for agent_id in agents:
            self._log_out(self.state.agents[agent_id], "site_lost")
        return {"logged_out": len(agents), "spilled": self._spill_site(cmd.site_id, "site_lost")}

    def _restore_site(self, cmd: RestoreSite) -> Rejected | dict[str, Any]:
        status = self._site(cmd.site_id)
        if isinstance(status, Rejected):
            return status
        if status is SiteStatus.UP:
            return Rejected(code="site_up", reason=f"site {cmd.site_id!r} is already up")
        self.state.site_status[cmd.site_id] = SiteStatus.UP
        for agent_id in self._agents_at(cmd.site_id):
            self.matcher.agent_changed(agent_id)
            self.dirty_agents[agent_id] = None
        return {}

    def _agents_at(self, site_id: str) -> list[str]:
        return sorted(
            aid
            for aid in self.state.agents
            if (p := self.matcher.profile(aid)) is not None and p.site_id == site_id
        )

    def _spill_site(self, site_id: str, reason: str) -> int:
        """Let every waiting contact held for this site go to the other sites now."""
        spilled = 0
        for qid in sorted(self.queues):
            if self.queues[qid].preferred_site_id != site_id:
                continue
            for cid in self.matcher.lines[qid].ids():
                c = self.state.contacts[cid]
                if not c.site_spilled:
                    self._spill(c, reason)
                    spilled += 1
        return spilled

    def _spill(self, c: Contact, reason: str) -> None:
        q = self.queues[c.queue_id]
        c.site_spilled = True
        self.matcher.mark(c.queue_id)
        self.dirty_contacts[c.contact_id] = None
        self._emit(
            ContactSiteSpilled(
                contact_id=c.contact_id,
                queue_id=c.queue_id,
                from_site_id=q.preferred_site_id or "",
                reason=reason,
            )
        )
        self._arm_contact(c)

    # -- time-driven contact changes --------------------------------------------------------------

    def _overflow_target(self, c: Contact, target_id: str) -> bool:
        q = self.state_queue(target_id)
        return (
            q is not None
            and target_id != c.queue_id
            and target_id not in c.visited
            and queue_takes(q, c.channel)
            and is_open(q.schedule, self.state.now)
        )

    def _overflow(self, c: Contact, target_id: str, reason: str) -> None:
        from_queue = c.queue_id
        self.matcher.line_remove(c)
        c.visited.append(from_queue)
        c.preferred_until = None
        self._emit(
            ContactOverflowed(
                contact_id=c.contact_id, from_queue_id=from_queue, to_queue_id=target_id, reason=reason
            )
        )
        self._place(c, self.queues[target_id])
        self._refresh_contact(c)

    def _refresh_contact(self, c: Contact, *, force_levels: bool = False) -> None:
        """Apply whatever time has changed for an in-line contact, then arm its next check."""
        q = self.queues[c.queue_id]
        now = self.state.now
        if c.state is ContactState.CALLBACK_DUE:
            if c.callback_expires_at is not None and now >= c.callback_expires_at:
                self.matcher.line_remove(c)
                self._drop_contact(c, "callback_unanswered")
                return
            self._arm_contact(c)
            return
        if c.state is not ContactState.WAITING:
            return
        # Deadlines are compared as absolute times, exactly as _arm_contact arms them.
        for rule in q.overflow:
            if (
                rule.after_s is not None
                and now >= c.queued_at + rule.after_s
                and self._overflow_target(c, rule.target_queue_id)
            ):
                self._overflow(c, rule.target_queue_id, "time")
                return
        widened = force_levels
        if c.preferred_until is not None and (
            now >= c.preferred_until or c.preferred_agent_id not in self.state.agents
        ):
            c.preferred_until = None
            widened = True
        step = step_at(q, c.queued_at, now)
        if step != c.step or widened:
            c.step = step
            c.levels = levels_for(q, c, step)
            widened = True
        if q.preferred_site_id is not None and not c.site_spilled:
            status = self.state.site_status.get(q.preferred_site_id, SiteStatus.LOST)
            if status is not SiteStatus.UP:
                self._spill(c, "site_lost" if status is SiteStatus.LOST else "site_drained")
                widened = True
            elif q.site_spill_after_s is not None and now >= c.queued_at + q.site_spill_after_s:
                self._spill(c, "time")
                widened = True
        if widened:
            self.dirty_contacts[c.contact_id] = None
        self._arm_contact(c)

    def _arm_contact(self, c: Contact) -> None:
        q = self.queues[c.queue_id]
        times: list[float] = []
        if c.state is ContactState.CALLBACK_DUE and c.callback_expires_at is not None:
            times.append(c.callback_expires_at)
        elif c.state is ContactState.WAITING:
            for rule in q.overflow:
                if rule.after_s is not None:
                    times.append(c.queued_at + rule.after_s)
            if c.preferred_until is not None:
                times.append(c.preferred_until)
            if c.step + 1 < len(q.expansion):
                times.append(c.queued_at + q.expansion[c.step + 1].after_s)
            if q.preferred_site_id is not None and not c.site_spilled and q.site_spill_after_s is not None:
                times.append(c.queued_at + q.site_spill_after_s)
        # Only future deadlines: whatever is due now was applied by _refresh_contact (an overflow whose
        # target was closed or already visited at its deadline is not retried).
        now = self.state.now
        future = [t for t in times if t > now]
        c.next_check_at = min(future) if future else None
        if c.next_check_at is not None:
            self._timers.arm(c.next_check_at, TimerKind.CONTACT, c.contact_id)

    # -- matching and positions -------------------------------------------------------------------

    def _assign(self, c: Contact, agent_id: str) -> None:
        if c.virtual_hold:
            q = self.queues[c.queue_id]
            c.state = ContactState.CALLBACK_DUE
            c.preferred_until = None
            c.callback_expires_at = self.state.now + q.callback_timeout_s
            self._emit(
                CallbackDue(contact_id=c.contact_id, queue_id=c.queue_id, expires_at=c.callback_expires_at)
            )
            self._arm_contact(c)
            return
        self._offer(c, self.state.agents[agent_id])

    def _match(self) -> None:
        st = self.state
        contacts = [
            c
            for cid in self.dirty_contacts
            if (c := st.contacts.get(cid)) is not None and c.state is ContactState.WAITING
        ]
        m = self.matcher
        # Only agents that can take something now can change the matching.
        agents = [aid for aid in self.dirty_agents if m.is_ready(aid)]
        self.dirty_contacts.clear()
        self.dirty_agents.clear()
        if not agents:
            contacts.sort(key=lambda c: (c.preferred_until is None, c.priority * -1, c.seq))
            for c in contacts:
                while c.state is ContactState.WAITING and (a := m.best_agent(c)) is not None:
                    self._assign(c, a)
        elif len(agents) == 1 and not contacts:
            agent_id = agents[0]
            while m.is_ready(agent_id) and (best := m.best_contact(agent_id)) is not None:
                self._assign(best, agent_id)
        else:
            queues = {c.queue_id for c in contacts}
            for agent_id in agents:
                queues.update(m.queues_of(agent_id))
            for c in m.waiting_in(queues):
                if c.state is ContactState.WAITING and m.ready[c.queue_id]:
                    a = m.best_agent(c)
                    if a is not None:
                        self._assign(c, a)

    def _ewt(self, q: QueueConfig, c: Contact, position: int) -> int | None:
        aht = average_handle_time(self.state.aht.get(q.queue_id, []), q.default_aht_s)
        return expected_wait(position, aht, self.matcher.staffed_slots(q, c), q.ewt_round_s)

    def _wait_rule(self, q: QueueConfig, c: Contact, ewt: int | None) -> tuple[str | None] | None:
        """If an expected-wait rule fires for this waiting contact: (target queue,) to overflow to, or
        (None,) to spill to other sites. Unknown waits (nobody staffed) count as over."""
        for rule in q.overflow:
            over = rule.expected_wait_over_s
            if (
                over is not None
                and (ewt is None or ewt > over)
                and self._overflow_target(c, rule.target_queue_id)
            ):
                return (rule.target_queue_id,)
        spill_over = q.site_spill_expected_wait_s
        if q.preferred_site_id is not None and spill_over is not None and not c.site_spilled:
            if ewt is None or ewt > spill_over:
                return (None,)
        return None

    def _apply_wait_rule(self, c: Contact, action: tuple[str | None]) -> None:
        (target,) = action
        if target is None:
            self._spill(c, "expected_wait")
        else:
            self._overflow(c, target, "expected_wait")

    def _check_fresh(self) -> None:
        fresh = list(self._fresh)
        self._fresh.clear()
        for cid in fresh:
            c = self.state.contacts.get(cid)
            if c is None or c.state is not ContactState.WAITING:
                continue
            q = self.queues[c.queue_id]
            action = self._wait_rule(q, c, self._ewt(q, c, self.matcher.position(c)))
            if action is not None:
                self._apply_wait_rule(c, action)

    def _refresh_positions(self) -> None:
        """Publish positions and expected waits that changed, and apply expected-wait rules."""
        st = self.state
        dirty = sorted(st.dirty_queues)
        st.dirty_queues.clear()
        contacts = st.contacts
        for qid in dirty:
            line = self.matcher.lines.get(qid)
            if line is None or not len(line):
                continue
            q = self.queues[qid]
            aht = average_handle_time(st.aht.get(qid, []), q.default_aht_s)
            # Staffing seen by a contact held for the preferred site, and by one free to go anywhere.
            held = self.matcher.staffed_slots(q, None)
            anywhere = sum(self.matcher.staffed.get(qid, {}).values())
            has_rules = q.site_spill_expected_wait_s is not None or any(
                r.expected_wait_over_s is not None for r in q.overflow
            )
            actions: list[tuple[Contact, tuple[str | None]]] = []
            for pos, cid in enumerate(line.ids(), start=1):
                c = contacts[cid]
                staffed = anywhere if q.preferred_site_id is None or c.site_spilled else held
                ewt = expected_wait(pos, aht, staffed, q.ewt_round_s)
                if pos != c.last_position or ewt != c.last_ewt:
                    c.last_position, c.last_ewt = pos, ewt
                    self._emit_position(c, pos, ewt)
                if has_rules and c.state is ContactState.WAITING:
                    action = self._wait_rule(q, c, ewt)
                    if action is not None:
                        actions.append((c, action))
            for c, action in actions:
                self._apply_wait_rule(c, action)

    def _settle(self) -> None:
        """Match until nothing is left to match, then schedule the publication of positions (bounded:
        overflow never revisits a queue)."""
        st = self.state
        for _ in range(10_000):
            if self.dirty_contacts or self.dirty_agents:
                self._match()
            elif self._fresh:
                self._check_fresh()
            elif st.dirty_queues and st.position_interval_s <= 0:
                self._refresh_positions()
            else:
                if st.dirty_queues and st.positions_due_at is None:
                    st.positions_due_at = st.now + st.position_interval_s
                    self._timers.arm(st.positions_due_at, TimerKind.POSITIONS, "")
                return
        raise RuntimeError("routing engine did not settle")

    def _on_contact_timer(self, contact_id: str) -> None:
        c = self.state.contacts[contact_id]
        c.next_check_at = None
        self._refresh_contact(c)

    def _on_positions_timer(self) -> None:
        self.state.positions_due_at = None
        self._refresh_positions()

    _handlers: dict[type, Any] = {
        Configure: _configure,
        Enqueue: _enqueue,
        RequestCallback: _request_callback,
        Cancel: _cancel,
        EndContact: _end,
        AgentLogin: Operations._login,
        AgentLogout: Operations._logout,
        AgentLinked: presence.linked,
        AgentUnlinked: presence.unlinked,
        AgentsPresent: presence.present,
        SetState: Operations._set_state_cmd,
        Accept: Operations._accept,
        Reject: Operations._reject,
        WrapUpDone: Operations._wrap_up_done,
        TransferToQueue: _transfer,
        SetVirtualHold: _virtual_hold,
        Prioritize: floor.prioritize,
        DrainSite: _drain_site,
        LoseSite: _lose_site,
        RestoreSite: _restore_site,
    }
