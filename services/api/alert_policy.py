"""The tenant's notification policy for queue alerts (docs/supervisor.md, "Alerts"):

- `GET /v1/alert-policy`: the default and each queue's own policy (any key or console sign-in);
- `PUT /v1/alert-policy` {longest_wait_seconds, service_level_below_percent, waiting_over,
  away_over_percent}: the default for every queue (admins; audited);
- `PUT /v1/alert-policy/queues/{queue_id}` and `DELETE` there: one queue's own policy (admins; audited).

The realtime queues (and the console's feed snapshot) carry each queue's thresholds in force and the alerts
it raises now (`annotate`); the thresholds are applied by services/reporting/alerts.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.params import JSONBody

from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.reporting.alert_watch import POLICY_FIELDS as _FIELDS
from services.reporting.alert_watch import annotate, read_policies
from services.reporting.alerts import Policy

from .auth import admin_only, principal_of
from .crud import IdParam, path_id
from .mutations import audit
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, not_found
from .state import api_state

__all__ = ["AlertPolicyController", "annotate"]

Seconds = Annotated[int, msgspec.Meta(ge=1, le=86_400)]
Percent = Annotated[int, msgspec.Meta(ge=1, le=100)]


class PolicyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    longest_wait_seconds: Seconds | None = None
    service_level_below_percent: Percent | None = None
    waiting_over: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    away_over_percent: Percent | None = None


class QueuePolicy(msgspec.Struct, kw_only=True):
    queue_id: uuid.UUID
    queue_name: str
    policy: Policy


class Policies(msgspec.Struct, kw_only=True):
    default: Policy
    queues: list[QueuePolicy]


async def _store(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, queue_id: uuid.UUID | None, data: PolicyIn
) -> None:
    values = [getattr(data, f) for f in _FIELDS]
    updated = await conn.execute(
        f"""UPDATE alert_policies SET ({", ".join(_FIELDS)}, updated_at) = ($2, $3, $4, $5, now())
            WHERE queue_id IS NOT DISTINCT FROM $1""",
        queue_id,
        *values,
    )
    if updated == "UPDATE 0":
        await conn.execute(
            f"""INSERT INTO alert_policies (id, tenant_id, queue_id, {", ".join(_FIELDS)})
                VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            new_id(),
            tenant_id,
            queue_id,
            *values,
        )


class AlertPolicyController(Controller):
    path = "/v1/alert-policy"
    tags = ["supervision"]

    @get("/", responses=READ_ERRORS, summary="The tenant's alert thresholds")
    async def read(self, request: Request[Any, Any, Any]) -> Policies:
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            default, own = await read_policies(conn)
            names = {str(r["id"]): r["name"] for r in await conn.fetch("SELECT id, name FROM queues")}
        queues = [
            QueuePolicy(queue_id=uuid.UUID(qid), queue_name=names.get(qid, ""), policy=p)
            for qid, p in sorted(own.items(), key=lambda i: names.get(i[0], ""))
            if principal.sees_queue(qid)
        ]
        return Policies(default=default, queues=queues)

    @put("/", responses=WRITE_ERRORS, guards=[admin_only], summary="Set the default alert thresholds")
    async def set_default(self, request: Request[Any, Any, Any], data: JSONBody[PolicyIn]) -> Policy:
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            await _store(conn, principal.tenant_id, None, data)
            await audit(
                conn, principal, "alert_policy.set", "tenant", principal.tenant_id, msgspec.to_builtins(data)
            )
        return Policy(**msgspec.to_builtins(data))

    @put(
        "/queues/{queue_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Set one queue's own alert thresholds",
    )
    async def set_queue(
        self, request: Request[Any, Any, Any], queue_id: IdParam, data: JSONBody[PolicyIn]
    ) -> Policy:
        qid = path_id(queue_id, "queue")
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            if await conn.fetchval("SELECT 1 FROM queues WHERE id = $1", qid) is None:
                raise not_found("queue")
            await _store(conn, principal.tenant_id, qid, data)
            await audit(conn, principal, "alert_policy.set", "queue", qid, msgspec.to_builtins(data))
        return Policy(**msgspec.to_builtins(data))

    @delete(
        "/queues/{queue_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Remove a queue's own thresholds (the default applies again)",
    )
    async def clear_queue(self, request: Request[Any, Any, Any], queue_id: IdParam) -> None:
        qid = path_id(queue_id, "queue")
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            done = await conn.execute("DELETE FROM alert_policies WHERE queue_id = $1", qid)
            if done == "DELETE 0":
                raise not_found("queue policy")
            await audit(conn, principal, "alert_policy.cleared", "queue", qid, {})
