"""Widget public keys (admin API), their public exchange for widget tokens (origins, queues, revocation,
expiry, rate limit, tenants), and TURN servers in token answers."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest

from services.api import create_app
from services.api.tokens import (
    TokenError,
    TokenErrorCode,
    issue_agent_token,
    issue_widget_token,
    verify_token,
    verify_widget_token,
)
from services.kernel.config import load_settings

from .conftest import Tenant, assert_problem, serve, signup

TOKEN = "/v1/widget/token"


async def _queue(client: httpx.AsyncClient, t: Tenant, name: str) -> str:
    r = await client.post("/v1/queues", json={"name": name}, headers=t.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _widget_key(client: httpx.AsyncClient, t: Tenant, queue_ids: list[str], **body: object) -> dict:
    r = await client.post("/v1/widget-keys", json={"queue_ids": queue_ids, **body}, headers=t.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_widget_keys_create_list_get_revoke(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    sales = await _queue(client, tenant, "Sales")
    key = await _widget_key(
        client,
        tenant,
        [sales, sales],
        name="Shop",
        origins=["https://Shop.Example.com:443/", "http://localhost:8000", "https://shop.example.com"],
    )
    assert key["public_key"].startswith("pk_") and len(key["public_key"]) >= 23
    assert key["queue_ids"] == [sales] and key["name"] == "Shop" and key["revoked_at"] is None
    assert key["origins"] == ["https://shop.example.com", "http://localhost:8000"]
    assert key["max_concurrent_calls"] is None  # the tenant's limit only
    limited = await _widget_key(client, tenant, [sales], max_concurrent_calls=2)
    assert limited["max_concurrent_calls"] == 2
    assert (await client.get(f"/v1/widget-keys/{key['id']}", headers=h)).json() == key
    assert {k["id"] for k in (await client.get("/v1/widget-keys", headers=h)).json()["items"]} == {
        key["id"],
        limited["id"],
    }

    for body, field in [
        ({"queue_ids": []}, "queue_ids"),
        ({"queue_ids": ["01a00000-0000-7000-8000-000000000000"]}, "queue_ids[0]"),
        ({"queue_ids": [sales], "origins": ["shop.example.com"]}, "origins[0]"),
        ({"queue_ids": [sales], "origins": ["https://x.example/path"]}, "origins[0]"),
        ({"queue_ids": [sales], "origins": ["ftp://x.example"]}, "origins[0]"),
        ({"queue_ids": [sales], "origins": ["https://user@x.example"]}, "origins[0]"),
        ({"queue_ids": [sales], "max_concurrent_calls": 0}, "max_concurrent_calls"),
    ]:
        problem = assert_problem(await client.post("/v1/widget-keys", json=body, headers=h), 422)
        assert [e["field"] for e in problem["errors"]] == [field], (body, problem)

    assert (await client.delete(f"/v1/widget-keys/{key['id']}", headers=h)).status_code == 204
    revoked = (await client.get(f"/v1/widget-keys/{key['id']}", headers=h)).json()
    assert revoked["revoked_at"] is not None
    assert (await client.delete(f"/v1/widget-keys/{key['id']}", headers=h)).status_code == 204  # idempotent
    assert_problem(
        await client.delete("/v1/widget-keys/01a00000-0000-7000-8000-000000000000", headers=h), 404
    )
    audit = (await client.get("/v1/audit", params={"limit": 200}, headers=h)).json()["items"]
    assert {"widget_key.created", "widget_key.revoked"} <= {a["action"] for a in audit}


async def test_widget_token_reaches_only_an_allowed_queue(
    client: httpx.AsyncClient, tenant: Tenant, infra
) -> None:
    sales = await _queue(client, tenant, "Sales")
    support = await _queue(client, tenant, "Support")
    key = await _widget_key(client, tenant, [sales])
    pk = key["public_key"]

    r = await client.post(TOKEN, json={"key": pk, "queue": "sales"})  # by name, any case; no API key
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["queue_id"] == sales and body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300 and body["ice_servers"] == []
    claims = verify_widget_token(infra.token_secret, body["token"])
    assert claims.tenant_id == uuid.UUID(tenant.id) and claims.queues == (uuid.UUID(sales),)
    assert claims.widget_key_id == uuid.UUID(key["id"]) and claims.session_id == uuid.UUID(body["session_id"])
    assert (await client.post(TOKEN, json={"key": pk, "queue": sales})).status_code == 201  # by id
    # Without TURN configured (the default), agent token answers carry no ICE server either.
    agent = (
        await client.post("/v1/agents", json={"name": "A", "email": "a@x.example"}, headers=tenant.headers)
    ).json()
    r = await client.post(f"/v1/agents/{agent['id']}/token", headers=tenant.headers)
    assert r.status_code == 201 and r.json()["ice_servers"] == []

    # A queue the key does not allow, or none at all: the same 403 (the key's holder is anyone).
    for queue in (support, "Support", "no such queue", "01a00000-0000-7000-8000-000000000000"):
        problem = assert_problem(await client.post(TOKEN, json={"key": pk, "queue": queue}), 403)
        assert "does not allow" in problem["detail"]
    # Keys that do not exist, or are not keys at all.
    for bad in ("pk_" + "x" * 32, "sbk_" + "x" * 43, "pk_short", ""):
        assert_problem(await client.post(TOKEN, json={"key": bad, "queue": "sales"}), 401)
    # A revoked key is refused at once.
    await client.delete(f"/v1/widget-keys/{key['id']}", headers=tenant.headers)
    problem = assert_problem(await client.post(TOKEN, json={"key": pk, "queue": "sales"}), 401)
    assert "revoked" in problem["detail"]


async def test_widget_token_checks_the_origin(client: httpx.AsyncClient, tenant: Tenant) -> None:
    sales = await _queue(client, tenant, "Sales")
    pk = (await _widget_key(client, tenant, [sales], origins=["https://shop.example.com"]))["public_key"]
    body = {"key": pk, "queue": "Sales"}
    ok = await client.post(TOKEN, json=body, headers={"Origin": "https://SHOP.example.com:443"})
    assert ok.status_code == 201, ok.text
    # Echoed as sent: browsers compare it byte for byte with the Origin they sent.
    assert ok.headers["access-control-allow-origin"] == "https://SHOP.example.com:443"
    for origin in (
        "https://evil.example",
        "http://shop.example.com",
        "https://shop.example.com:8443",
        "null",
    ):
        r = await client.post(TOKEN, json=body, headers={"Origin": origin})
        assert "may not be used from" in assert_problem(r, 403)["detail"], origin
        assert "access-control-allow-origin" not in r.headers
    assert_problem(await client.post(TOKEN, json=body), 403)  # no Origin at all
    # The CORS preflight lets a browser send the JSON POST; it grants nothing by itself.
    pre = await client.options(
        TOKEN, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in pre.headers["access-control-allow-headers"]
    # A key without origins works from any page, and from no page.
    open_pk = (await _widget_key(client, tenant, [sales]))["public_key"]
    r = await client.post(
        TOKEN, json={"key": open_pk, "queue": "Sales"}, headers={"Origin": "https://a.example"}
    )
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == "https://a.example"
    assert (await client.post(TOKEN, json={"key": open_pk, "queue": "Sales"})).status_code == 201


async def test_a_widget_key_reaches_only_its_own_tenant(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    a_queue = await _queue(client, a, "Shared name")
    b_queue = await _queue(client, b, "Shared name")
    b_pk = (await _widget_key(client, b, [b_queue]))["public_key"]
    # A's queue id, through B's key: refused; by the shared name: B's own queue.
    assert_problem(await client.post(TOKEN, json={"key": b_pk, "queue": a_queue}), 403)
    r = await client.post(TOKEN, json={"key": b_pk, "queue": "shared name"})
    assert r.status_code == 201 and r.json()["queue_id"] == b_queue
    # A widget key cannot name another tenant's queue when it is created either.
    problem = assert_problem(
        await client.post("/v1/widget-keys", json={"queue_ids": [b_queue]}, headers=a.headers)
    )
    assert problem["status"] == 422
    assert (await client.get("/v1/widget-keys", headers=a.headers)).json()["items"] == []


async def test_widget_key_lookup_sees_exactly_one_row(
    client: httpx.AsyncClient, tenant: Tenant, infra
) -> None:
    sales = await _queue(client, tenant, "Sales")
    pk = (await _widget_key(client, tenant, [sales]))["public_key"]
    await _widget_key(client, tenant, [sales])
    conn = await asyncpg.connect(infra.app_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM widget_keys") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.widget_public_key', $1, true)", pk)
            assert await conn.fetchval("SELECT count(*) FROM widget_keys") == 1
            assert await conn.fetchval("SELECT count(*) FROM queues") == 0
            # The lookup is read-only: it cannot revoke or change the key it sees.
            assert await conn.execute("UPDATE widget_keys SET revoked_at = now()") == "UPDATE 0"
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.widget_public_key', $1, true)", pk + "x")
            assert await conn.fetchval("SELECT count(*) FROM widget_keys") == 0
        assert await conn.fetchval("SELECT count(*) FROM widget_keys") == 0
    finally:
        await conn.close()


def test_widget_tokens_expire_and_are_not_agent_tokens() -> None:
    secret = "s" * 40
    tenant, key, queue, agent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = 1_790_000_000.0
    token, session, expires = issue_widget_token(secret, tenant, key, queue, now=now)
    assert expires == now + 300
    claims = verify_widget_token(secret, token, now=now + 299)
    assert claims.session_id == session and claims.queues == (queue,)
    with pytest.raises(TokenError) as e:
        verify_widget_token(secret, token, now=now + 300)
    assert e.value.code is TokenErrorCode.EXPIRED
    with pytest.raises(TokenError) as e:
        verify_token(secret, token, now=now + 1)  # the agent verifier refuses a widget token
    assert e.value.code is TokenErrorCode.INVALID
    agent_token, _ = issue_agent_token(secret, tenant, agent, now=now)
    with pytest.raises(TokenError) as e:
        verify_widget_token(secret, agent_token, now=now + 1)
    assert e.value.code is TokenErrorCode.INVALID
    with pytest.raises(TokenError):
        verify_widget_token("t" * 40, token, now=now + 1)
    with pytest.raises(ValueError):
        issue_widget_token(secret, tenant, key, queue, now=now, ttl=3600)


async def test_rate_limit_and_turn_servers_in_token_answers(infra) -> None:
    settings = load_settings(
        {},
        database_url=infra.app_url,
        nats_url=infra.nats_url,
        token_secret=infra.token_secret,
        signup_rate_per_minute=1000,
        widget_token_rate_per_minute=3,
        turn_urls="turn:turn.example.com:3478 turns:turn.example.com:5349",
        turn_secret="turn-shared-secret",
        turn_ttl_s=120,
    )
    async with serve(create_app(settings)) as client:
        t = await signup(client)
        sales = await _queue(client, t, "Sales")
        pk = (await _widget_key(client, t, [sales]))["public_key"]
        answers = [await client.post(TOKEN, json={"key": pk, "queue": "Sales"}) for _ in range(4)]
        assert [r.status_code for r in answers] == [201, 201, 201, 429]
        assert int(answers[3].headers["retry-after"]) >= 1
        servers = answers[0].json()["ice_servers"]
        assert servers[0]["urls"] == ["turn:turn.example.com:3478", "turns:turn.example.com:5349"]
        expiry, _, subject = servers[0]["username"].partition(":")
        assert subject == f"w-{answers[0].json()['session_id']}"
        assert 0 < int(expiry) - time.time() <= 121

        agent = (
            await client.post("/v1/agents", json={"name": "Ann", "email": "ann@x.example"}, headers=t.headers)
        ).json()
        r = await client.post(f"/v1/agents/{agent['id']}/token", headers=t.headers)
        assert r.status_code == 201, r.text
        agent_servers = r.json()["ice_servers"]
        assert len(agent_servers) == 1 and agent_servers[0]["username"].endswith(f":{agent['id']}")
        assert agent_servers[0]["credential"] and agent_servers[0]["urls"] == servers[0]["urls"]
