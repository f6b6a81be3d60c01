# Contacts over the routing state: the contact commands (enqueue, callback, cancel, end, transfer, virtual
# hold) and the moves on a contact every path shares (placing it in line, requeue, abandon, end). The
# policies that decide a contact's terms live here: priority from the queue's default and rules, and a
# callback as virtual hold.
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import agents, matching
from .agent import Rejected
from .commands import (
    Cancel,
    EndContact,
    Enqueue,
    RequestCallback,
    SetVirtualHold,
    TransferToQueue,
)
from .contact import IN_LINE, Contact, ContactState
from .expansion import levels_for
from .model import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    PROFICIENCY_MAX,
    Channel,
    QueueConfig,
    queue_takes,
)
from .outputs import (
    ContactAbandoned,
    ContactEnded,
    ContactOverflowed,
    ContactQueued,
    ContactRequeued,
    ContactTransferred,
)
from .schedule import is_open

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "abandon_offered",
    "cancel",
    "drop",
    "end",
    "end_contact",
    "enqueue",
    "entry_queue",
    "place",
    "priority_for",
    "release_connected",
    "request_callback",
    "requeue",
    "transfer",
    "virtual_hold",
]


def priority_for(e: Engine, q: QueueConfig, base: int, attributes: dict[str, str]) -> int:
    p = base + sum(r.raise_by for r in q.priority_rules if attributes.get(r.attribute) == r.equals)
    return max(PRIORITY_MIN, min(PRIORITY_MAX, p))


def place(e: Engine, c: Contact, q: QueueConfig) -> None:
    """Put a contact in line in queue `q` (arrival, overflow, transfer). It keeps its arrival seq."""
    c.queue_id = q.queue_id
    c.queued_at = e.state.now
    c.priority = priority_for(e, q, c.base_priority, c.attributes)
    c.step = 0
    c.levels = levels_for(q, c, 0)
    c.site_spilled = False
    c.rejected_by = []
    c.agent_id = None
    c.offer_id = None
    if c.state is not ContactState.CALLBACK_DUE:
        c.state = ContactState.WAITING
    e.matcher.line_add(c)
    e.dirty_contacts[c.contact_id] = None


def requeue(e: Engine, c: Contact, reason: str) -> None:
    c.state = ContactState.WAITING
    c.agent_id = None
    position = e.matcher.line_add(c)
    c.last_position = position
    e.emit(ContactRequeued(contact_id=c.contact_id, queue_id=c.queue_id, position=position, reason=reason))
    e.dirty_contacts[c.contact_id] = None
    matching.refresh_contact(e, c)


def abandon_offered(e: Engine, c: Contact, reason: str) -> None:
    agent = matching.withdraw_offer(e, c, "withdrawn", requeue=False)
    drop(e, c, reason, agent.agent_id)
    agents.sync(e, agent, "offer_withdrawn")


def drop(e: Engine, c: Contact, reason: str, agent_id: str | None = None) -> None:
    """Forget a contact that left before being served (it is already out of line)."""
    del e.state.contacts[c.contact_id]
    e.emit(
        ContactAbandoned(
            contact_id=c.contact_id,
            queue_id=c.queue_id,
            waited_s=e.state.now - c.arrived_at,
            reason=reason,
            agent_id=agent_id,
        )
    )


def end_contact(e: Engine, c: Contact) -> None:
    assert c.agent_id is not None
    agent = e.state.agents[c.agent_id]
    slot = agent.slots[c.contact_id]
    talk = e.state.now - (slot.connected_at if slot.connected_at is not None else slot.since)
    e.emit(ContactEnded(contact_id=c.contact_id, queue_id=c.queue_id, agent_id=agent.agent_id, talk_s=talk))
    del e.state.contacts[c.contact_id]
    agents.start_wrap(e, agent, slot, "contact_ended")


def release_connected(e: Engine, c: Contact, cause: str) -> None:
    """The agent's part of a connected contact ends (transfer): wrap-up for the agent; the caller
    places the contact elsewhere."""
    assert c.agent_id is not None
    agent = e.state.agents[c.agent_id]
    slot = agent.slots[c.contact_id]
    c.agent_id = None
    c.state = ContactState.WAITING
    agents.start_wrap(e, agent, slot, cause)


def entry_queue(e: Engine, queue_id: str, channel: Channel | None) -> str | Rejected:
    """The queue a contact arriving for `queue_id` joins now (its closed target when it is shut)."""
    q = e.state_queue(queue_id)
    if q is None:
        return Rejected(code="unknown_queue", reason=f"queue {queue_id!r} does not exist")
    if channel is not None and not queue_takes(q, channel):
        return Rejected(
            code="channel_mismatch",
            reason=f"queue {queue_id!r} takes {q.channel.value} contacts, not {channel.value}",
        )
    now = e.state.now
    if is_open(q.schedule, now):
        return queue_id
    target = e.state_queue(q.closed_target_queue_id) if q.closed_target_queue_id else None
    if target is not None and target.channel is q.channel and is_open(target.schedule, now):
        return target.queue_id
    return Rejected(code="queue_closed", reason=f"queue {queue_id!r} is closed now (opening hours)")


def enqueue(e: Engine, cmd: Enqueue) -> Rejected | dict[str, Any]:
    st = e.state
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
    entry = entry_queue(e, cmd.queue_id, cmd.channel)
    if isinstance(entry, Rejected):
        return entry
    if cmd.preferred_only and (
        cmd.preferred_agent_id is None
        or cmd.preferred_agent_id not in st.agents
        or entry not in e.matcher.queues_of(cmd.preferred_agent_id)
    ):
        return Rejected(
            code="agent_not_in_queue",
            reason=f"agent {cmd.preferred_agent_id!r} is not logged in to {entry!r}",
        )
    q = e.queues[entry]
    now = st.now
    # No priority given: the default of the queue asked for (a closed queue's, not its target's).
    priority = cmd.priority if cmd.priority is not None else e.queues[cmd.queue_id].default_priority
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
        e.emit(
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
        and entry in e.matcher.queues_of(agent_id)
    ):
        c.preferred_until = now + window
    place(e, c, q)
    pos = e.matcher.position(c)
    ewt = matching.ewt(e, q, c, pos)
    c.last_position, c.last_ewt = pos, ewt
    e.emit(
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
    e.fresh[c.contact_id] = None
    matching.refresh_contact(e, c)
    return {}


def request_callback(e: Engine, cmd: RequestCallback) -> Rejected | dict[str, Any]:
    """Policy: a callback keeps the caller's place when they have one (virtual hold), else it is a new
    contact on virtual hold, carrying the number to call."""
    if cmd.contact_id in e.state.contacts:
        return virtual_hold(e, SetVirtualHold(id=cmd.id, contact_id=cmd.contact_id, on=True))
    return enqueue(
        e,
        Enqueue(
            id=cmd.id,
            contact_id=cmd.contact_id,
            queue_id=cmd.queue_id,
            attributes={**cmd.attributes, "callback_number": cmd.number},
            virtual_hold=True,
        ),
    )


def cancel(e: Engine, cmd: Cancel) -> Rejected | dict[str, Any]:
    c = e.state.contacts.get(cmd.contact_id)
    if c is None:
        return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
    if c.state is ContactState.CONNECTED:
        end_contact(e, c)
        return {"ended": True}
    if c.state is ContactState.OFFERED:
        abandon_offered(e, c, cmd.reason)
    else:
        e.matcher.line_remove(c)
        drop(e, c, cmd.reason)
    return {"abandoned": True}


def end(e: Engine, cmd: EndContact) -> Rejected | dict[str, Any]:
    c = e.state.contacts.get(cmd.contact_id)
    if c is None:
        return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
    if c.state is not ContactState.CONNECTED:
        return Rejected(
            code="not_connected",
            reason=f"contact {cmd.contact_id!r} is {c.state.value}, not connected: use cancel",
        )
    end_contact(e, c)
    return {}


def transfer(e: Engine, cmd: TransferToQueue) -> Rejected | dict[str, Any]:
    c = e.state.contacts.get(cmd.contact_id)
    if c is None:
        return Rejected(code="unknown_contact", reason=f"contact {cmd.contact_id!r} is not being routed")
    entry = entry_queue(e, cmd.queue_id, c.channel)
    if isinstance(entry, Rejected):
        return entry
    if entry == c.queue_id and c.state in IN_LINE:
        return Rejected(code="same_queue", reason=f"contact {c.contact_id!r} is already in {entry!r}")
    target = cmd.preferred_agent_id
    if target is not None and (target not in e.state.agents or entry not in e.matcher.queues_of(target)):
        return Rejected(code="agent_not_in_queue", reason=f"agent {target!r} is not logged in to {entry!r}")
    if cmd.preferred_window_s is not None and cmd.preferred_window_s < 0:
        return Rejected(code="invalid", reason="preferred_window_s must not be negative")
    members = sum(e.matcher.by_state[entry].values())
    if c.agent_id is not None and entry in e.matcher.queues_of(c.agent_id):
        members -= 1  # the transferring agent does not count: it is handing the contact on
    if members < 1:
        # Blind, nobody would ever answer: refused, and the contact stays exactly where it is.
        return Rejected(code="no_agents", reason=f"no other agent is signed in to queue {entry!r}")
    from_queue = c.queue_id
    agent_id: str | None = None
    if c.state is ContactState.OFFERED:
        agent = matching.withdraw_offer(e, c, "withdrawn", requeue=False)
        agents.sync(e, agent, "offer_withdrawn")
    elif c.state is ContactState.CONNECTED:
        agent_id = c.agent_id
        release_connected(e, c, "transferred")
    else:
        e.matcher.line_remove(c)
    c.visited.append(from_queue)
    c.preferred_until = None
    e.emit(
        ContactTransferred(
            contact_id=c.contact_id, from_queue_id=from_queue, to_queue_id=entry, agent_id=agent_id
        )
    )
    q = e.queues[entry]
    if target is not None:
        c.preferred_agent_id = target
        window = q.preferred_agent_window_s if cmd.preferred_window_s is None else cmd.preferred_window_s
        c.preferred_until = e.state.now + window if window > 0 else None
    place(e, c, q)
    matching.refresh_contact(e, c)
    return {}


def virtual_hold(e: Engine, cmd: SetVirtualHold) -> Rejected | dict[str, Any]:
    c = e.state.contacts.get(cmd.contact_id)
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
    matching.refresh_contact(e, c)
    e.dirty_contacts[c.contact_id] = None
    return {}
