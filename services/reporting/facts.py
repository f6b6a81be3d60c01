"""Events to reporting facts (sans-IO): one batch of decoded events in, the rows to write out.

Nothing here reads a clock or touches a database. A contact's events are applied to its stored row
(`apply`) in an order-free way (earliest times win, counters add, the outcome's queue wins), and the row
keeps the ids it holds, so the result does not depend on how the stream was cut into batches, in which
order redeliveries came, or how often the stream is replayed. The other facts are keyed by event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeGuard

from services.kernel import events as ev
from services.kernel.messages import Event

__all__ = [
    "CONTACT_COLUMNS",
    "CONTACT_EVENTS",
    "EVENTS",
    "REPEAT_WINDOW",
    "AgentStateRow",
    "Batch",
    "ContactRow",
    "IvrVisitRow",
    "QueueStatsRow",
    "apply",
    "contact_month",
    "mark_repeats",
    "month_of",
    "split",
]

_EPOCH_MONTH = date(1970, 1, 1)


# A UTC month is whole UTC days: the month of each day seen, so most events need no datetime of their own.
_MONTH_OF_DAY: dict[int, date] = {}


def month_of(ts: float) -> date:
    day = int(ts // 86400)
    month = _MONTH_OF_DAY.get(day)
    if month is None:
        moment = datetime.fromtimestamp(ts, UTC)
        month = date(moment.year, moment.month, 1)
        if len(_MONTH_OF_DAY) > 100_000:
            _MONTH_OF_DAY.clear()
        _MONTH_OF_DAY[day] = month
    return month


def contact_month(contact_id: uuid.UUID) -> date:
    """The month of a UUIDv7's embedded time (every event of a contact agrees on it); 1970-01 otherwise."""
    value = contact_id.int  # version 7 of the RFC 4122 variant, read from the bits (UUID.version is slower)
    if (value >> 76) & 0xF != 7 or (value >> 62) & 0x3 != 0b10:
        return _EPOCH_MONTH
    return month_of((value >> 80) / 1000.0)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class ContactRow:
    """One contact's facts: the stored row with the batch's new events applied on top (order-free)."""

    contact_id: uuid.UUID
    month: date
    queue_id: str | None = None
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
    requeued_at: datetime | None = None
    sl_met: bool | None = None
    abandon_long: bool | None = None
    repeat_24h: bool = False
    repeat_7d: bool = False
    survey_score: float | None = None  # the sum of the answers, each scaled to 0-1
    survey_n: int = 0
    events: list[uuid.UUID] = field(default_factory=list)

    def earliest(self, name: str, value: datetime) -> None:
        current = getattr(self, name)
        if current is None or value < current:
            setattr(self, name, value)

    def record(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in CONTACT_COLUMNS)

    def copy(self) -> ContactRow:
        # A shallow copy and a new list: `replace` goes through __init__ by keyword, three times the cost,
        # and copy.copy through __reduce_ex__.
        row = object.__new__(ContactRow)
        row.__dict__.update(self.__dict__)
        row.events = list(self.events)
        return row

    def classify(self, sl_seconds: float, short_abandon_seconds: float) -> None:
        """The service-level flags under the queue's thresholds (docs/reporting.md, one formula)."""
        if self.answered_at is not None and self.queued_at is not None:
            self.sl_met = (self.answered_at - self.queued_at).total_seconds() <= sl_seconds
        else:
            self.sl_met = None
        if self.answered_at is None and self.abandon_wait_s is not None:
            self.abandon_long = self.abandon_wait_s >= short_abandon_seconds
        else:
            self.abandon_long = None


CONTACT_COLUMNS = tuple(f.name for f in fields(ContactRow))


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


# The events that change a contact's row; each names the contact by its call id.
CONTACT_EVENTS = (
    ev.CallArrived,
    ev.CallHeld,
    ev.ContactQueued,
    ev.ContactAssigned,
    ev.ContactAbandoned,
    ev.ContactOverflowed,
    ev.ContactEnded,
    ev.ContactWrappedUp,
    ev.IvrCompleted,
    ev.IvrSurveyAnswered,
)
# Every event kind reporting reads (the ingest's consumer filters on these).
EVENTS: list[type[Event]] = [*CONTACT_EVENTS, ev.AgentStateChanged, ev.IvrNodeExited, ev.QueueStats]


@dataclass
class Batch:
    """One tenant's events of one batch, sorted by kind. Contact events stay events: the store applies
    them to the stored rows (`apply`), skipping the ids a row already holds."""

    contact_events: dict[uuid.UUID, list[Event]] = field(default_factory=dict)
    agent_states: list[AgentStateRow] = field(default_factory=list)
    ivr_visits: list[IvrVisitRow] = field(default_factory=list)
    queue_stats: list[QueueStatsRow] = field(default_factory=list)

    def months(self) -> set[date]:
        found = {contact_month(contact_id) for contact_id in self.contact_events}
        found |= {month_of(r.at.timestamp()) for r in self.agent_states}
        found |= {month_of(r.at.timestamp()) for r in self.ivr_visits}
        found |= {month_of(r.at.timestamp()) for r in self.queue_stats}
        return found


def _queued(row: ContactRow, e: ev.ContactQueued) -> bool:
    if e.attributes.get("kind") == "consult":
        # An agent consulting a colleague (attended transfer, services/contacts/consult.py): routing queues
        # the consultation as a contact of its own, but no caller waited in line for it; the colleague's
        # work on it still counts for that agent.
        return False
    at = _at(e.ts)
    # With no outcome yet, the contact belongs to the queue it was queued in last (whatever the order
    # the events come in: `requeued_at` is the latest queued time seen).
    if row.answered_at is None and row.abandoned_at is None:
        if row.requeued_at is None or at >= row.requeued_at:
            row.queue_id = e.queue
    if row.requeued_at is None or at > row.requeued_at:
        row.requeued_at = at
    row.earliest("queued_at", at)
    return True


def _assigned(row: ContactRow, e: ev.ContactAssigned) -> bool:
    at = _at(e.ts)
    if row.answered_at is None or at < row.answered_at:
        row.answered_at, row.agent_id, row.queue_id = at, e.agent_id, e.queue_id
    return True


def _abandoned(row: ContactRow, e: ev.ContactAbandoned) -> bool:
    at = _at(e.ts)
    if row.abandoned_at is None or at < row.abandoned_at:
        row.abandoned_at, row.abandon_wait_s = at, e.waited_s
        if row.answered_at is None:  # an answer's queue wins, whichever came first
            row.queue_id = e.queue_id
    return True


def _overflowed(row: ContactRow, e: ev.ContactOverflowed) -> bool:
    if e.kind != "transfer":
        return False
    row.transfers += 1
    return True


def _ended(row: ContactRow, e: ev.ContactEnded) -> bool:
    row.earliest("ended_at", _at(e.ts))
    row.talk_s = (row.talk_s or 0.0) + e.talk_s
    return True


def _wrapped(row: ContactRow, e: ev.ContactWrappedUp) -> bool:
    row.earliest("wrapped_at", _at(e.ts))
    row.handle_s = (row.handle_s or 0.0) + e.handle_s
    return True


def _arrived(row: ContactRow, e: ev.CallArrived) -> bool:
    if e.direction != "inbound":
        return False
    row.earliest("arrived_at", _at(e.ts))
    row.caller = row.caller or e.from_uri or None
    return True


def _held(row: ContactRow, e: ev.CallHeld) -> bool:
    if not e.held:
        return False
    row.holds += 1
    return True


def _ivr_completed(row: ContactRow, e: ev.IvrCompleted) -> bool:
    row.ivr_flow, row.ivr_outcome, row.ivr_s = e.flow, e.outcome, e.seconds
    return True


def _survey(row: ContactRow, e: ev.IvrSurveyAnswered) -> bool:
    if e.max <= e.min:
        return False
    row.survey_score = (row.survey_score or 0.0) + (e.score - e.min) / (e.max - e.min)
    row.survey_n += 1
    return True


# One handler per contact event kind: the whole mapping from events to a contact's facts in one table.
# Each returns whether the row changed (an outbound arrival or a hold's release changes nothing).
CONTACT_HANDLERS: dict[type[Event], Callable[[ContactRow, Any], bool]] = {
    ev.CallArrived: _arrived,
    ev.CallHeld: _held,
    ev.ContactQueued: _queued,
    ev.ContactAssigned: _assigned,
    ev.ContactAbandoned: _abandoned,
    ev.ContactOverflowed: _overflowed,
    ev.ContactEnded: _ended,
    ev.ContactWrappedUp: _wrapped,
    ev.IvrCompleted: _ivr_completed,
    ev.IvrSurveyAnswered: _survey,
}


# The kinds CONTACT_HANDLERS holds, for the type checker: every one names its call (call_id).
ContactEvent = (
    ev.CallArrived
    | ev.CallHeld
    | ev.ContactQueued
    | ev.ContactAssigned
    | ev.ContactAbandoned
    | ev.ContactOverflowed
    | ev.ContactEnded
    | ev.ContactWrappedUp
    | ev.IvrCompleted
    | ev.IvrSurveyAnswered
)


def _is_contact_event(event: Event) -> TypeGuard[ContactEvent]:
    return type(event) in CONTACT_HANDLERS


def apply(row: ContactRow, events: list[Event]) -> int:
    """Apply the events `row` does not hold yet; returns how many changed it (and are now held by it).
    Order-free: earliest times win, sums add, the outcome's queue wins."""
    seen = set(row.events)
    new = 0
    for event in events:
        if event.id not in seen and CONTACT_HANDLERS[type(event)](row, event):
            seen.add(event.id)
            row.events.append(event.id)
            new += 1
    return new


REPEAT_WINDOWS = (timedelta(hours=24), timedelta(days=7))
REPEAT_WINDOW = REPEAT_WINDOWS[-1]


def mark_repeats(rows: list[ContactRow], *, upto: datetime) -> None:
    """First-contact resolution flags: a contact is a repeat within 24 h (7 days) when the same caller's
    next contact arrived within that long after it. `rows` must hold every contact of these callers from
    7 days before the earliest to be marked up to 7 days after `upto`; only contacts arrived by `upto`
    are marked (later ones' next contacts may lie outside `rows`)."""
    by_caller: dict[str, list[ContactRow]] = {}
    for row in rows:
        if row.caller and row.arrived_at is not None:
            by_caller.setdefault(row.caller, []).append(row)
    for contacts in by_caller.values():
        contacts.sort(key=lambda r: (r.arrived_at, r.contact_id))
        for row, following in zip(contacts, [*contacts[1:], None], strict=True):
            if row.arrived_at is None or row.arrived_at > upto:
                continue
            gap = following.arrived_at - row.arrived_at if following and following.arrived_at else None
            row.repeat_24h = gap is not None and gap <= REPEAT_WINDOWS[0]
            row.repeat_7d = gap is not None and gap <= REPEAT_WINDOWS[1]


def split(events: list[Event]) -> Batch:
    """One tenant's events by kind (duplicates within the batch dropped)."""
    batch = Batch()
    for e in {e.id: e for e in events}.values():
        # By exact type (events are decoded to their registered type): isinstance against the event
        # classes goes through ABC checks, several per event, a tenth of the ingest's Python time.
        if _is_contact_event(e):
            batch.contact_events.setdefault(e.call_id, []).append(e)
        elif type(e) is ev.AgentStateChanged:
            batch.agent_states.append(AgentStateRow(e.agent_id, _at(e.ts), e.id, e.new, e.reason))
        elif type(e) is ev.IvrNodeExited:
            batch.ivr_visits.append(
                IvrVisitRow(_at(e.ts), e.id, e.call_id, e.flow, e.version, e.node, e.result, e.seconds)
            )
        elif type(e) is ev.QueueStats:
            batch.queue_stats.append(
                QueueStatsRow(
                    e.queue_id, _at(e.ts), e.id, e.waiting, e.longest_wait_s, e.ready, dict(e.agents)
                )
            )
    return batch
