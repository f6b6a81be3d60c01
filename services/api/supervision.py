"""A supervisor steps into a call: `POST /v1/contacts/{id}/monitor` with a mode (listen, whisper, barge, or
none to leave) and the supervisor's own leg: a WebRTC leg their browser opened on `/v1/ws` with the
contact's id as `call_id` (console_socket.py). A second request with another mode switches it on the fly.

Supervisors and admins only (an API key with that role, or their console token); the contact must be one
of the key's tenant (the coordinator and media check the tenant again). Every start, change and end is in
the audit log. Nobody on the call is told: media mixes the supervisor in without a tone or a message."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, post, put
from litestar.params import JSONBody

from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import SupervisorMonitor

from .auth import admin_only, principal_of, supervisor_only
from .crud import IdParam, path_id
from .mutations import audit
from .problems import WRITE_ERRORS, Problem, conflict, not_found, validation
from .state import api_state

__all__ = ["MonitorRequest", "MonitorSession", "ScopeController", "SupervisionController"]

COMMAND_TIMEOUT_S = 8.0  # the coordinator asks media in turn (5 s)


class MonitorRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["listen", "whisper", "barge", "none"]
    leg_id: uuid.UUID


class MonitorSession(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    leg_id: uuid.UUID
    mode: str
    agent_leg_id: uuid.UUID | None = None


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
        self, request: Request[Any, Any, Any], contact_id: IdParam, data: JSONBody[MonitorRequest]
    ) -> MonitorSession:
        cid = path_id(contact_id, "contact")
        principal = principal_of(request)
        state = api_state(request)
        # The tenant's own row first (row-level security): another tenant's contact is simply not found.
        async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
            found = await conn.fetchrow("SELECT state, queue_id FROM contacts WHERE id = $1", cid)
        if found is None or not principal.sees_queue(found["queue_id"]):
            raise not_found("contact")  # outside a scoped supervisor's queues: as if it did not exist
        if state.bus is None:
            raise Problem(503, "the platform's bus is not connected; try again")
        command = SupervisorMonitor(
            tenant_id=principal.tenant_id, contact_id=cid, leg_id=data.leg_id, mode=data.mode
        )
        try:
            reply = await state.bus.request(command, timeout=COMMAND_TIMEOUT_S)
        except (BusError, CommandTimeout):
            raise Problem(503, "the contact coordinator did not answer; try again") from None
        if not reply.ok:
            status = _STATUS.get(reply.code or "", 409)
            reason = reply.error or "refused"
            if status == 404:
                raise not_found("live contact") if "leg" not in reason else Problem(404, reason)
            if status == 422:
                raise validation("leg_id", reason)
            raise conflict(reason)
        agent_leg = reply.data.get("agent_leg_id")
        async with tenant_tx(state.db(), principal.tenant_id) as conn:
            await audit(
                conn,
                principal,
                "contact.monitor_ended" if data.mode == "none" else "contact.monitored",
                "contact",
                cid,
                {
                    "mode": data.mode,
                    "leg_id": str(data.leg_id),
                    **({"account_id": str(principal.account_id)} if principal.account_id else {}),
                },
            )
        return MonitorSession(
            contact_id=cid,
            leg_id=data.leg_id,
            mode=data.mode,
            agent_leg_id=uuid.UUID(str(agent_leg)) if agent_leg else None,
        )


class Scope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    queue_ids: list[uuid.UUID] | None  # null: the whole tenant


class ScopedSupervisor(msgspec.Struct, kw_only=True):
    account_id: uuid.UUID
    email: str
    queue_ids: list[uuid.UUID] | None


class ScopeController(Controller):
    """Which queues a supervisor sees and acts on (admins set it; admins themselves are never scoped)."""

    path = "/v1/supervisors"
    tags = ["supervision"]
    guards = [admin_only]

    @put(
        "/{account_id:str}/queues",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Set a supervisor's queues",
    )
    async def set_queues(
        self, request: Request[Any, Any, Any], account_id: IdParam, data: JSONBody[Scope]
    ) -> ScopedSupervisor:
        aid = path_id(account_id, "supervisor")
        principal = principal_of(request)
        queues = sorted(set(data.queue_ids)) if data.queue_ids is not None else None
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            row = await conn.fetchrow("SELECT email, role FROM accounts WHERE id = $1", aid)
            if row is None or row["role"] != "supervisor":
                raise not_found("supervisor")
            if queues:
                known = await conn.fetchval("SELECT count(*) FROM queues WHERE id = ANY($1::uuid[])", queues)
                if known != len(queues):
                    raise validation("queue_ids", "names a queue this tenant does not have")
            await conn.execute(
                "UPDATE accounts SET queue_ids = $2, updated_at = now() WHERE id = $1", aid, queues
            )
            await audit(
                conn, principal, "supervisor.scoped", "account", aid,
                {"queue_ids": [str(q) for q in queues] if queues is not None else None},
            )  # fmt: skip
        return ScopedSupervisor(account_id=aid, email=row["email"], queue_ids=queues)
