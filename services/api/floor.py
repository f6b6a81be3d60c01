"""Control of the floor, for supervisors and admins (an API key with that role, or their console token):

- `POST /v1/agents/{id}/state` {state: available | away, reason}: routing sets the agent's presence (the
  agent's desk is told by its usual `agent_state` push);
- `POST /v1/agents/{id}/signout` (signin.py) signs an agent out everywhere and out of routing;
- `POST /v1/contacts/{id}/queue` {queue: name or id}: a contact waiting in line moves to another queue
  (routing keeps its priority; refused when nobody is signed in to that queue, so it is never stranded);
- `POST /v1/contacts/{id}/front`: a contact waiting in line goes to the front of its queue;
- `POST /v1/contacts/{id}/pull` {agent: id or email, optional}: a contact waiting in line is offered now to
  that agent, or to the supervisor's own agent profile (the agent with their account's email) — pulled to
  oneself. Routing refuses (409) an agent that is signed out, busy or not serving the contact's queue.

The agent or contact must be the caller's tenant's (row-level security: another tenant's is 404); routing
then acts in that tenant only. Every accepted request is audited.

Handlers take `api` and open short transactions of their own rather than `tenant_conn`: no connection is
held while routing answers (up to ROUTING_TIMEOUT_S)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, post
from litestar.params import JSONBody

from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import RoutingPrioritize, RoutingSetState, RoutingTransfer
from services.kernel.messages import Command, Reply

from .auth import Principal, supervisor_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep
from .mutations import audit
from .problems import WRITE_ERRORS, Problem, conflict, not_found, validation
from .queries import agents as agent_sql
from .queries import floor as sql
from .state import ApiState

__all__ = ["AgentFloorController", "ContactFloorController", "routing_request"]

ROUTING_TIMEOUT_S = 5.0
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AgentStateChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    state: Literal["available", "away"]
    reason: Reason | None = None


class AgentStateSet(msgspec.Struct, kw_only=True):
    agent_id: uuid.UUID
    state: str
    reason: str | None


class ContactMove(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ContactMoved(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    queue_id: uuid.UUID


class ContactPull(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # An agent's id or email; omitted: the supervisor's own agent profile (a console sign-in only).
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None


class ContactPrioritized(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    queue_id: uuid.UUID
    position: int | None = None  # to the front: 1
    agent_id: uuid.UUID | None = None  # pulled: the agent it is offered to now


async def routing_request(state: ApiState, command: Command) -> Reply:
    """Routing's reply; 503 when routing is not there, 409 with routing's reason when it refuses."""
    if state.bus is None:
        raise Problem(503, "the platform's bus is not connected; try again")
    try:
        reply = await state.bus.request(command, timeout=ROUTING_TIMEOUT_S)
    except (BusError, CommandTimeout):
        raise Problem(503, "routing did not answer; try again") from None
    if not reply.ok:
        raise conflict(reply.error or f"routing refused it ({reply.code})")
    return reply


async def _audit(
    state: ApiState, principal: Principal, action: str, kind: str, target: uuid.UUID, detail: dict[str, Any]
) -> None:
    if principal.account_id is not None:
        detail = {**detail, "account_id": str(principal.account_id)}
    async with tenant_tx(state.db(), principal.tenant_id) as conn:
        await audit(conn, principal, action, kind, target, detail)


class AgentFloorController(Controller):
    path = "/v1/agents"
    tags = ["floor"]
    guards = [supervisor_only]

    @post("/{agent_id:str}/state", status_code=200, responses=WRITE_ERRORS, summary="Set an agent's presence")
    async def set_state(
        self, api: ApiDep, principal: CallerDep, agent_id: IdParam, data: JSONBody[AgentStateChange]
    ) -> AgentStateSet:
        aid = path_id(agent_id, "agent")
        async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
            if not await agent_sql.exists(conn, aid) or not principal.sees_agent(aid):
                raise not_found("agent")
        reason = data.reason if data.state == "away" else None
        await routing_request(
            api,
            RoutingSetState(tenant_id=principal.tenant_id, agent_id=aid, state=data.state, reason=reason),
        )
        await _audit(api, principal, "agent.state_set", "agent", aid, {"state": data.state, "reason": reason})
        return AgentStateSet(agent_id=aid, state=data.state, reason=reason)


class ContactFloorController(Controller):
    path = "/v1/contacts"
    tags = ["floor"]
    guards = [supervisor_only]

    @post(
        "/{contact_id:str}/queue",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Move a waiting contact to another queue",
    )
    async def move(
        self, api: ApiDep, principal: CallerDep, contact_id: IdParam, data: JSONBody[ContactMove]
    ) -> ContactMoved:
        cid = path_id(contact_id, "contact")
        async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
            contact = await sql.contact_line(conn, cid)
            queue_id = await sql.queue_by_ref(conn, data.queue)
        if contact is None or not principal.sees_queue(contact["queue_id"]):
            raise not_found("contact")
        if queue_id is None or not principal.sees_queue(queue_id):
            raise not_found("queue")
        phase = contact["state"]
        if phase != "queued":
            raise conflict(f"the contact is {phase}: only a contact waiting in line can be moved")
        await routing_request(
            api, RoutingTransfer(tenant_id=principal.tenant_id, call_id=cid, queue_id=queue_id)
        )
        await _audit(api, principal, "contact.moved", "contact", cid, {"queue_id": str(queue_id)})
        return ContactMoved(contact_id=cid, queue_id=queue_id)

    @post(
        "/{contact_id:str}/front",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Move a waiting contact to the front of its queue",
    )
    async def front(self, api: ApiDep, principal: CallerDep, contact_id: IdParam) -> ContactPrioritized:
        cid = path_id(contact_id, "contact")
        await _waiting(api, principal, cid)
        reply = await routing_request(api, RoutingPrioritize(tenant_id=principal.tenant_id, call_id=cid))
        queue_id = uuid.UUID(str(reply.data["queue_id"]))
        await _audit(api, principal, "contact.fronted", "contact", cid, {"queue_id": str(queue_id)})
        position = reply.data.get("position")
        return ContactPrioritized(
            contact_id=cid, queue_id=queue_id, position=position if isinstance(position, int) else None
        )

    @post(
        "/{contact_id:str}/pull",
        status_code=200,
        responses=WRITE_ERRORS,
        summary="Offer a waiting contact now to an agent, or to oneself",
    )
    async def pull(
        self, api: ApiDep, principal: CallerDep, contact_id: IdParam, data: JSONBody[ContactPull]
    ) -> ContactPrioritized:
        cid = path_id(contact_id, "contact")
        await _waiting(api, principal, cid)
        agent_id = await _pull_target(api, principal, data.agent)
        reply = await routing_request(
            api, RoutingPrioritize(tenant_id=principal.tenant_id, call_id=cid, agent_id=agent_id)
        )
        queue_id = uuid.UUID(str(reply.data["queue_id"]))
        await _audit(
            api, principal, "contact.pulled", "contact", cid,
            {"queue_id": str(queue_id), "agent_id": str(agent_id)},
        )  # fmt: skip
        return ContactPrioritized(contact_id=cid, queue_id=queue_id, agent_id=agent_id)


async def _waiting(state: ApiState, principal: Principal, cid: uuid.UUID) -> None:
    """The contact must be the principal's to see, and waiting in line (routing checks again)."""
    async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
        contact = await sql.contact_line(conn, cid)
    if contact is None or not principal.sees_queue(contact["queue_id"]):
        raise not_found("contact")
    if contact["state"] != "queued":
        raise conflict(f"the contact is {contact['state']}: only a contact waiting in line can be moved")


async def _pull_target(state: ApiState, principal: Principal, agent: str | None) -> uuid.UUID:
    async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
        if agent is None:
            if principal.account_id is None:
                raise validation(
                    "agent", "an API key must name the agent (id or email) to pull the contact to"
                )
            email = await sql.account_email(conn, principal.account_id)
            found = await agent_sql.by_email(conn, email or "")
            if found is None:
                raise conflict(
                    f"you have no agent profile to take calls with: an admin adds an agent with your email ({email})"
                )
        else:
            found = await sql.agent_by_ref(conn, agent)
            if found is None or not principal.sees_agent(found):
                raise not_found("agent")
    return uuid.UUID(str(found))
