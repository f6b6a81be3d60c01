"""Outbound calls from the API (docs/routing.md, "Outbound calls"): click-to-dial for a CRM
(`POST /v1/agents/{id}/dial`: the agent's desk is offered its own call, then the number is dialled through
the tenant's trunk) and the tenant's do-not-call list, which every dial is checked against."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody, PathParameter

from services.kernel import events as ev
from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx

from .auth import Principal, Role, admin_only, principal_of
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, Problem, conflict, forbidden, not_found
from .problems import validation as invalid
from .queries import agents as agent_sql
from .queries import outbound as sql
from .state import ApiState
from .validation import check_e164

__all__ = ["DialController", "DoNotCallController"]

COMMAND_TIMEOUT_S = 5.0
# The coordinator's refusal codes (ev.DeskDial) as HTTP statuses.
_STATUS = {
    "forbidden": 403,
    "not_found": 404,
    "do_not_call": 422,
    "invalid": 422,
    "no_trunk": 409,
    "not_available": 409,
    "failed": 409,
    "routing_unavailable": 503,
}


class Dial(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    to: Annotated[str, msgspec.Meta(max_length=32, description="E.164: + then 7-15 digits")]
    caller_id: Annotated[str, msgspec.Meta(max_length=32)] | None = None  # one of the tenant's numbers
    queue: Annotated[str, msgspec.Meta(max_length=100)] | None = None  # name or id (default: the first)


class Dialled(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    to: str
    caller_id: str
    queue_id: uuid.UUID


class DoNotCall(msgspec.Struct, kw_only=True):
    e164: str
    note: str
    created_at: datetime


class DoNotCallAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    e164: Annotated[str, msgspec.Meta(max_length=32)]
    note: Annotated[str, msgspec.Meta(max_length=200)] = ""


class DoNotCallPage(msgspec.Struct):
    items: list[DoNotCall]


async def place_call(state: ApiState, principal: Principal, agent_id: uuid.UUID, data: Dial) -> Dialled:
    if data.caller_id is not None:
        check_e164("caller_id", data.caller_id)
    to = check_e164("to", data.to)
    # A transaction of its own, not `tenant_conn`: no connection is held while the coordinator dials.
    async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
        if not await agent_sql.exists(conn, agent_id):
            raise not_found("agent")
    if state.bus is None:
        raise Problem(503, "the platform's bus is not connected; try again")
    command = ev.DeskDial(
        tenant_id=principal.tenant_id,
        agent_id=agent_id,
        to=to,
        caller_id=data.caller_id,
        queue=data.queue,
        source="api",
    )
    try:
        reply = await state.bus.request(command, timeout=COMMAND_TIMEOUT_S)
    except (BusError, CommandTimeout):
        raise Problem(503, "the contact coordinator did not answer; try again") from None
    if not reply.ok:
        status, reason = _STATUS.get(reply.code or "", 409), reply.error or "the call was refused"
        if status == 422:
            raise invalid("caller_id" if "caller ID" in reason else "to", reason)
        if status == 404:
            raise not_found("agent")
        raise Problem(status, reason)
    return msgspec.convert(reply.data, Dialled)


def admin_or_developer(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Before the body is read: a supervisor's key is refused as such, whatever it sent."""
    if principal_of(connection).role not in (Role.ADMIN, Role.DEVELOPER):
        raise forbidden("click-to-dial needs an admin or developer key")


class DialController(Controller):
    path = "/v1/agents"
    tags = ["agents"]

    @post(
        "/{agent_id:str}/dial",
        status_code=201,
        guards=[admin_or_developer],
        responses=WRITE_ERRORS,
        summary="Click-to-dial: the agent's desk is offered the call, then the number is dialled",
    )
    async def dial(
        self, api: ApiDep, principal: CallerDep, agent_id: IdParam, data: JSONBody[Dial]
    ) -> Dialled:
        """For a CRM: the agent must be allowed to dial (`can_dial`) and be signed in and available; the
        number must not be on the do-not-call list. Admin and developer keys."""
        return await place_call(api, principal, path_id(agent_id, "agent"), data)


class DoNotCallController(Controller):
    path = "/v1/do-not-call"
    tags = ["calling"]

    @get("/", responses=READ_ERRORS, summary="The tenant's numbers never to call")
    async def list_numbers(self, tenant_conn: TenantConnDep) -> DoNotCallPage:
        return DoNotCallPage(items=[DoNotCall(**dict(r)) for r in await sql.listed(tenant_conn)])

    @post("/", status_code=201, guards=[admin_only], responses=WRITE_ERRORS, summary="Never call a number")
    async def add_number(self, mutation: MutationDep, data: JSONBody[DoNotCallAdd]) -> Response[DoNotCall]:
        e164 = check_e164("e164", data.e164)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[DoNotCall]:
            row = await sql.add(conn, principal.tenant_id, e164, data.note.strip())
            if row is None:
                raise conflict(f"{e164} is already on the do-not-call list")
            await audit(conn, principal, "do_not_call.added", "do_not_call", None, {"e164": e164})
            return Outcome(201, DoNotCall(**dict(row)))

        return await mutation.run(work)

    @delete("/{e164:str}", guards=[admin_only], responses=DELETE_RESPONSES, summary="Allow a number again")
    async def remove_number(
        self,
        mutation: MutationDep,
        e164: Annotated[str, PathParameter(description="the caller id number, E.164")],
    ) -> Response[None]:
        number = e164.strip()
        if not re.fullmatch(r"\+?[0-9]{1,15}", number):
            raise Problem(404, "that is not a number on the do-not-call list")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            if not await sql.remove(conn, number):
                raise Problem(404, f"{number} is not on the do-not-call list")
            await audit(conn, principal, "do_not_call.removed", "do_not_call", None, {"e164": number})
            return Outcome(204, None)

        return await mutation.run(work)
