"""Queues: skill requirements (minimum proficiency), priority, service-level target, short-abandon threshold."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody, QueryParameter
from switchboard.flowdef.flow import Flow
from switchboard.flowdef.validate import queues_of

from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id

from .agents import SkillMap
from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, FieldError, Problem, conflict, not_found
from .queries import queues as sql
from .queue_rules import (
    ClosedTreatment,
    OverflowRule,
    PriorityRule,
    Seconds,
    Strategy,
    check_rules,
    check_targets,
    rule_changes,
    rules_from_row,
)
from .sites import require_site
from .validation import check_name, check_skills, check_text

__all__ = ["Queue", "QueueController"]

Priority = Annotated[int, msgspec.Meta(ge=1, le=99, description="1-99; higher is served first")]
SlPercent = Annotated[int, msgspec.Meta(ge=1, le=100, description="service-level target, percent")]
SlSeconds = Annotated[int, msgspec.Meta(ge=1, le=3600, description="service-level threshold, seconds")]
ShortAbandon = Annotated[
    int, msgspec.Meta(ge=0, le=600, description="abandons faster than this do not count")
]
WrapUp = Annotated[int, msgspec.Meta(ge=0, le=3600, description="after-call work, seconds")]
RecordingPercent = Annotated[
    int,
    msgspec.Meta(ge=0, le=100, description="share of calls recorded: 100 all, 0 none; null: the tenant's"),
]
RetentionDays = Annotated[
    int, msgspec.Meta(ge=1, le=36500, description="days recordings are kept; null: the tenant's setting")
]
OfferTimeout = Annotated[
    int, msgspec.Meta(ge=5, le=300, description="how long an offer rings before it counts as missed")
]
Announce = Annotated[
    int,
    msgspec.Meta(ge=5, le=3600, description="seconds between position announcements; null: none"),
]
Hours = dict[str, list[str]]
ClosedMessage = Annotated[str, msgspec.Meta(max_length=500)]
RecordingAnnouncement = Annotated[
    str,
    msgspec.Meta(
        max_length=500,
        description="said to recorded callers before an agent; null: the tenant's; empty: none for this queue",
    ),
]


class Queue(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    skills: dict[str, int]
    priority: int
    sl_percent: int
    sl_seconds: int
    short_abandon_seconds: int
    wrap_up_seconds: int
    offer_timeout_seconds: int
    recording_percent: int | None
    recording_retention_days: int | None
    # Said to a recorded caller before an agent (docs/recording.md); null: the tenant's; "": none here.
    recording_announcement: str | None
    site_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    # Routing rules (docs/routing.md, "Queue rules").
    strategy: Strategy
    overflow: list[OverflowRule]
    hours: Hours | None  # weekday -> ["HH:MM-HH:MM"] in the tenant's time zone; null: always open
    holidays: list[date]
    closed_treatment: ClosedTreatment
    closed_message: str | None
    closed_queue_id: uuid.UUID | None
    closed_flow_id: uuid.UUID | None  # closed_treatment "flow": the IVR flow callers are handed to
    survey_flow_id: uuid.UUID | None  # after the agent leaves, callers go to this flow (a survey)
    priority_rules: list[PriorityRule]
    spill_after_seconds: int | None
    spill_expected_wait_seconds: int | None
    announce_seconds: int | None


class QueuePage(msgspec.Struct):
    items: list[Queue]
    next_cursor: str | None


class QueueCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)]
    skills: SkillMap | None = None
    priority: Priority = 50
    sl_percent: SlPercent = 80
    sl_seconds: SlSeconds = 20
    short_abandon_seconds: ShortAbandon = 5
    wrap_up_seconds: WrapUp = 30
    offer_timeout_seconds: OfferTimeout = 20
    recording_percent: RecordingPercent | None = None
    recording_retention_days: RetentionDays | None = None
    recording_announcement: RecordingAnnouncement | None = None
    site_id: uuid.UUID | None = None
    strategy: Strategy = "longest_idle"
    overflow: list[OverflowRule] = msgspec.field(default_factory=list)
    hours: Hours | None = None
    holidays: list[date] = msgspec.field(default_factory=list)
    closed_treatment: ClosedTreatment = "message"
    closed_message: ClosedMessage | None = None
    closed_queue_id: uuid.UUID | None = None
    closed_flow_id: uuid.UUID | None = None
    survey_flow_id: uuid.UUID | None = None
    priority_rules: list[PriorityRule] = msgspec.field(default_factory=list)
    spill_after_seconds: Seconds | None = None
    spill_expected_wait_seconds: Seconds | None = None
    announce_seconds: Announce | None = 60


class QueuePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=100)] | msgspec.UnsetType = msgspec.UNSET
    skills: SkillMap | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    sl_percent: SlPercent | msgspec.UnsetType = msgspec.UNSET
    sl_seconds: SlSeconds | msgspec.UnsetType = msgspec.UNSET
    short_abandon_seconds: ShortAbandon | msgspec.UnsetType = msgspec.UNSET
    wrap_up_seconds: WrapUp | msgspec.UnsetType = msgspec.UNSET
    offer_timeout_seconds: OfferTimeout | msgspec.UnsetType = msgspec.UNSET
    recording_percent: RecordingPercent | msgspec.UnsetType | None = msgspec.UNSET
    recording_retention_days: RetentionDays | msgspec.UnsetType | None = msgspec.UNSET
    recording_announcement: RecordingAnnouncement | msgspec.UnsetType | None = msgspec.UNSET
    # null: the queue serves every site.
    site_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    strategy: Strategy | msgspec.UnsetType = msgspec.UNSET
    overflow: list[OverflowRule] | msgspec.UnsetType = msgspec.UNSET
    hours: Hours | msgspec.UnsetType | None = msgspec.UNSET
    holidays: list[date] | msgspec.UnsetType = msgspec.UNSET
    closed_treatment: ClosedTreatment | msgspec.UnsetType = msgspec.UNSET
    closed_message: ClosedMessage | msgspec.UnsetType | None = msgspec.UNSET
    closed_queue_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    closed_flow_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    survey_flow_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    priority_rules: list[PriorityRule] | msgspec.UnsetType = msgspec.UNSET
    spill_after_seconds: Seconds | msgspec.UnsetType | None = msgspec.UNSET
    spill_expected_wait_seconds: Seconds | msgspec.UnsetType | None = msgspec.UNSET
    announce_seconds: Announce | msgspec.UnsetType | None = msgspec.UNSET


def queue_from_row(row: asyncpg.Record) -> Queue:
    return Queue(
        id=row["id"],
        name=row["name"],
        skills=msgspec.json.decode(row["skills"], type=dict[str, int]),
        priority=row["priority"],
        sl_percent=row["sl_percent"],
        sl_seconds=row["sl_seconds"],
        short_abandon_seconds=row["short_abandon_seconds"],
        wrap_up_seconds=row["wrap_up_seconds"],
        offer_timeout_seconds=row["offer_timeout_seconds"],
        recording_percent=row["recording_percent"],
        recording_retention_days=row["recording_retention_days"],
        recording_announcement=row["recording_announcement"],
        site_id=row["site_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        **rules_from_row(row),
    )


def _announcement(text: str | None) -> str | None:
    """Null (the tenant's), "" (none for this queue), or text a caller can be read."""
    if text is None or not text.strip():
        return text if text is None else ""
    return check_text("recording_announcement", text, max_len=500)


def _name_taken(name: str) -> Exception:
    return conflict(f"a queue named {name!r} already exists")


_SCALARS = (
    "priority",
    "sl_percent",
    "sl_seconds",
    "short_abandon_seconds",
    "wrap_up_seconds",
    "offer_timeout_seconds",
    "recording_percent",
    "recording_retention_days",
)


class QueueController(Controller):
    path = "/v1/queues"
    tags = ["queues"]

    @post("/", responses=WRITE_ERRORS, status_code=201, guards=[admin_only], summary="Create a queue")
    async def create_queue(self, mutation: MutationDep, data: JSONBody[QueueCreate]) -> Response[Queue]:
        name = check_name("name", data.name)
        skills = check_skills("skills", data.skills or {})
        rules = check_rules(data)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Queue]:
            if data.site_id is not None:
                await require_site(conn, "site_id", data.site_id)
            await check_targets(conn, None, rules)
            try:
                async with conn.transaction():
                    values = {
                        "name": name,
                        "skills": msgspec.json.encode(skills).decode(),
                        **{k: getattr(data, k) for k in _SCALARS},
                        "site_id": data.site_id,
                        "recording_announcement": _announcement(data.recording_announcement),
                    }
                    row = await sql.insert(conn, new_id(), principal.tenant_id, values, rules)
            except asyncpg.UniqueViolationError:
                raise _name_taken(name) from None
            queue = queue_from_row(row)
            detail: dict[str, Any] = {"name": name, "skills": skills}
            detail.update({k: getattr(data, k) for k in _SCALARS})
            detail["site_id"] = str(data.site_id) if data.site_id else None
            detail.update(rule_changes(rules))
            await audit(conn, principal, "queue.created", "queue", queue.id, detail)
            return Outcome(
                201,
                queue,
                [
                    ConfigChanged(
                        tenant_id=principal.tenant_id, kind="queue", op="created", object_id=queue.id
                    )
                ],
            )

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List queues")
    async def list_queues(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> QueuePage:
        rows, next_cursor = await read_page(tenant_conn, "queues", sql.COLUMNS, limit, cursor)
        return QueuePage(items=[queue_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{queue_id:str}", responses=READ_ERRORS, summary="Read a queue")
    async def get_queue(self, tenant_conn: TenantConnDep, queue_id: IdParam) -> Queue:
        row = await sql.get(tenant_conn, path_id(queue_id, "queue"))
        if row is None:
            raise not_found("queue")
        return queue_from_row(row)

    @patch(
        "/{queue_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Change a queue (skills are replaced whole)",
    )
    async def update_queue(
        self, mutation: MutationDep, queue_id: IdParam, data: JSONBody[QueuePatch]
    ) -> Response[Queue]:
        qid = path_id(queue_id, "queue")
        changes: dict[str, Any] = {}
        if data.name is not msgspec.UNSET:
            changes["name"] = check_name("name", data.name)
        if data.skills is not msgspec.UNSET:
            changes["skills"] = msgspec.json.encode(check_skills("skills", data.skills)).decode()
        for field in _SCALARS:
            value = getattr(data, field)
            if value is not msgspec.UNSET:
                changes[field] = value
        if data.site_id is not msgspec.UNSET:
            changes["site_id"] = data.site_id
        if data.recording_announcement is not msgspec.UNSET:
            changes["recording_announcement"] = _announcement(data.recording_announcement)
        changes.update(check_rules(data))

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Queue]:
            if not changes:
                row = await sql.get(conn, qid)
                if row is None:
                    raise not_found("queue")
                return Outcome(200, queue_from_row(row))
            if changes.get("site_id") is not None:
                await require_site(conn, "site_id", changes["site_id"])
            await check_targets(conn, qid, changes)
            try:
                async with conn.transaction():
                    row = await sql.update(conn, qid, changes)
            except asyncpg.UniqueViolationError:
                raise _name_taken(changes.get("name", "")) from None
            if row is None:
                raise not_found("queue")
            detail = rule_changes(changes)
            if "skills" in detail:
                detail["skills"] = msgspec.json.decode(detail["skills"])
            await audit(conn, principal, "queue.updated", "queue", qid, detail)
            return Outcome(
                200,
                queue_from_row(row),
                [ConfigChanged(tenant_id=principal.tenant_id, kind="queue", op="updated", object_id=qid)],
            )

        return await mutation.run(work)

    @delete(
        "/{queue_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Delete a queue (refused while numbers or flows use it, unless force=true)",
    )
    async def delete_queue(
        self,
        mutation: MutationDep,
        queue_id: IdParam,
        force: Annotated[
            bool,
            QueryParameter(
                description="delete even while used: its numbers are unrouted, flows naming it must be "
                "redeployed"
            ),
        ] = False,
    ) -> Response[None]:
        qid = path_id(queue_id, "queue")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            name = await sql.lock_name(conn, qid)
            if name is None:
                raise not_found("queue")
            numbers, flows = await queue_users(conn, qid, name)
            if (numbers or flows) and not force:
                users = [FieldError("numbers", n) for n in numbers] + [FieldError("flows", f) for f in flows]
                raise Problem(
                    409,
                    f"queue {name!r} is in use by {describe_users(numbers, flows)}; point them elsewhere "
                    "first, or delete with force=true (its numbers are then unrouted, and those flows name "
                    "a queue that no longer exists until redeployed)",
                    errors=users,
                )
            await sql.delete(conn, qid)
            detail: dict[str, Any] = {"name": name}
            if numbers or flows:
                detail |= {"forced": True, "unrouted_numbers": numbers, "flows": flows}
            await audit(conn, principal, "queue.deleted", "queue", qid, detail)
            return Outcome(
                204,
                None,
                [ConfigChanged(tenant_id=principal.tenant_id, kind="queue", op="deleted", object_id=qid)],
            )

        return await mutation.run(work)


async def queue_users(
    conn: asyncpg.Connection, queue_id: uuid.UUID, name: str
) -> tuple[list[str], list[str]]:
    """The numbers routed straight to the queue, and the flows whose current version names it."""
    numbers = await sql.numbers_routed(conn, queue_id)
    rows = await sql.current_flows(conn)
    flows = [
        r["name"]
        for r in rows
        if name in flow_queues(msgspec.json.decode(r["definition"].encode(), type=Flow))
    ]
    return numbers, flows


def flow_queues(flow: Flow) -> set[str]:
    nodes = [*flow.nodes.values(), *(n for sub in flow.subflows.values() for n in sub.nodes.values())]
    return {queue for node in nodes for queue in queues_of(node)}


def describe_users(numbers: list[str], flows: list[str]) -> str:
    parts = []
    if numbers:
        parts.append(f"number{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}")
    if flows:
        parts.append(f"flow{'s' if len(flows) > 1 else ''} {', '.join(flows)}")
    return " and ".join(parts)
