"""API test fixtures: the app served in-process (lifespan in the test loop) through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from litestar import Litestar

from services.api import create_app
from services.contacts.records import ContactRecord, save_contact
from services.kernel import db
from services.kernel.config import load_settings
from services.kernel.ids import new_id
from services.kernel.waits import close_pool

_counter = itertools.count(1)


def make_app(
    infra: Any, *, signup_rate: int = 100_000, key_rate: int = 100_000, **overrides: Any
) -> Litestar:
    # Every test client is 127.0.0.1: a per-address sign-in limit would count the whole session's tests.
    overrides.setdefault("signin_address_rate_per_minute", 100_000)
    settings = load_settings(
        {},
        database_url=infra.app_url,
        nats_url=infra.nats_url,
        token_secret=infra.token_secret,
        signup_rate_per_minute=signup_rate,
        **overrides,
    )
    return create_app(settings, key_rate_per_minute=key_rate)


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (pool and bus made in this loop) and talk to it without a socket.

    The lifespan runs in a task of its own: Litestar's lifespan holds an anyio cancel scope, which must be
    exited by the task that entered it, and pytest finalises session fixtures from another task.
    """
    ready, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            ready.set()
            await stop.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises the start-up error
    try:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
    finally:
        stop.set()
        await task


@pytest.fixture(scope="session")
async def client(infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_app(infra)) as c:
        yield c


@pytest.fixture(scope="session")
def app_factory(infra: Any) -> Callable[..., Litestar]:
    return lambda **kw: make_app(infra, **kw)


@dataclass
class Tenant:
    """A signed-up tenant as a test sees it: its ids and an admin key."""

    id: str
    key: str
    key_id: str
    site_id: str
    signup: dict[str, Any]
    objects: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}{uuid.uuid4().hex[:6]}"


def unique_e164() -> str:
    # +1 555 then 8 random digits: valid E.164, unique enough across one test session.
    return "+1555" + str(uuid.uuid4().int)[:8]


async def signup(client: httpx.AsyncClient, company: str | None = None) -> Tenant:
    company = company or unique("Co ")
    r = await client.post("/v1/signup", json={"company": company, "email": f"{unique('admin')}@example.com"})
    assert r.status_code == 201, r.text
    body = r.json()
    sites = await client.get("/v1/sites", headers=auth(body["api_key"]["key"]))
    assert sites.status_code == 200, sites.text
    return Tenant(
        id=body["tenant"]["id"],
        key=body["api_key"]["key"],
        key_id=body["api_key"]["id"],
        site_id=sites.json()["items"][0]["id"],
        signup=body,
    )


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    return await signup(client)


def assert_problem(r: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """An RFC 9457 problem: the right content type and the members every problem has."""
    assert r.headers.get("content-type", "").startswith("application/problem+json"), (r.status_code, r.text)
    body = r.json()
    assert body["type"].startswith("https://switchboard.dev/problems/"), body
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == r.status_code
    if status is not None:
        assert r.status_code == status, r.text
    return body


async def insert_contact(infra: Any, tenant_id: str, **fields: Any) -> str:
    """A contact record written as the contact coordinator writes it (there is no API to create one)."""
    fields.setdefault("state", "ended")
    fields.setdefault("arrived_at", 1_790_000_000.0)
    record = ContactRecord(id=fields.pop("id", None) or new_id(), tenant_id=uuid.UUID(tenant_id), **fields)
    pool = await db.create_pool(infra.app_url, max_size=1)
    try:
        async with db.tenant_tx(pool, record.tenant_id) as conn:
            await save_contact(conn, record)
    finally:
        await close_pool(pool)
    return str(record.id)


async def insert_webhook_delivery(infra: Any, tenant_id: str, endpoint_id: str) -> str:
    """A delivery log row as the reporting service's webhook worker writes it."""
    delivery_id = uuid.uuid4()
    pool = await db.create_pool(infra.app_url, max_size=1)
    try:
        async with db.tenant_tx(pool, uuid.UUID(tenant_id)) as conn:
            await conn.execute(
                """INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, body, status)
                   VALUES ($1, $2, $3, $4, 'contact.ended', '{}', 'failed')""",
                delivery_id,
                uuid.UUID(tenant_id),
                uuid.UUID(endpoint_id),
                uuid.uuid4(),
            )
    finally:
        await close_pool(pool)
    return str(delivery_id)


async def insert_recording(infra: Any, tenant_id: str, recording_id: str) -> str:
    """An indexed recording row as the recording service writes it (its audio is not needed here)."""
    pool = await db.create_pool(infra.app_url, max_size=1)
    try:
        async with db.tenant_tx(pool, uuid.UUID(tenant_id)) as conn:
            await conn.execute(
                """INSERT INTO recordings (id, tenant_id, status, started_at, sha256, storage_key)
                   VALUES ($1, $2, 'available', now(), repeat('0', 64), $3)""",
                uuid.UUID(recording_id),
                uuid.UUID(tenant_id),
                f"{tenant_id}/{recording_id}.sbrec",
            )
    finally:
        await close_pool(pool)
    return recording_id
