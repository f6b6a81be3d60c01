"""Every route's happy path, pagination, idempotency, seats and usage, audit, events, schema and metrics."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.kernel import db
from services.kernel.bus import connect
from services.kernel.events import ConfigChanged, SeatsChanged
from services.kernel.waits import close_pool

from .conftest import Tenant, assert_problem, auth, serve, signup, unique_e164


async def test_signup_creates_tenant_site_key_and_trial(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/signup", json={"company": "  Acme Ltd  ", "email": " boss@acme.example "})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["tenant"]["name"] == "Acme Ltd"  # trimmed
    assert body["tenant"]["admin_email"] == "boss@acme.example"
    assert body["tenant"]["plan"] == "trial"
    assert body["seats"] == {"purchased": 2, "logged_in": 0, "available": 2, "plan": "trial"}
    key = body["api_key"]
    assert key["role"] == "admin" and key["key"].startswith("sbk_") and len(key["key"]) == 47
    assert key["key"].startswith(key["prefix"]) and key["revoked_at"] is None

    me = await client.get("/v1/me", headers=auth(key["key"]))
    assert me.status_code == 200
    assert me.json()["tenant"] == body["tenant"]
    assert me.json()["key"]["id"] == key["id"]
    assert "key" not in me.json()["key"]  # the secret is never shown again
    assert me.json()["key"]["last_used_at"] is not None
    # last_used_at is written at most once a minute per key, not on every request.
    again = await client.get("/v1/me", headers=auth(key["key"]))
    assert again.json()["key"]["last_used_at"] == me.json()["key"]["last_used_at"]

    sites = (await client.get("/v1/sites", headers=auth(key["key"]))).json()["items"]
    assert [(s["name"], s["kind"], s["timezone"]) for s in sites] == [("Main", "office", "UTC")]
    seats = await client.get("/v1/seats", headers=auth(key["key"]))
    assert seats.json() == body["seats"]
    audit = (await client.get("/v1/audit", headers=auth(key["key"]))).json()["items"]
    assert [a["action"] for a in audit] == ["tenant.created"]


async def test_signup_stores_only_a_hash_of_the_key(client: httpx.AsyncClient, infra) -> None:
    t = await signup(client)
    conn = await asyncpg.connect(infra.owner_url)
    try:
        row = await conn.fetchrow("SELECT key_hash, prefix FROM api_keys WHERE id = $1", uuid.UUID(t.key_id))
    finally:
        await conn.close()
    import hashlib

    assert bytes(row["key_hash"]) == hashlib.sha256(t.key.encode()).digest()
    assert t.key not in repr(dict(row))


async def test_keys_create_list_get_revoke(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    r = await client.post("/v1/keys", json={"role": "developer", "name": "ci"}, headers=h)
    assert r.status_code == 201, r.text
    dev = r.json()
    assert dev["role"] == "developer" and dev["name"] == "ci" and dev["key"].startswith("sbk_")
    listed = (await client.get("/v1/keys", headers=h)).json()
    assert [k["id"] for k in listed["items"]] == [tenant.key_id, dev["id"]]
    assert all("key" not in k for k in listed["items"])
    got = await client.get(f"/v1/keys/{dev['id']}", headers=h)
    assert got.status_code == 200 and got.json()["name"] == "ci"
    # The new key works, then stops working the moment it is revoked.
    assert (await client.get("/v1/me", headers=auth(dev["key"]))).status_code == 200
    assert (await client.delete(f"/v1/keys/{dev['id']}", headers=h)).status_code == 204
    assert_problem(await client.get("/v1/me", headers=auth(dev["key"])), 401)
    assert (await client.get(f"/v1/keys/{dev['id']}", headers=h)).json()["revoked_at"] is not None
    # Revoking again is harmless; revoking the calling key is refused.
    assert (await client.delete(f"/v1/keys/{dev['id']}", headers=h)).status_code == 204
    body = assert_problem(await client.delete(f"/v1/keys/{tenant.key_id}", headers=h), 409)
    assert "itself" in body["detail"]


async def test_sites_crud(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    r = await client.post(
        "/v1/sites", json={"name": "Home team", "timezone": "Europe/Paris", "kind": "home"}, headers=h
    )
    assert r.status_code == 201, r.text
    site = r.json()
    assert (site["name"], site["timezone"], site["kind"]) == ("Home team", "Europe/Paris", "home")
    assert (await client.get(f"/v1/sites/{site['id']}", headers=h)).json() == site
    r = await client.patch(f"/v1/sites/{site['id']}", json={"timezone": "Asia/Hong_Kong"}, headers=h)
    assert (
        r.status_code == 200 and r.json()["timezone"] == "Asia/Hong_Kong" and r.json()["name"] == "Home team"
    )
    assert r.json()["updated_at"] >= site["updated_at"]
    dup = await client.post(
        "/v1/sites", json={"name": "Home team", "timezone": "UTC", "kind": "office"}, headers=h
    )
    assert "Home team" in assert_problem(dup, 409)["detail"]
    assert (await client.delete(f"/v1/sites/{site['id']}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/v1/sites/{site['id']}", headers=h), 404)
    # The last site stays.
    assert (
        "last" in assert_problem(await client.delete(f"/v1/sites/{tenant.site_id}", headers=h), 409)["detail"]
    )


async def test_site_in_use_cannot_be_deleted(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    site = (
        await client.post("/v1/sites", json={"name": "B", "timezone": "UTC", "kind": "office"}, headers=h)
    ).json()
    agent = await client.post(
        "/v1/agents", json={"name": "A", "email": "a@x.example", "site_id": site["id"]}, headers=h
    )
    assert agent.status_code == 201
    assert (
        "1 agents" in assert_problem(await client.delete(f"/v1/sites/{site['id']}", headers=h), 409)["detail"]
    )
    await client.patch(f"/v1/agents/{agent.json()['id']}", json={"site_id": tenant.site_id}, headers=h)
    assert (await client.delete(f"/v1/sites/{site['id']}", headers=h)).status_code == 204


async def test_agents_crud(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    r = await client.post(
        "/v1/agents",
        json={
            "name": "Ann",
            "email": "Ann@Example.com",
            "skills": {"sales": 8, "billing": 5},
            "languages": ["en", "zh-HK"],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["site_id"] == tenant.site_id  # the default site
    assert agent["skills"] == {"sales": 8, "billing": 5} and agent["languages"] == ["en", "zh-HK"]
    # Emails are unique per tenant, case-insensitively.
    assert_problem(
        await client.post("/v1/agents", json={"name": "Ann 2", "email": "ann@example.COM"}, headers=h), 409
    )
    r = await client.patch(
        f"/v1/agents/{agent['id']}", json={"skills": {"support": 10}, "name": "Ann B"}, headers=h
    )
    assert r.status_code == 200 and r.json()["skills"] == {"support": 10} and r.json()["name"] == "Ann B"
    assert r.json()["languages"] == ["en", "zh-HK"]
    assert (await client.get(f"/v1/agents/{agent['id']}", headers=h)).json() == r.json()
    assert (await client.delete(f"/v1/agents/{agent['id']}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/v1/agents/{agent['id']}", headers=h), 404)
    assert_problem(await client.delete(f"/v1/agents/{agent['id']}", headers=h), 404)


async def test_queues_crud_and_numbers_follow_queue_deletion(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    h = tenant.headers
    r = await client.post(
        "/v1/queues",
        json={"name": "Sales", "skills": {"sales": 5}, "sl_percent": 90, "sl_seconds": 15},
        headers=h,
    )
    assert r.status_code == 201, r.text
    q = r.json()
    assert (
        q["priority"],
        q["sl_percent"],
        q["sl_seconds"],
        q["short_abandon_seconds"],
        q["wrap_up_seconds"],
    ) == (50, 90, 15, 5, 30)
    assert q["site_id"] is None
    r = await client.patch(
        f"/v1/queues/{q['id']}", json={"priority": 99, "site_id": tenant.site_id}, headers=h
    )
    assert r.status_code == 200 and r.json()["priority"] == 99 and r.json()["site_id"] == tenant.site_id
    assert_problem(await client.post("/v1/queues", json={"name": "Sales"}, headers=h), 409)
    number = (
        await client.post("/v1/numbers", json={"e164": unique_e164(), "queue_id": q["id"]}, headers=h)
    ).json()
    assert number["queue_id"] == q["id"]
    flow = "name: sales-line\nstart: q\nnodes:\n  q: {type: queue, queue: Sales}\n"
    assert (await client.post("/v1/flows", json={"definition": flow}, headers=h)).status_code == 201
    # In use: refused, naming every user; nothing changed.
    refused = await client.delete(f"/v1/queues/{q['id']}", headers=h)
    assert_problem(refused, 409)
    assert number["e164"] in refused.json()["detail"] and "sales-line" in refused.json()["detail"]
    assert refused.json()["errors"] == [
        {"field": "numbers", "message": number["e164"]},
        {"field": "flows", "message": "sales-line"},
    ]
    assert (await client.get(f"/v1/numbers/{number['id']}", headers=h)).json()["queue_id"] == q["id"]
    # force=true: deleted, its number unrouted, the forced removal audited with what it left behind.
    assert (await client.delete(f"/v1/queues/{q['id']}?force=true", headers=h)).status_code == 204
    assert (await client.get(f"/v1/numbers/{number['id']}", headers=h)).json()["queue_id"] is None
    audit = (await client.get("/v1/audit", headers=h)).json()["items"][-1]
    assert audit["action"] == "queue.deleted" and audit["detail"]["unrouted_numbers"] == [number["e164"]]
    # An unused queue goes at once.
    q2 = (await client.post("/v1/queues", json={"name": "Unused"}, headers=h)).json()
    assert (await client.delete(f"/v1/queues/{q2['id']}", headers=h)).status_code == 204


async def test_numbers_claim_point_release(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    e164 = unique_e164()
    r = await client.post("/v1/numbers", json={"e164": f" {e164} "}, headers=h)
    assert r.status_code == 201, r.text
    n = r.json()
    assert n["e164"] == e164 and n["queue_id"] is None and n["flow_id"] is None
    q = (await client.post("/v1/queues", json={"name": "Support"}, headers=h)).json()
    r = await client.patch(f"/v1/numbers/{n['id']}", json={"queue_id": q["id"]}, headers=h)
    assert r.status_code == 200 and r.json()["queue_id"] == q["id"]
    r = await client.patch(f"/v1/numbers/{n['id']}", json={"queue_id": None}, headers=h)
    assert r.status_code == 200 and r.json()["queue_id"] is None
    assert (await client.delete(f"/v1/numbers/{n['id']}", headers=h)).status_code == 204
    # Released numbers can be claimed again.
    assert (await client.post("/v1/numbers", json={"e164": e164}, headers=h)).status_code == 201


async def test_pagination_walks_every_list_in_creation_order(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    h = tenant.headers
    made = {
        "sites": [tenant.site_id],
        "agents": [],
        "queues": [],
        "numbers": [],
        "keys": [tenant.key_id],
    }
    for i in range(5):
        made["sites"].append(
            (
                await client.post(
                    "/v1/sites", json={"name": f"S{i}", "timezone": "UTC", "kind": "home"}, headers=h
                )
            ).json()["id"]
        )
        made["agents"].append(
            (
                await client.post("/v1/agents", json={"name": f"A{i}", "email": f"a{i}@x.example"}, headers=h)
            ).json()["id"]
        )
        made["queues"].append(
            (await client.post("/v1/queues", json={"name": f"Q{i}"}, headers=h)).json()["id"]
        )
        made["numbers"].append(
            (await client.post("/v1/numbers", json={"e164": unique_e164()}, headers=h)).json()["id"]
        )
        made["keys"].append(
            (await client.post("/v1/keys", json={"role": "supervisor"}, headers=h)).json()["id"]
        )
    for resource, ids in made.items():
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            r = await client.get(f"/v1/{resource}", params=params, headers=h)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 2
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids, resource
        assert pages == 3, resource
        full = (await client.get(f"/v1/{resource}", headers=h)).json()
        assert [i["id"] for i in full["items"]] == ids and full["next_cursor"] is None
    # The audit log pages the same way, oldest first.
    audit = (await client.get("/v1/audit", params={"limit": 200}, headers=h)).json()["items"]
    assert audit[0]["action"] == "tenant.created" and len(audit) == 1 + 5 * 5
    assert [a["at"] for a in audit] == sorted(a["at"] for a in audit)


async def test_idempotency_replays_and_refuses_mismatch(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers | {"Idempotency-Key": "create-sales-1"}
    first = await client.post("/v1/queues", json={"name": "Sales", "priority": 7}, headers=h)
    assert first.status_code == 201
    # Same body (other key order and spacing), same answer, no second queue.
    again = await client.post(
        "/v1/queues",
        content=b'{ "priority": 7, "name": "Sales" }',
        headers=h | {"Content-Type": "application/json"},
    )
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    queues = (await client.get("/v1/queues", headers=tenant.headers)).json()["items"]
    assert len(queues) == 1
    body = assert_problem(
        await client.post("/v1/queues", json={"name": "Sales", "priority": 8}, headers=h), 422
    )
    assert body["type"].endswith("/idempotency-mismatch")
    body = assert_problem(await client.post("/v1/sites", json={"name": "Sales"}, headers=h), 422)
    assert body["type"].endswith("/idempotency-mismatch")
    # Keys are per tenant: another tenant may use the same string.
    other = await signup(client)
    r = await client.post(
        "/v1/queues",
        json={"name": "Sales", "priority": 7},
        headers=other.headers | {"Idempotency-Key": "create-sales-1"},
    )
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]
    # Seat purchases are POSTs too: a retried purchase buys once.
    hp = tenant.headers | {"Idempotency-Key": "buy-3"}
    a = await client.post("/v1/seats/purchase", json={"count": 3}, headers=hp)
    b = await client.post("/v1/seats/purchase", json={"count": 3}, headers=hp)
    assert a.status_code == b.status_code == 200 and a.json() == b.json() and a.json()["purchased"] == 5
    assert (await client.get("/v1/seats", headers=tenant.headers)).json()["purchased"] == 5
    # A failed request stores nothing: the retry runs again.
    hf = tenant.headers | {"Idempotency-Key": "release-too-many"}
    assert_problem(await client.post("/v1/seats/release", json={"count": 50}, headers=hf), 409)
    assert (await client.post("/v1/seats/release", json={"count": 1}, headers=hf)).status_code == 200
    # Keys: the secret is never stored, so the replay names the key instead of showing it again.
    hk = tenant.headers | {"Idempotency-Key": "key-1"}
    made = await client.post("/v1/keys", json={"role": "developer"}, headers=hk)
    assert made.status_code == 201
    replay = assert_problem(await client.post("/v1/keys", json={"role": "developer"}, headers=hk), 409)
    assert made.json()["id"] in replay["detail"] and made.json()["key"] not in replay["detail"]
    bad = assert_problem(
        await client.post(
            "/v1/sites", json={"name": "X"}, headers=tenant.headers | {"Idempotency-Key": "é".encode() * 3}
        ),
        422,
    )
    assert bad["errors"][0]["field"] == "Idempotency-Key"


async def test_concurrent_retries_with_one_idempotency_key_create_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    h = tenant.headers | {"Idempotency-Key": "same-agent"}
    results = await asyncio.gather(
        *(
            client.post("/v1/agents", json={"name": "Zed", "email": "zed@x.example"}, headers=h)
            for _ in range(6)
        )
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert len((await client.get("/v1/agents", headers=tenant.headers)).json()["items"]) == 1


async def test_seats_purchase_release_and_plan(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    r = await client.post("/v1/seats/purchase", json={"count": 3}, headers=h)
    assert r.json() == {"purchased": 5, "logged_in": 0, "available": 5, "plan": "paid"}
    r = await client.post("/v1/seats/release", json={"count": 4}, headers=h)
    assert r.json() == {"purchased": 1, "logged_in": 0, "available": 1, "plan": "paid"}
    body = assert_problem(await client.post("/v1/seats/release", json={"count": 2}, headers=h), 409)
    assert "only 1" in body["detail"]
    assert (await client.get("/v1/me", headers=h)).json()["tenant"]["plan"] == "paid"


async def test_release_below_logged_in_agents_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, infra
) -> None:
    h = tenant.headers
    await client.post("/v1/seats/purchase", json={"count": 2}, headers=h)  # 4 seats
    agents = [
        (
            await client.post("/v1/agents", json={"name": f"L{i}", "email": f"l{i}@x.example"}, headers=h)
        ).json()["id"]
        for i in range(3)
    ]
    pool = await db.create_pool(infra.app_url, max_size=1)
    try:
        async with db.tenant_tx(pool, uuid.UUID(tenant.id)) as conn:
            for a in agents:
                await conn.execute(
                    "INSERT INTO agent_sessions (agent_id, tenant_id) VALUES ($1, $2)",
                    uuid.UUID(a),
                    uuid.UUID(tenant.id),
                )
    finally:
        await close_pool(pool)
    assert (await client.get("/v1/seats", headers=h)).json() == {
        "purchased": 4,
        "logged_in": 3,
        "available": 1,
        "plan": "paid",
    }
    body = assert_problem(await client.post("/v1/seats/release", json={"count": 2}, headers=h), 409)
    assert "3 agents are logged in" in body["detail"] and "at most 1" in body["detail"]
    assert (await client.get("/v1/seats", headers=h)).json()["purchased"] == 4
    r = await client.post("/v1/seats/release", json={"count": 1}, headers=h)
    assert r.status_code == 200 and r.json()["available"] == 0


async def test_usage_integrates_the_seat_ledger(client: httpx.AsyncClient, tenant: Tenant, infra) -> None:
    # Rewrite this tenant's ledger to known times (as the owner) so the integral is exact.
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    tid = uuid.UUID(tenant.id)
    conn = await asyncpg.connect(infra.owner_url)
    try:
        await conn.execute("DELETE FROM seat_ledger WHERE tenant_id = $1", tid)
        for at, delta, after in (
            (t0, 2, 2),
            (t0 + timedelta(hours=10), 3, 5),
            (t0 + timedelta(hours=30), -4, 1),
        ):
            await conn.execute(
                "INSERT INTO seat_ledger (id, tenant_id, at, delta, seats_after, reason) VALUES ($1, $2, $3, $4, $5, 'test')",
                uuid.uuid4(),
                tid,
                at,
                delta,
                after,
            )
    finally:
        await conn.close()
    h = tenant.headers
    r = await client.get(
        "/v1/usage", params={"from": "2026-03-01T05:00:00Z", "to": "2026-03-02T12:00:00Z"}, headers=h
    )
    assert r.status_code == 200, r.text
    u = r.json()
    # 5 h x 2 + 20 h x 5 + 6 h x 1 = 116 seat-hours
    assert u["seat_hours"] == 116 and u["seat_seconds"] == 116 * 3600
    assert [(i["seats"], i["seconds"]) for i in u["intervals"]] == [
        (2, 5 * 3600),
        (5, 20 * 3600),
        (1, 6 * 3600),
    ]
    assert (
        u["intervals"][0]["from"] == "2026-03-01T05:00:00Z"
        and u["intervals"][-1]["to"] == "2026-03-02T12:00:00Z"
    )
    # Before the tenant existed nothing is counted; naive times are UTC.
    r = await client.get(
        "/v1/usage", params={"from": "2026-02-01T00:00:00", "to": "2026-03-01T01:00:00"}, headers=h
    )
    assert r.json()["seat_hours"] == 2
    assert_problem(
        await client.get(
            "/v1/usage", params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, headers=h
        ),
        422,
    )
    default = await client.get("/v1/usage", headers=h)
    assert default.status_code == 200 and default.json()["from"].endswith("-01T00:00:00Z")


async def test_every_mutation_is_audited(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    site = (
        await client.post("/v1/sites", json={"name": "S", "timezone": "UTC", "kind": "office"}, headers=h)
    ).json()
    await client.patch(f"/v1/sites/{site['id']}", json={"name": "S2"}, headers=h)
    agent = (await client.post("/v1/agents", json={"name": "A", "email": "a@x.example"}, headers=h)).json()
    await client.patch(f"/v1/agents/{agent['id']}", json={"languages": ["fr"]}, headers=h)
    await client.delete(f"/v1/agents/{agent['id']}", headers=h)
    q = (await client.post("/v1/queues", json={"name": "Q"}, headers=h)).json()
    await client.patch(f"/v1/queues/{q['id']}", json={"priority": 3}, headers=h)
    n = (await client.post("/v1/numbers", json={"e164": unique_e164()}, headers=h)).json()
    await client.patch(f"/v1/numbers/{n['id']}", json={"queue_id": q["id"]}, headers=h)
    await client.delete(f"/v1/numbers/{n['id']}", headers=h)
    await client.delete(f"/v1/queues/{q['id']}", headers=h)
    await client.delete(f"/v1/sites/{site['id']}", headers=h)
    k = (await client.post("/v1/keys", json={"role": "developer"}, headers=h)).json()
    await client.delete(f"/v1/keys/{k['id']}", headers=h)
    await client.post("/v1/seats/purchase", json={"count": 1}, headers=h)
    await client.post("/v1/seats/release", json={"count": 1}, headers=h)
    items = (await client.get("/v1/audit", headers=h)).json()["items"]
    assert [i["action"] for i in items] == [
        "tenant.created",
        "site.created",
        "site.updated",
        "agent.created",
        "agent.updated",
        "agent.deleted",
        "queue.created",
        "queue.updated",
        "number.claimed",
        "number.updated",
        "number.released",
        "queue.deleted",
        "site.deleted",
        "key.created",
        "key.revoked",
        "seats.purchased",
        "seats.released",
    ]
    assert all(i["actor_key_id"] == tenant.key_id and i["actor_role"] == "admin" for i in items[1:])
    assert items[2]["detail"] == {"name": "S2"} and items[2]["target_id"] == site["id"]


async def test_events_are_published_after_commit(client: httpx.AsyncClient, infra) -> None:
    bus = await connect(infra.nats_url, name="api-test-events")
    try:
        t = await signup(client)
        site = (
            await client.post(
                "/v1/sites", json={"name": "Ev", "timezone": "UTC", "kind": "home"}, headers=t.headers
            )
        ).json()
        await client.post("/v1/seats/purchase", json={"count": 2}, headers=t.headers)
        sub = await bus.js.pull_subscribe(
            f"sb.{t.id}.evt.>", durable=None, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        msgs = await sub.fetch(2, timeout=5)
        kinds = {m.subject.rsplit(".", 2)[-2]: m for m in msgs}
        assert set(kinds) == {"config", "seats"}  # signup publishes nothing: no service consumes it
        changed = msgspec.json.decode(kinds["config"].data, type=ConfigChanged)
        assert (changed.kind, changed.op, str(changed.object_id)) == ("site", "created", site["id"])
        seats = msgspec.json.decode(kinds["seats"].data, type=SeatsChanged)
        assert (seats.purchased, seats.delta) == (4, 2)
        await sub.unsubscribe()
    finally:
        await bus.close()


async def test_healthz_reports_services_from_the_health_bucket(client: httpx.AsyncClient, infra) -> None:
    import os
    import time

    from services.kernel.service import Health
    from services.kernel.subjects import HEALTH_BUCKET

    bus = await connect(infra.nats_url, name="api-test-health")
    try:
        await bus.ensure_streams()
        kv = await bus.js.key_value(HEALTH_BUCKET)
        # Start from an empty bucket: beats of earlier tests must not count.
        try:
            for key, _ in await bus.kv_latest(HEALTH_BUCKET):
                await kv.purge(key)
        except Exception:
            pass
        r = await client.get("/healthz")
        assert r.status_code == 503
        body = r.json()
        assert (
            body["status"] == "degraded"
            and body["postgres"]["status"] == "ok"
            and body["nats"]["status"] == "ok"
        )
        for name in ("media", "routing", "ivr", "contacts", "recording", "reporting"):
            assert body["services"][name]["status"] == "down", name
        assert body["services"]["api"]["status"] == "ok"
        # A stale beat does not count; fresh beats do.
        now = time.time()
        stale = Health(service="media", pid=1, host="h", status="ok", started_at=now - 100, ts=now - 30)
        await kv.put("media.h.1", msgspec.json.encode(stale))
        r = await client.get("/healthz")
        assert r.status_code == 503 and r.json()["services"]["media"]["status"] == "down"
        for name in ("media", "routing", "ivr", "contacts", "recording", "reporting"):
            beat = Health(
                service=name, pid=os.getpid(), host="h", status="ok", started_at=now, ts=time.time()
            )
            await kv.put(f"{name}.h.{os.getpid()}", msgspec.json.encode(beat))
        r = await client.get("/healthz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok" and body["services"]["routing"]["pid"] == os.getpid()
        assert body["services"]["media"]["age_s"] < 5
        assert body["postgres"]["latency_ms"] >= 0
        for name in ("media", "routing", "ivr", "contacts", "recording", "reporting"):
            await kv.purge(f"{name}.h.{os.getpid()}")
        await kv.purge("media.h.1")
    finally:
        await bus.close()


async def test_openapi_metrics_and_unknown_routes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    expected = {
        "/v1/signup",
        "/v1/me",
        "/v1/me/settings",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/seats",
        "/v1/seats/purchase",
        "/v1/seats/release",
        "/v1/usage",
        "/v1/audit",
        "/v1/sites",
        "/v1/sites/{site_id}",
        "/v1/sites/{site_id}/drain",
        "/v1/sites/{site_id}/restore",
        "/v1/agents",
        "/v1/agents/{agent_id}",
        "/v1/agents/{agent_id}/token",
        "/v1/queues",
        "/v1/queues/{queue_id}",
        "/v1/numbers",
        "/v1/numbers/{number_id}",
        "/v1/numbers/{number_id}/route",
        "/v1/flows",
        "/v1/flows/{flow_name}",
        "/v1/flows/{flow_name}/versions",
        "/v1/flows/{flow_name}/versions/{version}",
        "/v1/flows/{flow_name}/rollback",
        "/v1/ivr/lookup-secret",
        "/v1/ivr/simulate",
        "/v1/trunks",
        "/v1/trunks/{trunk_id}",
        "/v1/contacts",
        "/v1/contacts/{contact_id}",
        "/v1/contacts/{contact_id}/monitor",
        "/v1/contacts/{contact_id}/queue",
        "/v1/contacts/{contact_id}/front",
        "/v1/contacts/{contact_id}/pull",
        "/v1/agents/{agent_id}/state",
        "/v1/supervisors/{account_id}/queues",
        "/v1/supervisors/{account_id}/scope",
        "/v1/alert-policy",
        "/v1/realtime/waiting",
        "/v1/alert-policy/queues/{queue_id}",
        "/v1/realtime/queues",
        "/v1/realtime/agents",
        "/v1/reports/queues",
        "/v1/reports/agents",
        "/v1/reports/agents.csv",
        "/v1/reports/ivr",
        "/v1/reports/sites",
        "/v1/reports/forecast",
        "/v1/reports/replay",
        "/v1/exports/contacts.csv",
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}",
        "/v1/webhooks/deliveries",
        "/v1/webhooks/deliveries/{delivery_id}/replay",
        "/v1/recordings",
        "/v1/recordings/{recording_id}",
        "/v1/recordings/{recording_id}/url",
        "/v1/recordings/{recording_id}/conversation",
        "/v1/recordings/{recording_id}/hold",
        "/v1/recordings/{recording_id}/pause",
        "/v1/recordings/{recording_id}/resume",
        "/v1/recording-audio/{recording_id}",
        "/v1/recording-settings",
        "/v1/recording-settings/rotate-key",
        "/v1/calling-settings",
        "/v1/agents/{agent_id}/dial",
        "/v1/do-not-call",
        "/v1/do-not-call/{e164}",
        "/v1/widget-keys",
        "/v1/widget-keys/{widget_key_id}",
        "/v1/widget/token",
        "/v1/invites",
        "/v1/auth/signin",
        "/v1/auth/refresh",
        "/v1/auth/signout",
        "/v1/auth/invite",
        "/v1/auth/invite/lookup",
        "/v1/agents/{agent_id}/signout",
        "/v1/desk",
        "/v1/desk/agents",
        "/v1/desk/voicemails/{contact_id}",
        "/v1/desk-settings",
        "/healthz",
        "/metrics",
    }
    assert set(paths) == expected
    assert (await client.get("/schema")).status_code == 200
    await client.get("/v1/me", headers=tenant.headers)
    m = await client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'sb_api_requests_total{method="GET",route="/v1/me",status="200"}' in m.text
    assert "sb_api_request_seconds_bucket" in m.text
    # The platform gauges are read at scrape time: PostgreSQL and NATS answer, this api process is up.
    assert 'sb_component_up{component="postgres"} 1.0' in m.text
    assert 'sb_component_up{component="nats"} 1.0' in m.text
    assert 'sb_service_up{service="api"} 1.0' in m.text
    assert_problem(await client.get("/v1/nothing-here"), 404)
    assert_problem(await client.put("/v1/sites", headers=tenant.headers, json={}), 405)


async def test_a_bus_failure_does_not_fail_the_request(app_factory) -> None:
    app = app_factory()
    async with serve(app) as c:
        t = await signup(c)
        await app.state.api.bus.nc.close()  # NATS is gone: events cannot be published
        r = await c.post("/v1/sites", json={"name": "Offline"}, headers=t.headers)
        assert r.status_code == 201, r.text
        assert (await c.get(f"/v1/sites/{r.json()['id']}", headers=t.headers)).status_code == 200
        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json()["nats"]["status"] == "down"


async def test_a_lost_database_is_a_503_not_a_500(app_factory) -> None:
    app = app_factory()
    async with serve(app) as c:
        t = await signup(c)
        pool = app.state.api.pool
        app.state.api.pool = None  # as if the pool were gone
        try:
            r = await c.get("/v1/sites", headers=t.headers)
            assert r.status_code == 500 and "pool" not in r.text  # an internal error, told without internals
            assert_problem(r)
            await close_pool(pool)
            app.state.api.pool = pool
            r = await c.get("/v1/sites", headers=t.headers)
            assert_problem(r, 503)
            assert r.headers["retry-after"] == "1"
        finally:
            app.state.api.pool = pool


async def test_unexpected_exceptions_become_a_500_problem_without_internals() -> None:
    from litestar import Litestar, get

    from services.api.problems import exception_handlers

    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app = Litestar([boom], exception_handlers=exception_handlers())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        r = await c.get("/boom")
    body = assert_problem(r, 500)
    assert body["type"].endswith("/internal") and "hunter2" not in r.text and "RuntimeError" not in r.text
