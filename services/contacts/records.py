"""Contact records in PostgreSQL: one row per contact with its timeline, written by the contact coordinator
and read by the API and by the offer's context (a caller's repeat count and last contacts). The coordinator
writes a contact's first step whole (upsert) and each later one incrementally (`write_contact`): the row's
columns and the timeline entries added since, appended in PostgreSQL, never the whole timeline again.

Every function takes an asyncpg connection inside the caller's `tenant_tx`, so row-level security scopes it
to one tenant. Times are epoch seconds (float) in the structs and timestamptz in the table."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.kernel.events import ContactPhase

__all__ = [
    "CONTACT_COLUMNS",
    "PLATFORM_CAUSES",
    "PLATFORM_FAILURE",
    "PLATFORM_RESTART",
    "WORKER_LOST",
    "ContactRecord",
    "TimelineEntry",
    "caller_history",
    "contact_from_row",
    "iso_utc",
    "load_contact",
    "save_contact",
    "write_contact",
]


WORKER_LOST = "media_worker_lost"  # call.ended's cause when a media worker dies (docs/media.md, Sharding)
# Causes that are the platform's failure, not the caller's or the agent's choice: the record says so
# (outcome PLATFORM_FAILURE), never "abandoned".
PLATFORM_RESTART = "platform_restart"  # the call was gone when the coordinator came back (reconcile)
PLATFORM_CAUSES = frozenset((WORKER_LOST, "shutdown", PLATFORM_RESTART))
PLATFORM_FAILURE = "platform_failure"


class TimelineEntry(msgspec.Struct, kw_only=True):
    at: float  # epoch seconds
    event: str
    detail: dict[str, str] = {}


class ContactRecord(msgspec.Struct, kw_only=True):
    id: uuid.UUID  # the caller's call id
    tenant_id: uuid.UUID
    direction: str = "inbound"
    caller: str = ""  # the caller's number; '' when unknown
    caller_name: str = ""
    dialled: str = ""
    number_id: uuid.UUID | None = None
    flow_id: uuid.UUID | None = None
    queue_id: uuid.UUID | None = None
    # The queue's name when the contact was queued: kept because the queue may be renamed or deleted later.
    queue_name: str = ""
    agent_id: uuid.UUID | None = None
    state: ContactPhase
    outcome: str | None = None
    cause: str | None = None
    disposition: str | None = None
    notes: str | None = None
    ivr_path: list[str] = []
    ivr_digits: str = ""
    attributes: dict[str, str] = {}
    transfers: list[dict[str, str]] = []
    timeline: list[TimelineEntry] = []
    arrived_at: float
    queued_at: float | None = None
    offered_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    wrapped_at: float | None = None
    ivr_s: float | None = None
    queue_s: float | None = None
    talk_s: float | None = None


_TIMES = ("arrived_at", "queued_at", "offered_at", "connected_at", "ended_at", "wrapped_at")
_PLAIN = (
    "id",
    "tenant_id",
    "direction",
    "caller",
    "caller_name",
    "dialled",
    "number_id",
    "flow_id",
    "queue_id",
    "queue_name",
    "agent_id",
    "state",
    "outcome",
    "cause",
    "disposition",
    "notes",
    "ivr_path",
    "ivr_digits",
)
_JSON = ("attributes", "transfers", "timeline")
_DURATIONS = ("ivr_s", "queue_s", "talk_s")
_ALL = (*_PLAIN, *_JSON, *_TIMES, *_DURATIONS)
CONTACT_COLUMNS = ", ".join(_ALL)

_CASTS = {"attributes": "::jsonb", "transfers": "::jsonb", "timeline": "::jsonb"}
_UPSERT = (
    f"INSERT INTO contacts ({CONTACT_COLUMNS}, updated_at) VALUES ("
    + ", ".join(f"${i}{_CASTS.get(col, '')}" for i, col in enumerate(_ALL, start=1))
    + ", now()) ON CONFLICT (id) DO UPDATE SET "
    # tenant_id and id never change; a row of another tenant with this id is invisible and the UPDATE's
    # policy check refuses it rather than overwriting it.
    + ", ".join(f"{col} = EXCLUDED.{col}" for col in _ALL if col not in ("id", "tenant_id"))
    + ", updated_at = now()"
)


# The step after the first: every column but the timeline set again (a handful of short values), the
# timeline's new entries appended, on the condition that the row holds exactly the entries written before.
_STEP = [col for col in _ALL if col not in ("id", "tenant_id", "timeline")]
_APPEND = (
    "UPDATE contacts SET "
    + ", ".join(f"{col} = ${i}{_CASTS.get(col, '')}" for i, col in enumerate(_STEP, start=4))
    + ", timeline = timeline || $2::jsonb, updated_at = now()"
    + " WHERE id = $1 AND jsonb_array_length(timeline) = $3"
)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def iso_utc(epoch: float) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond: 2026-11-23T17:51:11.250Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a caller name from a SIP header could carry one.
    return None if value is None else value.replace("\x00", "")


def _args(record: ContactRecord, columns: list[str] | tuple[str, ...]) -> list[Any]:
    args: list[Any] = []
    for col in columns:
        value = getattr(record, col)
        if col in _TIMES:
            args.append(_ts(value))
        elif col in _JSON:
            args.append(msgspec.json.encode(value).decode())
        elif col == "ivr_path":
            args.append([_text(v) for v in value])
        elif isinstance(value, str):
            args.append(_text(value))
        else:
            args.append(value)
    return args


async def save_contact(conn: asyncpg.Connection, record: ContactRecord) -> None:
    """Write the whole record (insert or replace): saving the same record twice leaves one identical row."""
    await conn.execute(_UPSERT, *_args(record, _ALL))


async def write_contact(conn: asyncpg.Connection, record: ContactRecord, written: int | None) -> int:
    """Write the record's step: with `written` (the timeline entries this writer put in the row before),
    its columns and the entries after those, appended; whole when `written` is None (the first step, or a
    coordinator that took the contact over) or when the row does not hold exactly that many entries (a
    write that was rolled back, another writer). Returns the entries the row now holds."""
    timeline = record.timeline
    if written is not None and written <= len(timeline):
        added = msgspec.json.encode(timeline[written:]).decode()
        done = await conn.execute(_APPEND, record.id, added, written, *_args(record, _STEP))
        if done == "UPDATE 1":
            return len(timeline)
    await save_contact(conn, record)
    return len(timeline)


def contact_from_row(row: Mapping[str, Any]) -> ContactRecord:
    values: dict[str, Any] = {col: row[col] for col in _PLAIN}
    values["ivr_path"] = list(row["ivr_path"])
    values["attributes"] = msgspec.json.decode(row["attributes"], type=dict[str, str])
    values["transfers"] = msgspec.json.decode(row["transfers"], type=list[dict[str, str]])
    values["timeline"] = msgspec.json.decode(row["timeline"], type=list[TimelineEntry])
    for col in _TIMES:
        values[col] = _epoch(row[col])
    for col in _DURATIONS:
        values[col] = row[col]
    return ContactRecord(**values)


async def load_contact(conn: asyncpg.Connection, contact_id: uuid.UUID) -> ContactRecord | None:
    row = await conn.fetchrow(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1", contact_id)
    return None if row is None else contact_from_row(row)


async def caller_history(
    conn: asyncpg.Connection, caller: str, *, since: float, exclude: uuid.UUID | None, limit: int = 3
) -> tuple[int, list[dict[str, str]]]:
    """How many contacts this caller made since `since` (epoch seconds), and their last `limit` contacts of
    any age, newest first, each {contact_id, at (ISO 8601 UTC), queue (name, '' if none), outcome,
    disposition} ('' for unset). `exclude` is the contact being offered, which is not history yet. An
    unknown caller ('') has no history: anonymous callers are not one person."""
    if not caller:
        return 0, []
    count = await conn.fetchval(
        """SELECT count(*) FROM contacts
           WHERE caller = $1 AND arrived_at >= $2 AND ($3::uuid IS NULL OR id <> $3)""",
        caller,
        _ts(since),
        exclude,
    )
    rows = await conn.fetch(
        """SELECT c.id, c.arrived_at, COALESCE(NULLIF(c.queue_name, ''), q.name, '') AS queue,
                  COALESCE(c.outcome, '') AS outcome, COALESCE(c.disposition, '') AS disposition
           FROM contacts c LEFT JOIN queues q ON q.id = c.queue_id
           WHERE c.caller = $1 AND ($2::uuid IS NULL OR c.id <> $2)
           ORDER BY c.arrived_at DESC, c.id DESC LIMIT $3""",
        caller,
        exclude,
        max(0, limit),
    )
    last = [
        {
            "contact_id": str(r["id"]),
            "at": iso_utc(r["arrived_at"].timestamp()),
            "queue": r["queue"],
            "outcome": r["outcome"],
            "disposition": r["disposition"],
        }
        for r in rows
    ]
    return int(count), last
