"""Contact history (read-only): the records the contact coordinator writes (services/contacts/records.py),
newest first, filtered by time, queue, agent or caller; one contact whole, with its timeline."""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from services.contacts.records import ContactRecord, contact_from_row
from services.kernel.ids import parse_id

from .crud import IdParam, path_id
from .deps import TenantConnDep
from .pagination import DEFAULT_LIMIT, LimitParam
from .problems import READ_ERRORS, not_found, validation
from .queries import contacts as sql
from .seats import _utc
from .validation import check_text

__all__ = ["Contact", "ContactController", "ContactSummary", "TimelineEntry"]


class ContactSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    direction: str
    caller: str
    caller_name: str
    dialled: str
    queue_id: uuid.UUID | None
    queue_name: str
    agent_id: uuid.UUID | None
    state: str
    outcome: str | None
    cause: str | None
    disposition: str | None
    arrived_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    ivr_s: float | None
    queue_s: float | None
    talk_s: float | None


class TimelineEntry(msgspec.Struct, kw_only=True):
    at: datetime
    event: str
    detail: dict[str, str]


class Contact(ContactSummary, kw_only=True):
    number_id: uuid.UUID | None
    flow_id: uuid.UUID | None
    notes: str | None
    ivr_path: list[str]
    ivr_digits: str
    attributes: dict[str, str]
    transfers: list[dict[str, str]]
    timeline: list[TimelineEntry]
    queued_at: datetime | None
    offered_at: datetime | None
    wrapped_at: datetime | None
    updated_at: datetime
    # Its recording (same id as the contact; GET /v1/recordings/{id}), when one exists and is not deleted.
    recording: dict[str, Any] | None = None
    # Every recording of the conversation in order (a transfer's next agent, a consultation: docs/recording.md).
    recordings: list[dict[str, Any]] = []
    # Messages the caller left on this call (the IVR's voicemail node): each a recording of kind voicemail
    # whose id is its desk task's contact id.
    voicemails: list[dict[str, Any]] = []


class ContactPage(msgspec.Struct):
    items: list[ContactSummary]
    next_cursor: str | None


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _summary_fields(r: ContactRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "direction": r.direction,
        "caller": r.caller,
        "caller_name": r.caller_name,
        "dialled": r.dialled,
        "queue_id": r.queue_id,
        "queue_name": r.queue_name,
        "agent_id": r.agent_id,
        "state": r.state,
        "outcome": r.outcome,
        "cause": r.cause,
        "disposition": r.disposition,
        "arrived_at": _dt(r.arrived_at),
        "connected_at": _dt(r.connected_at),
        "ended_at": _dt(r.ended_at),
        "ivr_s": r.ivr_s,
        "queue_s": r.queue_s,
        "talk_s": r.talk_s,
    }


def _with_queue_name(r: ContactRecord, live_name: str | None) -> ContactRecord:
    # The name stored at queueing time wins; older records (or a coordinator that did not store one) get
    # the live queue's name, if the queue still exists.
    if not r.queue_name and live_name:
        r.queue_name = live_name
    return r


def contact_from(r: ContactRecord, updated_at: datetime) -> Contact:
    return Contact(
        **_summary_fields(r),
        number_id=r.number_id,
        flow_id=r.flow_id,
        notes=r.notes,
        ivr_path=r.ivr_path,
        ivr_digits=r.ivr_digits,
        attributes=r.attributes,
        transfers=r.transfers,
        timeline=[
            TimelineEntry(at=datetime.fromtimestamp(e.at, UTC), event=e.event, detail=e.detail)
            for e in r.timeline
        ],
        queued_at=_dt(r.queued_at),
        offered_at=_dt(r.offered_at),
        wrapped_at=_dt(r.wrapped_at),
        updated_at=updated_at,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Keyset over (arrived_at, id), newest first: the cursor is the last row's arrival (microseconds) and id.
_CURSOR = struct.Struct("!q16s")


def _encode_cursor(arrived_at: datetime, contact_id: uuid.UUID) -> str:
    micros = (arrived_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(_CURSOR.pack(micros, contact_id.bytes)).rstrip(b"=").decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, id_bytes = _CURSOR.unpack(raw)
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=id_bytes)
    except (ValueError, binascii.Error, struct.error, OverflowError, OSError):
        raise validation("cursor", "not a cursor this API returned") from None


ContactCursorParam = Annotated[
    str | None,
    QueryParameter(name="cursor", max_length=200, description="next_cursor of the previous page"),
]


class ContactController(Controller):
    path = "/v1/contacts"
    tags = ["contacts"]

    @get("/", responses=READ_ERRORS, summary="List contacts, newest first")
    async def list_contacts(
        self,
        tenant_conn: TenantConnDep,
        since: Annotated[
            datetime | None,
            QueryParameter(name="since", description="ISO 8601: contacts that arrived at or after it"),
        ] = None,
        queue: Annotated[
            str | None, QueryParameter(name="queue", max_length=100, description="queue id or name")
        ] = None,
        agent: Annotated[
            str | None,
            QueryParameter(name="agent", max_length=254, description="agent id or email"),
        ] = None,
        caller: Annotated[
            str | None,
            QueryParameter(name="caller", max_length=100, description="the caller's number, exactly"),
        ] = None,
        limit: LimitParam = DEFAULT_LIMIT,
        cursor: ContactCursorParam = None,
    ) -> ContactPage:
        after = _decode_cursor(cursor)
        queue, agent, caller = (
            _filter_text(name, value)
            for name, value in (("queue", queue), ("agent", agent), ("caller", caller))
        )
        since_at = _utc("since", since) if since is not None else None
        queue_id, queue_name = await _queue_filter(tenant_conn, queue)
        agent_id = await _agent_filter(tenant_conn, agent)
        rows = await sql.page(
            tenant_conn,
            since=since_at,
            queue_id=queue_id,
            queue_name=queue_name,
            agent_id=agent_id,
            caller=caller,
            after=after,
            limit=limit + 1,
        )
        items = [
            ContactSummary(**_summary_fields(_with_queue_name(contact_from_row(r), r["live_queue_name"])))
            for r in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last["arrived_at"], last["id"])
        return ContactPage(items=items, next_cursor=next_cursor)

    @get("/{contact_id:str}", responses=READ_ERRORS, summary="Read a contact with its timeline")
    async def get_contact(self, tenant_conn: TenantConnDep, contact_id: IdParam) -> Contact:
        cid = path_id(contact_id, "contact")
        row = await sql.get(tenant_conn, cid)
        if row is None:
            raise not_found("contact")
        recordings = await sql.recordings(tenant_conn, cid)
        voicemails = await sql.voicemails(tenant_conn, cid)
        recording = next((r for r in recordings if r["id"] == cid), None)
        record = _with_queue_name(contact_from_row(row), row["live_queue_name"])
        contact = contact_from(record, row["updated_at"])
        if recording is not None:
            contact.recording = {
                "id": str(recording["id"]),
                "status": recording["status"],
                "partial": recording["partial"],
                "duration_s": recording["duration_s"],
                "url": f"/v1/recordings/{recording['id']}",
            }
        contact.recordings = [
            {
                "id": str(r["id"]),
                "segment": r["segment"],
                "kind": r["segment_kind"],
                "agent_id": str(r["agent_id"]) if r["agent_id"] else None,
                "consulted_agent_id": str(r["consulted_agent_id"]) if r["consulted_agent_id"] else None,
                "status": r["status"],
                "duration_s": r["duration_s"],
                "url": f"/v1/recordings/{r['id']}",
            }
            for r in recordings
        ]
        contact.voicemails = [
            {
                "id": str(r["id"]),
                "status": r["status"],
                "duration_s": r["duration_s"],
                "url": f"/v1/recordings/{r['id']}",
                "task": f"/v1/contacts/{r['id']}",
            }
            for r in voicemails
        ]
        return contact


def _filter_text(field: str, value: str | None) -> str | None:
    """A filter's text, trimmed; empty means no filter. NUL and other control characters are a 422 (text
    columns cannot hold NUL, and no name or number contains one)."""
    if value is None or not value.strip():
        return None
    return check_text(field, value, max_len=254)


async def _queue_filter(conn: asyncpg.Connection, ref: str | None) -> tuple[uuid.UUID | None, str | None]:
    """A queue id, or a name: the live queue of that name (its contacts by id) plus contacts that were
    queued under that name (kept after the queue is renamed or deleted)."""
    if ref is None:
        return None, None
    object_id = parse_id(ref)
    if object_id is not None:
        return object_id, None
    return await sql.queue_by_name(conn, ref), ref


async def _agent_filter(conn: asyncpg.Connection, ref: str | None) -> uuid.UUID | None:
    if ref is None:
        return None
    object_id = parse_id(ref)
    if object_id is not None:
        return object_id
    found = await sql.agent_by_email(conn, ref)
    if found is None:
        raise validation("agent", "no agent with this id or email")
    return found
