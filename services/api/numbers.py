"""Phone numbers: claimed by exactly one tenant (E.164, globally unique), pointed at a queue (later a flow)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import JSONBody

from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id

from .auth import Principal, admin_only
from .crud import IdParam, fetch_one, fetch_page, path_id
from .mutations import Outcome, audit, mutate
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, conflict, not_found, validation
from .validation import check_e164

__all__ = ["Number", "NumberController"]

COLUMNS = "id, e164, queue_id, flow_id, created_at, updated_at"


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
    if not await conn.fetchval("SELECT 1 FROM queues WHERE id = $1", queue_id):
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
    async def claim_number(
        self, request: Request[Any, Any, Any], data: JSONBody[NumberCreate]
    ) -> Response[Number]:
        e164 = check_e164("e164", data.e164)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Number]:
            if data.queue_id is not None:
                await _require_queue(conn, data.queue_id)
            try:
                # The unique index on e164 spans all tenants (uniqueness is not subject to RLS): of two
                # concurrent claims, the second waits for the first and then fails here.
                async with conn.transaction():
                    row = await conn.fetchrow(
                        f"""INSERT INTO numbers (id, tenant_id, e164, queue_id) VALUES ($1, $2, $3, $4)
                            RETURNING {COLUMNS}""",
                        new_id(),
                        principal.tenant_id,
                        e164,
                        data.queue_id,
                    )
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

        return await mutate(request, work)

    @get("/", responses=READ_ERRORS, summary="List numbers")
    async def list_numbers(
        self, request: Request[Any, Any, Any], limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> NumberPage:
        rows, next_cursor = await fetch_page(request, "numbers", COLUMNS, limit, cursor)
        return NumberPage(items=[number_from_row(r) for r in rows], next_cursor=next_cursor)

    @get("/{number_id:str}", responses=READ_ERRORS, summary="Read a number")
    async def get_number(self, request: Request[Any, Any, Any], number_id: IdParam) -> Number:
        return number_from_row(
            await fetch_one(request, "numbers", COLUMNS, path_id(number_id, "number"), "number")
        )

    @patch(
        "/{number_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Point a number at a queue (or at none)",
    )
    async def update_number(
        self, request: Request[Any, Any, Any], number_id: IdParam, data: JSONBody[NumberPatch]
    ) -> Response[Number]:
        nid = path_id(number_id, "number")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Number]:
            if data.queue_id is msgspec.UNSET:
                row = await conn.fetchrow(f"SELECT {COLUMNS} FROM numbers WHERE id = $1", nid)
                if row is None:
                    raise not_found("number")
                return Outcome(200, number_from_row(row))
            if data.queue_id is not None:
                await _require_queue(conn, data.queue_id)
            row = await conn.fetchrow(
                f"UPDATE numbers SET queue_id = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
                nid,
                data.queue_id,
            )
            if row is None:
                raise not_found("number")
            detail = {"queue_id": str(data.queue_id) if data.queue_id else None}
            await audit(conn, principal, "number.updated", "number", nid, detail)
            return Outcome(
                200,
                number_from_row(row),
                [ConfigChanged(tenant_id=principal.tenant_id, kind="number", op="updated", object_id=nid)],
            )

        return await mutate(request, work)

    @delete(
        "/{number_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Release a number",
    )
    async def release_number(self, request: Request[Any, Any, Any], number_id: IdParam) -> Response[None]:
        nid = path_id(number_id, "number")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            row = await conn.fetchrow("DELETE FROM numbers WHERE id = $1 RETURNING e164", nid)
            if row is None:
                raise not_found("number")
            await audit(conn, principal, "number.released", "number", nid, {"e164": row["e164"]})
            return Outcome(
                204,
                None,
                [ConfigChanged(tenant_id=principal.tenant_id, kind="number", op="deleted", object_id=nid)],
            )

        return await mutate(request, work)
