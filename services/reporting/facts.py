"""Events to reporting facts (sans-IO): one batch of decoded events in, the rows to write out.

Nothing here reads a clock or touches a database. A contact's events in one batch fold into one row whose
merge with the stored row is order-free (earliest times win, counters add, the outcome's queue wins), so
the result does not depend on how the stream was cut into batches or in which order redeliveries came.
Which events are new (not yet ingested) is decided by the store before `fold` runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from services.kernel import events as ev
from services.kernel.messages import Event

__all__ = [
    "EVENTS",
    "FILTERS",
    "AgentStateRow",
    "Batch",
    "ContactRow",
    "IvrVisitRow",
    "QueueStatsRow",
    "contact_month",
    "decode",
    "fold",
    "month_of",
]

EVENTS: dict[str, type[Event]] = {
    f"{cls.domain}.{cls.name}": cls
    for cls in (
        ev.CallArrived,
        ev.CallHeld,
        ev.ContactQueued,
        ev.ContactAssigned,
        ev.ContactAbandoned,
        ev.ContactOverflowed,
        ev.ContactEnded,
        ev.ContactWrappedUp,
        ev.AgentStateChanged,
        ev.IvrNodeExited,
        ev.IvrCompleted,
        ev.QueueStats,
    )
}
FILTERS = [f"sb.*.evt.{name}" for name in EVENTS]
_EPOCH_MONTH = date(1970, 1, 1)


def decode(subject: str, data: bytes) -> Event | None:
    """The event on `subject` (sb.<tenant>.evt.<domain>.<name>), or None for a kind reporting ignores."""
    parts = subject.split(".")
    kind = EVENTS.get(".".join(parts[3:5])) if len(parts) == 5 else None
    if kind is None:
        return None
    event = msgspec.json.decode(data, type=kind)
    # The subject's tenant is the one the bus authorised; a body claiming another is refused.
    if str(event.tenant_id) != parts[1]:
        raise ValueError(f"event {event.id} on {subject} names tenant {event.tenant_id}")
    return event


def month_of(ts: float) -> date:
    moment = datetime.fromtimestamp(ts, UTC)
    return date(moment.year, moment.month, 1)


def contact_month(contact_id: uuid.UUID) -> date:
    """The month of a UUIDv7's embedded time (every event of a contact agrees on it); 1970-01 otherwise."""
    if contact_id.version != 7:
        return _EPOCH_MONTH
    return month_of((contact_id.int >> 80) / 1000.0)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class ContactRow:
    contact_id: uuid.UUID
    month: date
    queue_id: str | None = None
    outcome_queue: bool = False  # queue_id is where the contact was answered or abandoned
    agent_id: str | None = None
    caller: str | None = None
    arrived_at: datetime | None = None
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    abandoned_at: datetime | None = None
    abandon_wait_s: float | None = None
    ended_at: datetime | None = None
    wrapped_at: datetime | None = None
    talk_s: float | None = None
    handle_s: float | None = None
    holds: int = 0
    transfers: int = 0
    ivr_flow: str | None = None
    ivr_outcome: str | None = None
    ivr_s: float | None = None
    _queued_ts: float | None = field(default=None, repr=False)

    def earliest(self, name: str, value: datetime) -> None:
        current = getattr(self, name)
        if current is None or value < current:
            setattr(self, name, value)

    def record(self) -> tuple[object, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if not f.name.startswith("_"))


CONTACT_COLUMNS = tuple(f.name for f in fields(ContactRow) if not f.name.startswith("_"))


@dataclass(frozen=True)
class AgentStateRow:
    agent_id: str
    at: datetime
    event_id: uuid.UUID
    state: str
    reason: str | None


@dataclass(frozen=True)
class IvrVisitRow:
    at: datetime
    event_id: uuid.UUID
    contact_id: uuid.UUID
    flow: str
    version: int
    node: str
    result: str
    seconds: float


@dataclass(frozen=True)
class QueueStatsRow:
    queue_id: str
    at: datetime
    event_id: uuid.UUID
    waiting: int
    longest_wait_s: float
    ready: int
    agents: dict[str, int]


@dataclass
class Batch:
    contacts: dict[uuid.UUID, ContactRow] = field(default_factory=dict)
    agent_states: list[AgentStateRow] = field(default_factory=list)
    ivr_visits: list[IvrVisitRow] = field(default_factory=list)
    queue_stats: list[QueueStatsRow] = field(default_factory=list)

    def months(self) -> set[date]:
        found = {row.month for row in self.contacts.values()}
        found |= {month_of(r.at.timestamp()) for r in self.agent_states}
        found |= {month_of(r.at.timestamp()) for r in self.ivr_visits}
        found |= {month_of(r.at.timestamp()) for r in self.queue_stats}
        return found

    def contact(self, contact_id: uuid.UUID) -> ContactRow:
        row = self.contacts.get(contact_id)
        if row is None:
            row = self.contacts[contact_id] = ContactRow(contact_id, contact_month(contact_id))
        return row


def _outcome_queue(row: ContactRow, queue_id: str) -> None:
    row.queue_id, row.outcome_queue = queue_id, True


def _queued(batch: Batch, e: ev.ContactQueued) -> None:
    row = batch.contact(e.call_id)
    at = _at(e.ts)
    if not row.outcome_queue and (row._queued_ts is None or e.ts >= row._queued_ts):
        row.queue_id, row._queued_ts = e.queue, e.ts
    row.earliest("queued_at", at)


def _assigned(batch: Batch, e: ev.ContactAssigned) -> None:
    row = batch.contact(e.call_id)
    if row.answered_at is None or _at(e.ts) < row.answered_at:
        row.answered_at, row.agent_id = _at(e.ts), e.agent_id
        _outcome_queue(row, e.queue_id)


def _abandoned(batch: Batch, e: ev.ContactAbandoned) -> None:
    row = batch.contact(e.call_id)
    if row.abandoned_at is None or _at(e.ts) < row.abandoned_at:
        row.abandoned_at, row.abandon_wait_s = _at(e.ts), e.waited_s
        if row.answered_at is None:
            _outcome_queue(row, e.queue_id)


def _overflowed(batch: Batch, e: ev.ContactOverflowed) -> None:
    if e.kind == "transfer":
        batch.contact(e.call_id).transfers += 1


def _ended(batch: Batch, e: ev.ContactEnded) -> None:
    row = batch.contact(e.call_id)
    row.earliest("ended_at", _at(e.ts))
    row.talk_s = (row.talk_s or 0.0) + e.talk_s


def _wrapped(batch: Batch, e: ev.ContactWrappedUp) -> None:
    row = batch.contact(e.call_id)
    row.earliest("wrapped_at", _at(e.ts))
    row.handle_s = (row.handle_s or 0.0) + e.handle_s


def _arrived(batch: Batch, e: ev.CallArrived) -> None:
    if e.direction != "inbound":
        return
    row = batch.contact(e.call_id)
    row.earliest("arrived_at", _at(e.ts))
    row.caller = e.from_uri or row.caller


def _held(batch: Batch, e: ev.CallHeld) -> None:
    if e.held:
        batch.contact(e.call_id).holds += 1


def _ivr_completed(batch: Batch, e: ev.IvrCompleted) -> None:
    row = batch.contact(e.call_id)
    row.ivr_flow, row.ivr_outcome, row.ivr_s = e.flow, e.outcome, e.seconds


def _ivr_exited(batch: Batch, e: ev.IvrNodeExited) -> None:
    batch.ivr_visits.append(
        IvrVisitRow(_at(e.ts), e.id, e.call_id, e.flow, e.version, e.node, e.result, e.seconds)
    )


def _agent_state(batch: Batch, e: ev.AgentStateChanged) -> None:
    batch.agent_states.append(AgentStateRow(e.agent_id, _at(e.ts), e.id, e.new, e.reason))


def _queue_stats(batch: Batch, e: ev.QueueStats) -> None:
    batch.queue_stats.append(
        QueueStatsRow(e.queue_id, _at(e.ts), e.id, e.waiting, e.longest_wait_s, e.ready, dict(e.agents))
    )


# One handler per event kind: the whole mapping from events to facts in one table.
HANDLERS: dict[type[Event], Callable[[Batch, Any], None]] = {
    ev.CallArrived: _arrived,
    ev.CallHeld: _held,
    ev.ContactQueued: _queued,
    ev.ContactAssigned: _assigned,
    ev.ContactAbandoned: _abandoned,
    ev.ContactOverflowed: _overflowed,
    ev.ContactEnded: _ended,
    ev.ContactWrappedUp: _wrapped,
    ev.AgentStateChanged: _agent_state,
    ev.IvrNodeExited: _ivr_exited,
    ev.IvrCompleted: _ivr_completed,
    ev.QueueStats: _queue_stats,
}


def fold(events: list[Event]) -> Batch:
    """The facts of `events` (all new, all of one tenant), in any order."""
    batch = Batch()
    for event in sorted(events, key=lambda e: (e.ts, str(e.id))):
        handler = HANDLERS.get(type(event))
        if handler is not None:
            handler(batch, event)
    return batch
