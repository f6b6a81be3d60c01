"""Phone numbers: claimed by exactly one tenant (E.164, globally unique), pointed at a queue (later a flow)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id

from .auth import Principal, admin_only
from .crud import IdParam, path_id, read_page
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, conflict, not_found, validation
from .queries import numbers as sql
from .validation import check_e164

__all__ = ["Number", "NumberController"]


class Number(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    e164: str
    queue_id: uuid.UUID | None
    flow_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class NumberPage(msgspec.Struct):
    items: list[Number]
    next_cursor: str | None


class NumberCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    e164: Annotated[str, msgspec.Meta(max_length=32, description="+ then 7-15 digits, e.g. +15550100")]
    queue_id: uuid.UUID | None = None


class NumberPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # null: the number points at no queue.
    queue_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET


def number_from_row(row: asyncpg.Record) -> Number:
    return Number(
        id=row["id"],
        e164=row["e164"],
        queue_id=row["queue_id"],
        flow_id=row["flow_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _require_queue(conn: asyncpg.Connection, queue_id: uuid.UUID) -> None:
    if not await sql.queue_exists(conn, queue_id):
        raise validation("queue_id", "no queue with this id")


class NumberController(Controller):
    path = "/v1/numbers"
    tags = ["numbers"]

    @post(
        "/",
        responses=WRITE_ERRORS,
        status_code=201,
        guards=[admin_only],
        summary="Claim a number (409 if any tenant holds it)",
    )
    async def claim_number(self, mutation: MutationDep, data: JSONBody[NumberCreate]) -> Response[Number]:
        e164 = check_e164("e164", data.e164)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Number]:
            if data.queue_id is not None:
                await _require_queue(conn, data.queue_id)
            try:
                async with conn.transaction():
                    row = await sql.insert(conn, new_id(), principal.tenant_id, e164, data.queue_id)
            except asyncpg.UniqueViolationError:
                raise conflict(f"the number {e164} is already claimed") from None
            number = number_from_row(row)
            detail = {"e164": e164, "queue_id": str(data.queue_id) if data.queue_id else None}
            await audit(conn, principal, "number.claimed", "number", number.id, detail)
            return Outcome(
                201,
                number,
                [
                    ConfigChanged(
                        tenant_id=principal.tenant_id, kind="number", op="created", object_id=number.id
                    )
                ],
            )

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List numbers")
    async def list_numbers(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> NumberPage:
        rows, next_cursor = await read_page(tenant_conn, "numbers", sql.COLUMNS, limit, cursor)
        return NumberPage(items=[number_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{number_id:str}", responses=READ_ERRORS, summary="Read a number")
    async def get_number(self, tenant_conn: TenantConnDep, number_id: IdParam) -> Number:
        row = await sql.get(tenant_conn, path_id(number_id, "number"))
        if row is None:
            raise not_found("number")
        return number_from_row(row)

    @patch(
        "/{number_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Point a number at a queue (or at none)",
    )
    async def update_number(
        self, mutation: MutationDep, number_id: IdParam, data: JSONBody[NumberPatch]
    ) -> Response[Number]:
        nid = path_id(number_id, "number")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Number]:
            if data.queue_id is msgspec.UNSET:
                row = await sql.get(conn, nid)
                if row is None:
                    raise not_found("number")
                return Outcome(200, number_from_row(row))
            if data.queue_id is not None:
                await _require_queue(conn, data.queue_id)
            row = await sql.route_to_queue(conn, nid, data.queue_id)
            if row is None:
                raise not_found("number")
            detail = {"queue_id": str(data.queue_id) if data.queue_id else None}
            await audit(conn, principal, "number.updated", "number", nid, detail)
            return Outcome(
                200,
                number_from_row(row),
                [ConfigChanged(tenant_id=principal.tenant_id, kind="number", op="updated", object_id=nid)],
            )

        return await mutation.run(work)

    @delete(
        "/{number_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Release a number",
    )
    async def release_number(self, mutation: MutationDep, number_id: IdParam) -> Response[None]:
        nid = path_id(number_id, "number")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            e164 = await sql.release(conn, nid)
            if e164 is None:
                raise not_found("number")
            await audit(conn, principal, "number.released", "number", nid, {"e164": e164})
            return Outcome(
                204,
                None,
                [ConfigChanged(tenant_id=principal.tenant_id, kind="number", op="deleted", object_id=nid)],
            )

        return await mutation.run(work)
