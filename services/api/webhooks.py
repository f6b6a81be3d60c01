"""Webhooks: a tenant's endpoints for contact and recording events, the delivery log, and replay of a
delivery (docs/reporting.md). Deliveries are made by the reporting service (services/reporting/
webhook_worker.py); a replay is made here, at once, with the same signing and the same log."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
import httpx
import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, QueryParameter

from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.reporting import webhooks as wh
from services.reporting.webhook_worker import record, send, signed

from .auth import Principal, admin_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, not_found, validation
from .queries import webhooks as sql

__all__ = ["WebhookController"]

MAX_ENDPOINTS = 20


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str
    events: list[str] = msgspec.field(default_factory=lambda: list(wh.FAMILIES))


class Webhook(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime


class WebhookWithSecret(Webhook, kw_only=True):
    secret: str  # shown once: sign-check each delivery with it (docs/reporting.md)


class Delivery(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    body: str


class WebhookList(msgspec.Struct):
    items: list[Webhook]


class DeliveryList(msgspec.Struct):
    items: list[Delivery]


def _check(data: WebhookCreate) -> tuple[str, list[str]]:
    url = data.url.strip()
    if not (url.startswith("http://") or url.startswith("https://")) or len(url) > 2000 or " " in url:
        raise validation("url", "must be an http:// or https:// URL of at most 2000 characters")
    if not data.events:
        raise validation(
            "events", "name at least one: contact, recording, or an event type such as contact.ended"
        )
    events = sorted({e.strip() for e in data.events})
    for e in events:
        if e not in wh.FAMILIES and e not in wh.EVENTS:
            raise validation(
                "events",
                f"{e!r} is not an event: use contact, recording or one of {', '.join(sorted(wh.EVENTS))}",
            )
    return url, events


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    guards = [admin_only]

    @post("/", responses=WRITE_ERRORS, status_code=201, summary="Add an endpoint (its secret is shown once)")
    async def create_webhook(
        self, api: ApiDep, mutation: MutationDep, data: JSONBody[WebhookCreate]
    ) -> Response[WebhookWithSecret]:
        url, events = _check(data)
        secret_source = api.settings.token_secret

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[WebhookWithSecret]:
            if await sql.count(conn) >= MAX_ENDPOINTS:
                raise validation("url", f"a tenant has at most {MAX_ENDPOINTS} webhook endpoints")
            endpoint_id = new_id()
            row = await sql.insert(conn, endpoint_id, principal.tenant_id, url, events)
            await audit(conn, principal, "webhook.created", "webhook", endpoint_id, {"url": url})
            made = WebhookWithSecret(**dict(row), secret=wh.endpoint_secret(secret_source, endpoint_id))
            return Outcome(201, made, [])

        return await mutation.run(work)

    @get("/", responses=READ_ERRORS, summary="List endpoints")
    async def list_webhooks(self, tenant_conn: TenantConnDep) -> WebhookList:
        return WebhookList(items=[Webhook(**dict(r)) for r in await sql.endpoints(tenant_conn)])

    @delete("/{webhook_id:str}", responses=DELETE_RESPONSES, status_code=204, summary="Remove an endpoint")
    async def delete_webhook(self, mutation: MutationDep, webhook_id: IdParam) -> Response[None]:
        wid = path_id(webhook_id, "webhook")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            if not await sql.delete(conn, wid):
                raise not_found("webhook")
            await audit(conn, principal, "webhook.deleted", "webhook", wid, {})
            return Outcome(204, None, [])

        return await mutation.run(work)

    @get("/deliveries", responses=READ_ERRORS, summary="The delivery log, newest first")
    async def list_deliveries(
        self,
        tenant_conn: TenantConnDep,
        status: Annotated[
            str | None, QueryParameter(name="status", description="pending, delivered or failed")
        ] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> DeliveryList:
        if status is not None and status not in ("pending", "delivered", "failed"):
            raise validation("status", "use pending, delivered or failed")
        rows = await sql.deliveries(tenant_conn, status, limit)
        return DeliveryList(items=[Delivery(**dict(r)) for r in rows])

    @post(
        "/deliveries/{delivery_id:str}/replay",
        responses=WRITE_ERRORS,
        status_code=200,
        summary="Send a delivery again now (a failed one, or any other)",
    )
    async def replay_delivery(self, api: ApiDep, principal: CallerDep, delivery_id: IdParam) -> Delivery:
        # Not a `mutation`: the HTTP request to the tenant's server is made between two transactions (no
        # transaction is held open while a slow receiver answers), and a replay is not idempotent by key.
        did = path_id(delivery_id, "delivery")
        async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
            row = await sql.replayable(conn, did)
        if row is None:
            raise not_found("delivery")
        secret = wh.endpoint_secret(api.settings.token_secret, row["endpoint_id"])
        async with httpx.AsyncClient(follow_redirects=False) as http:
            outcome = await send(http, row["url"], *signed(row, secret, time.time()))
        async with tenant_tx(api.db(), principal.tenant_id) as conn:
            # A replay is one more attempt; it never turns into a scheduled retry: delivered or failed.
            attempts = await sql.lock_attempts(conn, did)
            if attempts is None:
                raise not_found("delivery")
            await record(conn, did, max(attempts + 1, wh.MAX_ATTEMPTS), outcome)
            await sql.count_attempt(conn, did, attempts + 1)
            await audit(conn, principal, "webhook.replayed", "webhook_delivery", did, {})
            fresh = await sql.delivery(conn, did)
            assert fresh is not None  # its row is locked by this transaction
        return Delivery(**dict(fresh))
