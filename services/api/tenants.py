"""Sign-up (a tenant with its default site, first admin key and a 2-seat trial) and `me`."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import JSONBody

from services.kernel.db import tenant_tx
from services.kernel.events import ConfigChanged
from services.kernel.ids import new_id

from .auth import Principal, Role, admin_only
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .keys import Key, KeyWithSecret, insert_key, key_from_row
from .mutations import Outcome, audit
from .problems import PUBLIC_ERRORS, READ_ERRORS, WRITE_ERRORS, Problem
from .queries import keys as key_sql
from .queries import seats as seat_sql
from .queries import sites as site_sql
from .queries import tenants as sql
from .seats import Seats
from .validation import check_email, check_name, check_timezone

# Languages the platform's own prompts are written in (services/kernel/announcements.py).
Language = Literal["en", "fr", "es", "de"]
# Who is told when a supervisor steps into a call (services/contacts/monitor_notice.py).
MonitorNotice = Literal["none", "agent", "caller", "both"]

__all__ = ["MeController", "SignupController", "Tenant"]

TRIAL_SEATS = 2
DEFAULT_SITE_NAME = "Main"


class Tenant(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    admin_email: str
    plan: Literal["trial", "paid"]
    created_at: datetime


class SignupIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    company: Annotated[str, msgspec.Meta(max_length=100)]
    email: Annotated[str, msgspec.Meta(max_length=254)]


class SignupOut(msgspec.Struct, kw_only=True):
    tenant: Tenant
    api_key: KeyWithSecret
    seats: Seats


class TenantSettings(msgspec.Struct, kw_only=True):
    # How long a signed-in agent whose client lost its socket keeps its seat and calls before it is signed
    # out (docs/agent-protocol.md, Reconnecting).
    agent_grace_seconds: int
    # The IANA time zone queue opening hours and holidays are read in.
    timezone: str
    # The language the platform speaks to callers in (position announcements, closed messages).
    language: Language
    # Who is told when a supervisor listens, whispers or barges in: nobody, the agent (a desk message),
    # the caller (a short announcement) or both (docs/supervisor.md).
    monitor_notice: MonitorNotice = "none"


class TenantSettingsPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    agent_grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=600)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    language: Language | None = None
    monitor_notice: MonitorNotice | None = None


class Me(msgspec.Struct, kw_only=True):
    tenant: Tenant
    key: Key


def tenant_from_row(row: asyncpg.Record) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        admin_email=row["admin_email"],
        plan=row["plan"],
        created_at=row["created_at"],
    )


def _client_address(request: Request[Any, Any, Any]) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so that this is the caller, not the proxy.
    return request.client.host if request.client else "unknown"


class SignupController(Controller):
    path = "/v1/signup"
    tags = ["tenants"]

    @post(
        "/",
        responses=PUBLIC_ERRORS,
        status_code=201,
        exclude_from_auth=True,
        security=[],
        summary="Create a tenant: default site, admin key (shown once) and a 2-seat trial",
    )
    async def signup(
        self, request: Request[Any, Any, Any], api: ApiDep, data: JSONBody[SignupIn]
    ) -> SignupOut:
        # The raw Request for the caller's address only: sign-ups are limited per address.
        allowed, retry_after = api.signup_limiter.allow(_client_address(request), time.monotonic())
        if not allowed:
            raise Problem(
                429,
                f"at most {api.signup_limiter.limit} sign-ups per minute from one address; retry later",
                headers={"Retry-After": str(max(1, round(retry_after)))},
            )
        company = check_name("company", data.company)
        email = check_email("email", data.email)
        tenant_id = new_id()
        async with tenant_tx(api.db(), tenant_id) as conn:
            # app.tenant_id is already the new tenant, so the tenants policy's WITH CHECK accepts the row.
            row = await sql.insert(conn, tenant_id, company, email, TRIAL_SEATS)
            site_id = new_id()
            await site_sql.insert(conn, site_id, tenant_id, DEFAULT_SITE_NAME, "UTC", "office")
            key = await insert_key(conn, tenant_id, Role.ADMIN, "admin")
            await seat_sql.ledger_add(conn, new_id(), tenant_id, TRIAL_SEATS, TRIAL_SEATS, "trial", None)
            await audit(
                conn,
                None,
                "tenant.created",
                "tenant",
                tenant_id,
                {"company": company, "email": email, "site_id": str(site_id), "key_id": str(key.id)},
                tenant_id=tenant_id,
            )
        return SignupOut(
            tenant=tenant_from_row(row),
            api_key=key,
            seats=Seats(purchased=TRIAL_SEATS, logged_in=0, available=TRIAL_SEATS, plan="trial"),
        )


class MeController(Controller):
    path = "/v1/me"
    tags = ["tenants"]

    @get("/", responses=READ_ERRORS, summary="The tenant and the key making this call")
    async def me(self, principal: CallerDep, tenant_conn: TenantConnDep) -> Me:
        tenant = await sql.read(tenant_conn)
        key = await key_sql.get(tenant_conn, principal.key_id)
        if tenant is None or key is None:
            raise Problem(401, "this API key's tenant no longer exists")
        return Me(tenant=tenant_from_row(tenant), key=key_from_row(key))

    @get("/settings", responses=READ_ERRORS, summary="The tenant's settings")
    async def get_settings(self, tenant_conn: TenantConnDep) -> TenantSettings:
        row = await sql.settings(tenant_conn)
        if row is None:
            raise Problem(401, "this API key's tenant no longer exists")
        return TenantSettings(**row)

    @patch("/settings", responses=WRITE_ERRORS, guards=[admin_only], summary="Change the tenant's settings")
    async def patch_settings(
        self, mutation: MutationDep, data: JSONBody[TenantSettingsPatch]
    ) -> Response[TenantSettings]:
        changes: dict[str, Any] = {
            k: getattr(data, k)
            for k in ("agent_grace_seconds", "language", "monitor_notice")
            if getattr(data, k) is not None
        }
        if data.timezone is not None:
            changes["timezone"] = check_timezone("timezone", data.timezone)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[TenantSettings]:
            if changes:
                await sql.update_settings(conn, principal.tenant_id, changes)
                await audit(
                    conn, principal, "tenant.settings_changed", "tenant", principal.tenant_id, changes
                )
            row = await sql.settings(conn)
            if row is None:
                raise Problem(401, "this API key's tenant no longer exists")
            changed = ConfigChanged(
                tenant_id=principal.tenant_id, kind="tenant", op="updated", object_id=principal.tenant_id
            )
            return Outcome(200, TenantSettings(**row), [changed])

        return await mutation.run(work)
