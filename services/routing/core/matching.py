# Matching over the routing state: which waiting contact goes to which ready agent (the offer and its
# withdrawal), what time changes for a contact in line (skill expansion, overflow, the preferred agent's
# window, site spill), expected waits and positions, and `settle`, which runs them until nothing changes.
from __future__ import annotations

from typing import TYPE_CHECKING

from . import agents, contacts, sites
from .agent import Agent, Slot, SlotPhase
from .contact import Contact, ContactState, Offer
from .expansion import levels_for, step_at
from .model import (
    QueueConfig,
    Strategy,
    queue_takes,
)
from .outputs import (
    CallbackDue,
    ContactOffered,
    ContactOverflowed,
    ContactRejected,
)
from .schedule import is_open
from .state import SiteStatus
from .timers import TimerKind
from .wait_estimate import average_handle_time, expected_wait

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "apply_wait_rule",
    "arm_contact",
    "assign",
    "check_fresh",
    "ewt",
    "match",
    "offer",
    "on_contact_timer",
    "on_offer_timeout",
    "on_positions_timer",
    "overflow",
    "overflow_target",
    "refresh_contact",
    "refresh_positions",
    "settle",
    "wait_rule",
    "withdraw_offer",
]


def on_offer_timeout(e: Engine, offer_id: str) -> None:
    """Ring-no-answer: the agent goes away ("missed"), the contact back to its original place."""
    offer = e.state.offers[offer_id]
    agent = e.state.agents[offer.agent_id]
    withdraw_offer(e, e.state.contacts[offer.contact_id], "no_answer", requeue=True)
    if agent.away_reason is None:
        agent.away_reason = "missed"
    agents.sync(e, agent, "no_answer")


def offer(e: Engine, c: Contact, agent: Agent) -> None:
    st = e.state
    q = e.queues[c.queue_id]
    now = st.now
    offer_id = f"{c.contact_id}#{c.offers_made}"
    c.offers_made += 1
    e.matcher.line_remove(c)
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
    e.timers.arm(offer.expires_at, TimerKind.OFFER, offer_id)
    e.emit(
        ContactOffered(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            agent_id=agent.agent_id,
            offer_id=offer_id,
            expires_at=offer.expires_at,
        )
    )
    agents.sync(e, agent, "offered")


def withdraw_offer(
    e: Engine, c: Contact, reason: str, *, requeue: bool, requeue_reason: str | None = None
) -> Agent:
    """End the contact's outstanding offer; with `requeue` it goes back to its original place.
    The caller brings the agent's state up to date."""
    st = e.state
    assert c.offer_id is not None
    offer = st.offers.pop(c.offer_id)
    agent = st.agents[offer.agent_id]
    agent.offer_id = None
    del agent.slots[c.contact_id]
    c.offer_id = None
    e.emit(
        ContactRejected(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            agent_id=agent.agent_id,
            offer_id=offer.offer_id,
            reason=reason,
        )
    )
    if requeue:
        contacts.requeue(e, c, requeue_reason or reason)
    return agent


def overflow_target(e: Engine, c: Contact, target_id: str) -> bool:
    q = e.state_queue(target_id)
    return (
        q is not None
        and target_id != c.queue_id
        and target_id not in c.visited
        and queue_takes(q, c.channel)
        and is_open(q.schedule, e.state.now)
    )


def overflow(e: Engine, c: Contact, target_id: str, reason: str) -> None:
    from_queue = c.queue_id
    e.matcher.line_remove(c)
    c.visited.append(from_queue)
    c.preferred_until = None
    e.emit(
        ContactOverflowed(
            contact_id=c.contact_id, from_queue_id=from_queue, to_queue_id=target_id, reason=reason
        )
    )
    contacts.place(e, c, e.queues[target_id])
    refresh_contact(e, c)


def refresh_contact(e: Engine, c: Contact, *, force_levels: bool = False) -> None:
    """Apply whatever time has changed for an in-line contact, then arm its next check."""
    q = e.queues[c.queue_id]
    now = e.state.now
    if c.state is ContactState.CALLBACK_DUE:
        if c.callback_expires_at is not None and now >= c.callback_expires_at:
            e.matcher.line_remove(c)
            contacts.drop(e, c, "callback_unanswered")
            return
        arm_contact(e, c)
        return
    if c.state is not ContactState.WAITING:
        return
    # Deadlines are compared as absolute times, exactly as _arm_contact arms them.
    for rule in q.overflow:
        if (
            rule.after_s is not None
            and now >= c.queued_at + rule.after_s
            and overflow_target(e, c, rule.target_queue_id)
        ):
            overflow(e, c, rule.target_queue_id, "time")
            return
    widened = force_levels
    if c.preferred_until is not None and (
        now >= c.preferred_until or c.preferred_agent_id not in e.state.agents
    ):
        c.preferred_until = None
        widened = True
    step = step_at(q, c.queued_at, now)
    if step != c.step or widened:
        c.step = step
        c.levels = levels_for(q, c, step)
        widened = True
    if q.preferred_site_id is not None and not c.site_spilled:
        status = e.state.site_status.get(q.preferred_site_id, SiteStatus.LOST)
        if status is not SiteStatus.UP:
            sites.spill(e, c, "site_lost" if status is SiteStatus.LOST else "site_drained")
            widened = True
        elif q.site_spill_after_s is not None and now >= c.queued_at + q.site_spill_after_s:
            sites.spill(e, c, "time")
            widened = True
    if widened:
        e.dirty_contacts[c.contact_id] = None
    arm_contact(e, c)


def arm_contact(e: Engine, c: Contact) -> None:
    q = e.queues[c.queue_id]
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
    now = e.state.now
    future = [t for t in times if t > now]
    c.next_check_at = min(future) if future else None
    if c.next_check_at is not None:
        e.timers.arm(c.next_check_at, TimerKind.CONTACT, c.contact_id)


def assign(e: Engine, c: Contact, agent_id: str) -> None:
    if c.virtual_hold:
        q = e.queues[c.queue_id]
        c.state = ContactState.CALLBACK_DUE
        c.preferred_until = None
        c.callback_expires_at = e.state.now + q.callback_timeout_s
        e.emit(CallbackDue(contact_id=c.contact_id, queue_id=c.queue_id, expires_at=c.callback_expires_at))
        arm_contact(e, c)
        return
    offer(e, c, e.state.agents[agent_id])


def match(e: Engine) -> None:
    st = e.state
    waiting = [
        c
        for cid in e.dirty_contacts
        if (c := st.contacts.get(cid)) is not None and c.state is ContactState.WAITING
    ]
    m = e.matcher
    # Only agents that can take something now can change the matching.
    ready_agents = [aid for aid in e.dirty_agents if m.is_ready(aid)]
    e.dirty_contacts.clear()
    e.dirty_agents.clear()
    if not ready_agents:
        waiting.sort(key=lambda c: (c.preferred_until is None, c.priority * -1, c.seq))
        for c in waiting:
            while c.state is ContactState.WAITING and (a := m.best_agent(c)) is not None:
                assign(e, c, a)
    elif len(ready_agents) == 1 and not waiting:
        agent_id = ready_agents[0]
        while m.is_ready(agent_id) and (best := m.best_contact(agent_id)) is not None:
            assign(e, best, agent_id)
    else:
        queues = {c.queue_id for c in waiting}
        for agent_id in ready_agents:
            queues.update(m.queues_of(agent_id))
        for c in m.waiting_in(queues):
            if c.state is ContactState.WAITING and m.ready[c.queue_id]:
                a = m.best_agent(c)
                if a is not None:
                    assign(e, c, a)


def ewt(e: Engine, q: QueueConfig, c: Contact, position: int) -> int | None:
    aht = average_handle_time(e.state.aht.get(q.queue_id, []), q.default_aht_s)
    return expected_wait(position, aht, e.matcher.staffed_slots(q, c), q.ewt_round_s)


def wait_rule(e: Engine, q: QueueConfig, c: Contact, ewt: int | None) -> tuple[str | None] | None:
    """If an expected-wait rule fires for this waiting contact: (target queue,) to overflow to, or
    (None,) to spill to other sites. Unknown waits (nobody staffed) count as over."""
    for rule in q.overflow:
        over = rule.expected_wait_over_s
        if over is not None and (ewt is None or ewt > over) and overflow_target(e, c, rule.target_queue_id):
            return (rule.target_queue_id,)
    spill_over = q.site_spill_expected_wait_s
    if q.preferred_site_id is not None and spill_over is not None and not c.site_spilled:
        if ewt is None or ewt > spill_over:
            return (None,)
    return None


def apply_wait_rule(e: Engine, c: Contact, action: tuple[str | None]) -> None:
    (target,) = action
    if target is None:
        sites.spill(e, c, "expected_wait")
    else:
        overflow(e, c, target, "expected_wait")


def check_fresh(e: Engine) -> None:
    fresh = list(e.fresh)
    e.fresh.clear()
    for cid in fresh:
        c = e.state.contacts.get(cid)
        if c is None or c.state is not ContactState.WAITING:
            continue
        q = e.queues[c.queue_id]
        action = wait_rule(e, q, c, ewt(e, q, c, e.matcher.position(c)))
        if action is not None:
            apply_wait_rule(e, c, action)


def refresh_positions(e: Engine) -> None:
    """Publish positions and expected waits that changed, and apply expected-wait rules."""
    st = e.state
    dirty = sorted(st.dirty_queues)
    st.dirty_queues.clear()
    in_line = st.contacts
    for qid in dirty:
        line = e.matcher.lines.get(qid)
        if line is None or not len(line):
            continue
        q = e.queues[qid]
        aht = average_handle_time(st.aht.get(qid, []), q.default_aht_s)
        # Staffing seen by a contact held for the preferred site, and by one free to go anywhere.
        held = e.matcher.staffed_slots(q, None)
        anywhere = sum(e.matcher.staffed.get(qid, {}).values())
        has_rules = q.site_spill_expected_wait_s is not None or any(
            r.expected_wait_over_s is not None for r in q.overflow
        )
        actions: list[tuple[Contact, tuple[str | None]]] = []
        for pos, cid in enumerate(line.ids(), start=1):
            c = in_line[cid]
            staffed = anywhere if q.preferred_site_id is None or c.site_spilled else held
            ewt = expected_wait(pos, aht, staffed, q.ewt_round_s)
            if pos != c.last_position or ewt != c.last_ewt:
                c.last_position, c.last_ewt = pos, ewt
                e.emit_position(c, pos, ewt)
            if has_rules and c.state is ContactState.WAITING:
                action = wait_rule(e, q, c, ewt)
                if action is not None:
                    actions.append((c, action))
        for c, action in actions:
            apply_wait_rule(e, c, action)


def settle(e: Engine) -> None:
    """Match until nothing is left to match, then schedule the publication of positions (bounded:
    overflow never revisits a queue)."""
    st = e.state
    for _ in range(10_000):
        if e.dirty_contacts or e.dirty_agents:
            match(e)
        elif e.fresh:
            check_fresh(e)
        elif st.dirty_queues and st.position_interval_s <= 0:
            refresh_positions(e)
        else:
            if st.dirty_queues and st.positions_due_at is None:
                st.positions_due_at = st.now + st.position_interval_s
                e.timers.arm(st.positions_due_at, TimerKind.POSITIONS, "")
            return
    raise RuntimeError("routing engine did not settle")


def on_contact_timer(e: Engine, contact_id: str) -> None:
    c = e.state.contacts[contact_id]
    c.next_check_at = None
    refresh_contact(e, c)


def on_positions_timer(e: Engine) -> None:
    e.state.positions_due_at = None
    refresh_positions(e)
