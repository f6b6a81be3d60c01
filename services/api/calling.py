"""The calls the platform places for a tenant: callback settings (docs/routing.md, "Callbacks") and the
caller ID those calls show, which must be one of the tenant's own numbers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, put
from litestar.params import JSONBody

from services.kernel.db import tenant_tx

from .auth import admin_only, principal_of
from .mutations import audit
from .problems import READ_ERRORS, WRITE_ERRORS
from .problems import validation as invalid
from .state import api_state
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


_COLUMNS = "callback_mode, callback_attempts, callback_retry_seconds, callback_ring_seconds, caller_id"


class CallingSettingsController(Controller):
    path = "/v1/calling-settings"
    tags = ["calling"]

    @get("/", responses=READ_ERRORS, summary="The tenant's settings for calls the platform places")
    async def get_settings(self, request: Request[Any, Any, Any]) -> CallingSettings:
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE id = current_tenant()")
        return CallingSettings(**dict(row))

    @put("/", guards=[admin_only], responses=WRITE_ERRORS, summary="Replace the tenant's calling settings")
    async def put_settings(
        self, request: Request[Any, Any, Any], data: JSONBody[CallingSettings]
    ) -> CallingSettings:
        principal = principal_of(request)
        caller_id = check_e164("caller_id", data.caller_id) if data.caller_id is not None else None
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            if caller_id is not None and not await conn.fetchval(
                "SELECT 1 FROM numbers WHERE e164 = $1", caller_id
            ):
                raise invalid("caller_id", f"{caller_id} is not one of this tenant's numbers")
            await conn.execute(
                """UPDATE tenants SET callback_mode = $2, callback_attempts = $3, callback_retry_seconds = $4,
                          callback_ring_seconds = $5, caller_id = $6 WHERE id = $1""",
                principal.tenant_id,
                data.callback_mode,
                data.callback_attempts,
                data.callback_retry_seconds,
                data.callback_ring_seconds,
                caller_id,
            )
            await audit(
                conn,
                principal,
                "calling_settings.updated",
                "tenant",
                principal.tenant_id,
                msgspec.structs.asdict(data),
            )
        return msgspec.structs.replace(data, caller_id=caller_id)
