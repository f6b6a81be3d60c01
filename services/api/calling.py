"""The calls the platform places for a tenant: callback settings (docs/routing.md, "Callbacks") and the
caller ID those calls show, which must be one of the tenant's own numbers."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, get, put
from litestar.params import JSONBody

from .auth import Principal, admin_only
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import READ_ERRORS, WRITE_ERRORS
from .problems import validation as invalid
from .queries import calling as sql
from .validation import check_e164

__all__ = ["CallingSettings", "CallingSettingsController"]


class CallingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Callbacks are agent first (an agent accepts, then the customer is dialled) or customer first (the
    customer answers, then waits at the front for the next agent); an attempt nobody answers is retried
    after `callback_retry_seconds`, `callback_attempts` times in all. `caller_id`: one of the tenant's
    numbers (null: the number the customer called)."""

    callback_mode: Literal["agent_first", "customer_first"] = "agent_first"
    callback_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    callback_retry_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 300
    callback_ring_seconds: Annotated[int, msgspec.Meta(ge=5, le=120)] = 30
    caller_id: str | None = None


class CallingSettingsController(Controller):
    path = "/v1/calling-settings"
    tags = ["calling"]

    @get("/", responses=READ_ERRORS, summary="The tenant's settings for calls the platform places")
    async def get_settings(self, tenant_conn: TenantConnDep) -> CallingSettings:
        return CallingSettings(**dict(await sql.get(tenant_conn)))

    @put("/", guards=[admin_only], responses=WRITE_ERRORS, summary="Replace the tenant's calling settings")
    async def put_settings(
        self, mutation: MutationDep, data: JSONBody[CallingSettings]
    ) -> Response[CallingSettings]:
        caller_id = check_e164("caller_id", data.caller_id) if data.caller_id is not None else None

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[CallingSettings]:
            if caller_id is not None and not await sql.holds_number(conn, caller_id):
                raise invalid("caller_id", f"{caller_id} is not one of this tenant's numbers")
            await sql.update(
                conn,
                principal.tenant_id,
                mode=data.callback_mode,
                attempts=data.callback_attempts,
                retry_seconds=data.callback_retry_seconds,
                ring_seconds=data.callback_ring_seconds,
                caller_id=caller_id,
            )
            await audit(
                conn,
                principal,
                "calling_settings.updated",
                "tenant",
                principal.tenant_id,
                msgspec.structs.asdict(data),
            )
            return Outcome(200, msgspec.structs.replace(data, caller_id=caller_id))

        return await mutation.run(work)
