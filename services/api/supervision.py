"""A supervisor steps into a call: `POST /v1/contacts/{id}/monitor` with a mode (listen, whisper, barge, or
none to leave) and the supervisor's own leg: a WebRTC leg their browser opened on `/v1/ws` with the
contact's id as `call_id` (console_socket.py), or `phone`, a sip: address (a desk phone) that the worker
holding the call rings; once it answers, it is the leg (the answer names it). A second request with another
mode and that leg_id switches it on the fly; `none` leaves, and hangs up a phone rung for it.

Supervisors and admins only (an API key with that role, or their console token); the contact must be one
of the key's tenant (the coordinator and media check the tenant again). Every start, change and end is in
the audit log. Nobody on the call is told: media mixes the supervisor in without a tone or a message.

`monitor` takes `api` and opens short transactions of its own rather than `tenant_conn`: no connection is
held while the coordinator answers or the supervisor's phone rings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, post, put
from litestar.params import JSONBody

from services.kernel import events as ev
from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import SupervisorMonitor
from services.kernel.ids import new_id
from services.kernel.messages import Event

from .auth import Principal, admin_only, supervisor_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, MutationDep
from .mutations import Outcome, audit
from .problems import WRITE_ERRORS, Problem, conflict, not_found, validation
from .queries import floor as sql
from .state import ApiState

__all__ = ["MonitorRequest", "MonitorSession", "ScopeController", "SupervisionController"]

COMMAND_TIMEOUT_S = 8.0  # the coordinator asks media in turn (5 s)
PHONE_RING_S = 20.0  # how long the supervisor's phone rings before the request gives up
PhoneUri = Annotated[str, msgspec.Meta(pattern=r"^sips?:[^\s@]+@[^\s]+$", max_length=200)]


class MonitorRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["listen", "whisper", "barge", "none"]
    leg_id: uuid.UUID | None = None
    phone: PhoneUri | None = None  # ring this address (sip:user@host[:port]) and use it as the leg


class MonitorSession(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    leg_id: uuid.UUID
    mode: str
    agent_leg_id: uuid.UUID | None = None
    phone: str | None = None


# The coordinator's and media's refusals -> HTTP.
_STATUS = {"not_found": 404, "state": 409, "conflict": 409, "invalid": 422, "bad_message": 422}


class SupervisionController(Controller):
    path = "/v1/contacts"
    tags = ["supervision"]
    guards = [supervisor_only]

    @post(
        "/{contact_id:str}/monitor",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Listen to, whisper to or barge into a live contact (mode none: leave)",
    )
    async def monitor(
        self, api: ApiDep, principal: CallerDep, contact_id: IdParam, data: JSONBody[MonitorRequest]
    ) -> MonitorSession:
        cid = path_id(contact_id, "contact")
        if (data.leg_id is None) == (data.phone is None):
            raise validation(
                "leg_id", "give exactly one of leg_id (your browser's leg) and phone (a sip: address)"
            )
        if data.phone is not None and data.mode == "none":
            raise validation("phone", "to leave, give the leg_id your phone's answer named")
        # The tenant's own row first (row-level security): another tenant's contact is simply not found.
        async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
            found = await sql.contact_line(conn, cid)
        if found is None or not principal.sees_queue(found["queue_id"]):
            raise not_found("contact")  # outside a scoped supervisor's queues: as if it did not exist
        if api.bus is None:
            raise Problem(503, "the platform's bus is not connected; try again")
        leg_id = data.leg_id
        if data.phone is not None:
            leg_id = await _ring_phone(api.bus, principal.tenant_id, cid, data.phone)
        assert leg_id is not None
        command = SupervisorMonitor(
            tenant_id=principal.tenant_id, contact_id=cid, leg_id=leg_id, mode=data.mode
        )
        try:
            reply = await api.bus.request(command, timeout=COMMAND_TIMEOUT_S)
        except (BusError, CommandTimeout):
            reply = None
        phone_leg = data.phone is not None or await _rung_phone(api, principal.tenant_id, cid, leg_id)
        if phone_leg and (reply is None or not reply.ok or data.mode == "none"):
            await _hang_up(api.bus, principal.tenant_id, leg_id)  # a phone rung for nothing, or left
        if reply is None:
            raise Problem(503, "the contact coordinator did not answer; try again")
        if not reply.ok:
            status = _STATUS.get(reply.code or "", 409)
            reason = reply.error or "refused"
            if status == 404:
                raise not_found("live contact") if "leg" not in reason else Problem(404, reason)
            if status == 422:
                raise validation("leg_id", reason)
            raise conflict(reason)
        agent_leg = reply.data.get("agent_leg_id")
        async with tenant_tx(api.db(), principal.tenant_id) as conn:
            await audit(
                conn,
                principal,
                "contact.monitor_ended" if data.mode == "none" else "contact.monitored",
                "contact",
                cid,
                {
                    "mode": data.mode,
                    "leg_id": str(leg_id),
                    **({"phone": data.phone} if data.phone else {}),
                    **({"account_id": str(principal.account_id)} if principal.account_id else {}),
                },
            )
        return MonitorSession(
            contact_id=cid,
            leg_id=leg_id,
            mode=data.mode,
            agent_leg_id=uuid.UUID(str(agent_leg)) if agent_leg else None,
            phone=data.phone,
        )


async def _ring_phone(bus: Any, tenant_id: uuid.UUID, contact_id: uuid.UUID, phone: str) -> uuid.UUID:
    """Ring the supervisor's phone from the worker holding the call; its leg once answered (409 if not)."""
    leg_id = new_id()
    outcome: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    async def on_event(event: Event) -> None:
        if getattr(event, "call_id", None) == leg_id and not outcome.done():
            outcome.set_result(event)

    listener = await bus.listen([ev.CallAnswered, ev.CallEnded], on_event, tenant_id=tenant_id)
    try:
        dial = ev.MediaOriginate(
            tenant_id=tenant_id, call_id=leg_id, to=phone, caller_id="supervisor",
            timeout=PHONE_RING_S, near_call_id=contact_id,
        )  # fmt: skip
        try:
            placed = await bus.request(dial, timeout=5.0)
        except (BusError, CommandTimeout):
            raise not_found("live contact") from None  # no worker holds the call
        if not placed.ok:
            raise validation("phone", placed.error or "the phone could not be rung")
        try:
            event = await asyncio.wait_for(asyncio.shield(outcome), PHONE_RING_S + 2.0)
        except TimeoutError:
            event = None
    finally:
        await listener.stop()
    if not isinstance(event, ev.CallAnswered):
        await _hang_up(bus, tenant_id, leg_id)
        cause = event.cause if isinstance(event, ev.CallEnded) else "no answer"
        raise conflict(f"your phone {phone} did not answer ({cause})")
    return leg_id


async def _rung_phone(
    state: ApiState, tenant_id: uuid.UUID, contact_id: uuid.UUID, leg_id: uuid.UUID
) -> bool:
    """Whether this leg is a phone the platform rang for this contact (so leaving hangs it up)."""
    async with tenant_tx(state.db(), tenant_id, readonly=True) as conn:
        return await sql.phone_rung(conn, contact_id, leg_id)


async def _hang_up(bus: Any, tenant_id: uuid.UUID, leg_id: uuid.UUID) -> None:
    try:
        await bus.request(ev.MediaHangup(tenant_id=tenant_id, call_id=leg_id), timeout=3.0)
    except (BusError, CommandTimeout):
        pass  # nothing holds it any more


class Scope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    queue_ids: list[uuid.UUID] | None  # null: the whole tenant


class SiteScope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    queue_ids: list[uuid.UUID] | None = None
    site_ids: list[uuid.UUID] | None = None  # both null: the whole tenant


class ScopedSupervisor(msgspec.Struct, kw_only=True):
    account_id: uuid.UUID
    email: str
    queue_ids: list[uuid.UUID] | None
    site_ids: list[uuid.UUID] | None = None


class ScopeController(Controller):
    """Which queues and sites a supervisor sees and acts on (admins set it; admins are never scoped). A
    scoped supervisor sees the queues assigned or at their sites, and the agents at their sites or serving
    those queues (auth.supervisor_scope)."""

    path = "/v1/supervisors"
    tags = ["supervision"]
    guards = [admin_only]

    @put(
        "/{account_id:str}/queues",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Set a supervisor's queues (their sites stay as they are)",
    )
    async def set_queues(
        self, mutation: MutationDep, account_id: IdParam, data: JSONBody[Scope]
    ) -> Response[ScopedSupervisor]:
        work = _set_scope(path_id(account_id, "supervisor"), data.queue_ids, None, sites_too=False)
        return await mutation.run(work)

    @put(
        "/{account_id:str}/scope",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Set a supervisor's queues and sites",
    )
    async def set_scope(
        self, mutation: MutationDep, account_id: IdParam, data: JSONBody[SiteScope]
    ) -> Response[ScopedSupervisor]:
        work = _set_scope(path_id(account_id, "supervisor"), data.queue_ids, data.site_ids, sites_too=True)
        return await mutation.run(work)


async def _known(conn: asyncpg.Connection, table: str, field: str, ids: list[uuid.UUID] | None) -> None:
    if ids and await sql.count_known(conn, table, ids) != len(ids):
        raise validation(field, f"names a {table[:-1]} this tenant does not have")


def _set_scope(
    aid: uuid.UUID,
    queue_ids: list[uuid.UUID] | None,
    site_ids: list[uuid.UUID] | None,
    *,
    sites_too: bool,
) -> Callable[[asyncpg.Connection, Principal], Awaitable[Outcome[ScopedSupervisor]]]:
    queues = sorted(set(queue_ids)) if queue_ids is not None else None
    sites = sorted(set(site_ids)) if site_ids is not None else None

    async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[ScopedSupervisor]:
        row = await sql.supervisor(conn, aid)
        if row is None or row["role"] != "supervisor":
            raise not_found("supervisor")
        await _known(conn, "queues", "queue_ids", queues)
        await _known(conn, "sites", "site_ids", sites)
        kept = sites
        if not sites_too:
            kept = list(row["site_ids"]) if row["site_ids"] is not None else None
        await sql.set_scope(conn, aid, queues, kept)
        detail = {
            "queue_ids": [str(q) for q in queues] if queues is not None else None,
            "site_ids": [str(x) for x in kept] if kept is not None else None,
        }
        await audit(conn, principal, "supervisor.scoped", "account", aid, detail)
        return Outcome(
            200, ScopedSupervisor(account_id=aid, email=row["email"], queue_ids=queues, site_ids=kept)
        )

    return work
