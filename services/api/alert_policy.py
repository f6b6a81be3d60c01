"""The tenant's notification policy for queue alerts (docs/supervisor.md, "Alerts"):

- `GET /v1/alert-policy`: the default and each queue's own policy (any key or console sign-in);
- `PUT /v1/alert-policy` {longest_wait_seconds, service_level_below_percent, waiting_over,
  away_over_percent}: the default for every queue (admins; audited);
- `PUT /v1/alert-policy/queues/{queue_id}` and `DELETE` there: one queue's own policy (admins; audited).

The realtime queues (and the console's feed snapshot) carry each queue's thresholds in force and the alerts
it raises now (`annotate`); the thresholds are applied by services/reporting/alerts.py."""

from __future__ import annotations

import uuid
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, put
from litestar.params import JSONBody

from services.reporting.alert_watch import POLICY_FIELDS as _FIELDS
from services.reporting.alert_watch import annotate, read_policies
from services.reporting.alerts import Policy

from .auth import Principal, admin_only
from .crud import IdParam, path_id
from .deps import CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, not_found
from .queries import alert_policy as sql

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


class AlertPolicyController(Controller):
    path = "/v1/alert-policy"
    tags = ["supervision"]

    @get("/", responses=READ_ERRORS, summary="The tenant's alert thresholds")
    async def read(self, principal: CallerDep, tenant_conn: TenantConnDep) -> Policies:
        default, own = await read_policies(tenant_conn)
        names = await sql.queue_names(tenant_conn)
        queues = [
            QueuePolicy(queue_id=uuid.UUID(qid), queue_name=names.get(qid, ""), policy=p)
            for qid, p in sorted(own.items(), key=lambda i: names.get(i[0], ""))
            if principal.sees_queue(qid)
        ]
        return Policies(default=default, queues=queues)

    @put("/", responses=WRITE_ERRORS, guards=[admin_only], summary="Set the default alert thresholds")
    async def set_default(self, mutation: MutationDep, data: JSONBody[PolicyIn]) -> Response[Policy]:
        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Policy]:
            await sql.store(conn, principal.tenant_id, None, [getattr(data, f) for f in _FIELDS])
            detail = msgspec.to_builtins(data)
            await audit(conn, principal, "alert_policy.set", "tenant", principal.tenant_id, detail)
            return Outcome(200, Policy(**detail))

        return await mutation.run(work)

    @put(
        "/queues/{queue_id:str}",
        responses=WRITE_ERRORS,
        guards=[admin_only],
        summary="Set one queue's own alert thresholds",
    )
    async def set_queue(
        self, mutation: MutationDep, queue_id: IdParam, data: JSONBody[PolicyIn]
    ) -> Response[Policy]:
        qid = path_id(queue_id, "queue")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Policy]:
            if not await sql.queue_exists(conn, qid):
                raise not_found("queue")
            await sql.store(conn, principal.tenant_id, qid, [getattr(data, f) for f in _FIELDS])
            detail = msgspec.to_builtins(data)
            await audit(conn, principal, "alert_policy.set", "queue", qid, detail)
            return Outcome(200, Policy(**detail))

        return await mutation.run(work)

    @delete(
        "/queues/{queue_id:str}",
        responses=DELETE_RESPONSES,
        status_code=204,
        guards=[admin_only],
        summary="Remove a queue's own thresholds (the default applies again)",
    )
    async def clear_queue(self, mutation: MutationDep, queue_id: IdParam) -> Response[None]:
        qid = path_id(queue_id, "queue")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            if not await sql.clear(conn, qid):
                raise not_found("queue policy")
            await audit(conn, principal, "alert_policy.cleared", "queue", qid, {})
            return Outcome(204, None)

        return await mutation.run(work)
