"""Tenant isolation: row-level security at the database, every route of the OpenAPI document across tenants,
and numbers that only one tenant can hold."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import asyncpg
import httpx

from services.contacts.records import ContactRecord, save_contact
from services.kernel import db
from services.kernel import events as ev
from services.kernel.waits import close_pool
from services.reporting.store import FactStore

from .conftest import (
    Tenant,
    assert_problem,
    auth,
    insert_contact,
    insert_recording,
    insert_webhook_delivery,
    signup,
    unique_e164,
)

# Routes that belong to no tenant: they are checked elsewhere, and are the only ones allowed to be skipped.
# The widget token exchange is public (a widget key names its tenant): test_api_widget checks it across tenants.
# A recording's audio is reached by a signed URL that names its tenant; tests/integration/recording/
# test_recordings_api.py checks it across tenants (tampered tenant, recording, expiry and signature).
NOT_TENANT_SCOPED = {
    "/v1/signup",
    "/healthz",
    "/metrics",
    "/v1/widget/token",
    "/v1/recording-audio/{recording_id}",
}
# Sign-in answers to passwords, invitations and cookies, the desk to an agent's token (whose tenant is in
# it): test_api_signin checks them.
NOT_TENANT_SCOPED |= {
    "/v1/auth/signin",
    "/v1/auth/refresh",
    "/v1/auth/signout",
    "/v1/auth/invite",
    "/v1/auth/invite/lookup",
    "/v1/desk",
    "/v1/desk/agents",
    "/v1/desk/voicemails/{contact_id}",  # an agent token's own tenant and voicemails only (test_first_call.py)
}
# Runs the flow text it is sent and reads no tenant data (tests/integration/cli/test_cli_journey.py).
NOT_TENANT_SCOPED |= {"/v1/ivr/simulate"}

# Path parameter name -> the kind of object it names.
PARAM_KIND = {
    "site_id": "site",
    "agent_id": "agent",
    "queue_id": "queue",
    "number_id": "number",
    "key_id": "key",
    "flow_name": "flow",
    "trunk_id": "trunk",
    "contact_id": "contact",
    "recording_id": "recording",
    "widget_key_id": "widget_key",
    "webhook_id": "webhook",
    "delivery_id": "webhook_delivery",
    "account_id": "account",
    "e164": "dnc",
}
KIND_PATH = {
    "site": "sites",
    "agent": "agents",
    "queue": "queues",
    "number": "numbers",
    "key": "keys",
    "flow": "flows",
    "trunk": "trunks",
    "contact": "contacts",
    "recording": "recordings",
    "widget_key": "widget-keys",
}
# Path parameters that are not objects of their own; they take this value.
FIXED_PARAMS = {"version": "1"}


async def _populate(client: httpx.AsyncClient, t: Tenant, tag: str) -> None:
    """One object of each kind, ids in t.objects."""
    h = t.headers
    site = (
        await client.post(
            "/v1/sites", json={"name": f"{tag} site", "timezone": "UTC", "kind": "home"}, headers=h
        )
    ).json()
    agent = (
        await client.post(
            "/v1/agents",
            json={
                "name": f"{tag} agent",
                "email": f"{tag}@x.example",
                "site_id": site["id"],
                "skills": {"s": 3},
            },
            headers=h,
        )
    ).json()
    queue = (
        await client.post("/v1/queues", json={"name": f"{tag} queue", "site_id": site["id"]}, headers=h)
    ).json()
    number = (
        await client.post("/v1/numbers", json={"e164": unique_e164(), "queue_id": queue["id"]}, headers=h)
    ).json()
    key = (await client.post("/v1/keys", json={"role": "developer", "name": f"{tag} key"}, headers=h)).json()
    flow = f"start: q\nnodes:\n  q: {{type: queue, queue: {tag} queue}}\nname: {tag}-flow\n"
    r = await client.post("/v1/flows", json={"definition": flow}, headers=h)
    assert r.status_code == 201, r.text
    trunk = (
        await client.post(
            "/v1/trunks",
            json={
                "name": f"{tag} trunk",
                "allowed_ips": ["198.51.100.0/24"],
                "username": tag,
                "password": "s3cret-pass",
            },
            headers=h,
        )
    ).json()
    never = unique_e164()
    r = await client.post("/v1/do-not-call", json={"e164": never, "note": tag}, headers=h)
    assert r.status_code == 201, r.text
    t.objects["dnc"] = never
    widget_key = (
        await client.post(
            "/v1/widget-keys",
            json={"queue_ids": [queue["id"]], "origins": [f"https://{tag}.example"]},
            headers=h,
        )
    ).json()
    webhook = (
        await client.post("/v1/webhooks", json={"url": f"https://{tag}.example/hook"}, headers=h)
    ).json()
    t.objects.update(
        webhook=webhook["id"],
        widget_key=widget_key["id"],
        site=site["id"],
        agent=agent["id"],
        queue=queue["id"],
        number=number["id"],
        key=key["id"],
        flow=f"{tag}-flow",
        trunk=trunk["id"],
    )
    t.objects["key_secret"] = key["key"]


async def _snapshot(client: httpx.AsyncClient, t: Tenant) -> dict[str, Any]:
    """Everything tenant `t` can see, read with its own key."""
    h = t.headers
    snap: dict[str, Any] = {}
    for kind, plural in KIND_PATH.items():
        r = await client.get(f"/v1/{plural}/{t.objects[kind]}", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        body.pop("last_used_at", None)
        snap[kind] = body
        listed = (await client.get(f"/v1/{plural}", params={"limit": 200}, headers=h)).json()["items"]
        snap[f"{plural} list"] = sorted(i["id"] for i in listed)
    snap["seats"] = (await client.get("/v1/seats", headers=h)).json()
    snap["audit"] = [
        a["id"] for a in (await client.get("/v1/audit", params={"limit": 200}, headers=h)).json()["items"]
    ]
    snap["me"] = (await client.get("/v1/me", headers=h)).json()["tenant"]
    snap["settings"] = (await client.get("/v1/me/settings", headers=h)).json()
    return snap


def reporting_events(tenant_id: uuid.UUID) -> list[Any]:
    """Events for each reporting fact and rollup table."""
    call, at = uuid.uuid4(), 1_790_000_000.0
    return [
        ev.ContactQueued(tenant_id=tenant_id, ts=at, call_id=call, queue="q"),
        ev.AgentStateChanged(tenant_id=tenant_id, ts=at, agent_id="a", old="", new="available"),
        ev.IvrNodeExited(tenant_id=tenant_id, ts=at, call_id=call, flow="f", version=1, node="n"),
        ev.QueueStats(tenant_id=tenant_id, ts=at, queue_id="q", waiting=1, longest_wait_s=1.0),
        # Into the agent and IVR flow rollups.
        ev.ContactAssigned(
            tenant_id=tenant_id, ts=at + 1, call_id=call, queue_id="q", agent_id="a", offer_id="o"
        ),
        ev.CallArrived(tenant_id=tenant_id, ts=at, call_id=call),
        ev.IvrCompleted(tenant_id=tenant_id, ts=at, call_id=call, flow="f", version=1, outcome="transferred"),
    ]


def _operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    return [(path, method.upper()) for path, item in schema["paths"].items() for method in item]


async def test_app_role_sees_nothing_without_a_tenant(client: httpx.AsyncClient, infra) -> None:
    # Put rows in every tenant table first, so that "no rows" means something.
    t = await signup(client)
    await _populate(client, t, "rls")
    await client.post("/v1/sites", json={"name": "idem"}, headers=t.headers | {"Idempotency-Key": "rls-1"})
    # An account, its invitation, a browser session and sign-in counters.
    email = (await client.get(f"/v1/agents/{t.objects['agent']}", headers=t.headers)).json()["email"]
    invite = (await client.post("/v1/invites", json={"email": email}, headers=t.headers)).json()
    password = "correct horse battery"
    assert (
        await client.post("/v1/auth/invite", json={"token": invite["token"], "password": password})
    ).is_success
    assert (await client.post("/v1/auth/signin", json={"email": email, "password": password})).is_success
    pool = await db.create_pool(infra.app_url, max_size=1)
    try:
        async with db.tenant_tx(pool, uuid.UUID(t.id)) as conn:
            await conn.execute(
                "INSERT INTO agent_sessions (agent_id, tenant_id) VALUES ($1, $2)",
                uuid.UUID(t.objects["agent"]),
                uuid.UUID(t.id),
            )
            # A second trunk written directly, beside the one made through the API.
            await conn.execute(
                "INSERT INTO sip_trunks (id, tenant_id, name) VALUES ($1, $2, 'rls')",
                uuid.uuid4(),
                uuid.UUID(t.id),
            )
            # Contacts are written by the contact coordinator, never through the API.
            await save_contact(
                conn, ContactRecord(id=uuid.uuid4(), tenant_id=uuid.UUID(t.id), state="ended", arrived_at=0.0)
            )
            # Recordings, their data keys and purge schedule are written by the recording service.
            rid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO recordings (id, tenant_id, status, started_at) VALUES ($1, $2, 'recording', now())",
                rid,
                uuid.UUID(t.id),
            )
            await conn.execute(
                "INSERT INTO recording_keys (id, tenant_id, master_key_id, wrapped) VALUES ($1, $2, 'x', '\\x00')",
                uuid.uuid4(),
                uuid.UUID(t.id),
            )
            await conn.execute(
                "INSERT INTO recording_purge_schedule (recording_id, tenant_id, purge_after) VALUES ($1, $2, now())",
                rid,
                uuid.UUID(t.id),
            )
            # A queue's own alert thresholds (PUT /v1/alert-policy/queues/{id}).
            await conn.execute(
                "INSERT INTO alert_policies (id, tenant_id, queue_id, waiting_over) VALUES ($1, $2, $3, 5)",
                uuid.uuid4(),
                uuid.UUID(t.id),
                uuid.UUID(t.objects["queue"]),
            )
            # The rollup backfill's record of the days it built (services/reporting/backfill.py).
            await conn.execute(
                "INSERT INTO rpt_rollup_builds (tenant_id, day, version) VALUES ($1, current_date, 1)",
                uuid.UUID(t.id),
            )
        # Reporting facts are written by the reporting ingest from events, never through the API.
        await FactStore(pool).write(uuid.UUID(t.id), reporting_events(uuid.UUID(t.id)))
    finally:
        await close_pool(pool)
    await insert_webhook_delivery(infra, t.id, t.objects["webhook"])  # the webhook worker's log

    owner = await asyncpg.connect(infra.owner_url)
    try:
        tables = await owner.fetch(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'"""
        )
        with_policies = {
            r["tablename"]
            for r in await owner.fetch("SELECT tablename FROM pg_policies WHERE schemaname = 'public'")
        }
        names = {r["relname"] for r in tables}
        assert {
            "tenants",
            "api_keys",
            "sites",
            "agents",
            "agent_sessions",
            "queues",
            "numbers",
            "seat_ledger",
            "audit_log",
            "idempotency_keys",
            "contacts",
            "widget_keys",
        } <= names
        for r in tables:
            assert r["relrowsecurity"] and r["relforcerowsecurity"], (
                f"{r['relname']} lacks (forced) row-level security"
            )
            assert r["relname"] in with_policies, f"{r['relname']} has no policy"
        # Partitions are counted through their parents (a month with no data is an empty partition).
        parents = {r["relname"] for r in tables if not r["relispartition"]}
        owner_counts = {n: await owner.fetchval(f'SELECT count(*) FROM "{n}"') for n in parents}
        assert all(c > 0 for c in owner_counts.values()), owner_counts
        # Views would bypass RLS unless security_invoker: there must be none that do.
        views = await owner.fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')
                 AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false)"""
        )
        assert views == []
        # SECURITY DEFINER functions would run as their owner and bypass RLS: lookups use policies instead.
        # Two exceptions, each with a fixed search_path: one makes reporting's monthly partitions (the
        # application role cannot create tables) and reads and writes no row; the other gives the rollup
        # backfill the tenants' ids and no other column (every read and write of the backfill itself runs
        # in that tenant's transaction).
        definers = await owner.fetch(
            """SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'public' AND p.prosecdef ORDER BY p.proname"""
        )
        assert [d["proname"] for d in definers] == ["rpt_ensure_month", "rpt_tenant_ids"]
        assert all(d["proconfig"] == ["search_path=public, pg_temp"] for d in definers)
        assert (
            await owner.fetchval("SELECT pg_get_function_result('rpt_tenant_ids'::regproc)") == "SETOF uuid"
        )
    finally:
        await owner.close()

    app = await asyncpg.connect(infra.app_url)
    try:
        role = await app.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert role["rolsuper"] is False and role["rolbypassrls"] is False
        owned = await app.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user"
        )
        assert owned == 0
        for name in names:
            try:
                assert await app.fetchval(f'SELECT count(*) FROM "{name}"') == 0, name
            except asyncpg.InsufficientPrivilegeError:
                assert name not in parents, name  # a partition made after the grants: parents only
        # The key lookup policy shows exactly the row whose hash is named, and nothing for any other hash.
        import hashlib

        async with app.transaction():
            await app.execute(
                "SELECT set_config('app.api_key_hash', $1, true)", hashlib.sha256(b"nope").hexdigest()
            )
            assert await app.fetchval("SELECT count(*) FROM api_keys") == 0
        async with app.transaction():
            await app.execute(
                "SELECT set_config('app.api_key_hash', $1, true)", hashlib.sha256(t.key.encode()).hexdigest()
            )
            assert await app.fetchval("SELECT count(*) FROM api_keys") == 1
            assert await app.fetchval("SELECT count(*) FROM sites") == 0
        # A transaction-local tenant does not leak into the next transaction on the same connection.
        async with app.transaction():
            await app.execute("SELECT set_config('app.tenant_id', $1, true)", t.id)
            assert await app.fetchval("SELECT count(*) FROM sites") == 3  # Main, rls site, idem
        assert await app.fetchval("SELECT count(*) FROM sites") == 0
    finally:
        await app.close()


async def test_no_route_reaches_another_tenants_objects(client: httpx.AsyncClient, infra) -> None:
    a, b = await signup(client), await signup(client)
    await _populate(client, a, "alpha")
    await _populate(client, b, "bravo")
    # Contacts are written by the contact coordinator, not through the API; B's caller also called A.
    for t in (a, b):
        t.objects["contact"] = await insert_contact(
            infra, t.id, caller="+15550007777", queue_id=t.objects["queue"], agent_id=t.objects["agent"]
        )
        t.objects["recording"] = await insert_recording(infra, t.id, t.objects["contact"])
        t.objects["webhook_delivery"] = await insert_webhook_delivery(infra, t.id, t.objects["webhook"])
    for t in (a, b):  # a supervisor account each
        invite = await client.post(
            "/v1/invites",
            json={"email": f"lead-{uuid.uuid4().hex[:10]}@example.com", "role": "supervisor"},
            headers=t.headers,
        )
        assert invite.status_code == 201, invite.text
        t.objects["account"] = invite.json()["account_id"]
    before = await _snapshot(client, b)
    b_ids = {b.id, b.key_id, b.site_id, *(v for k, v in b.objects.items() if k != "key_secret")}

    schema = (await client.get("/schema/openapi.json")).json()
    operations = _operations(schema)
    assert len(operations) >= 25
    # Bodies for routes that change things: valid in shape, naming B's objects wherever they name any.
    patch_bodies = {
        "site": {"name": "hijacked", "timezone": "UTC"},
        "agent": {"name": "hijacked", "skills": {"x": 1}},
        "queue": {"priority": 1, "name": "hijacked"},
        "number": {"queue_id": None},
        "trunk": {"name": "hijacked", "username": "x", "password": "hijacked-pass"},
    }
    b_agent_email = (await client.get(f"/v1/agents/{b.objects['agent']}", headers=b.headers)).json()["email"]
    b_desk = (await client.get("/v1/desk-settings", headers=b.headers)).json()
    b_recording = (await client.get("/v1/recording-settings", headers=b.headers)).json()
    b_calling = (await client.get("/v1/calling-settings", headers=b.headers)).json()
    post_bodies = {
        "/v1/sites": ({"name": "alpha second", "timezone": "UTC", "kind": "office"}, {201}),
        "/v1/agents": ({"name": "x", "email": "x@x.example", "site_id": b.objects["site"]}, {422}),
        "/v1/queues": ({"name": "x", "site_id": b.objects["site"]}, {422}),
        "/v1/numbers": ({"e164": unique_e164(), "queue_id": b.objects["queue"]}, {422}),
        "/v1/keys": ({"role": "admin"}, {201}),
        "/v1/webhooks": ({"url": "https://alpha.example/second"}, {201}),
        "/v1/trunks": ({"name": "alpha second", "allowed_ips": ["203.0.113.7"]}, {201}),
        "/v1/seats/purchase": ({"count": 1}, {200}),
        "/v1/widget-keys": ({"queue_ids": [b.objects["queue"]]}, {422}),
        "/v1/seats/release": ({"count": 1}, {200}),
        "/v1/recording-settings/rotate-key": ({}, {201}),
        # B's number on A's list is A's own entry: B's list stays as it was (the snapshot compares).
        "/v1/do-not-call": ({"e164": unique_e164()}, {201}),
        # B's agent is unknown to A.
        "/v1/invites": ({"email": b_agent_email}, {422}),
        # B's queue is unknown to A's flow validation.
        "/v1/flows": (
            {"definition": "name: x\nstart: q\nnodes:\n  q: {type: queue, queue: bravo queue}\n"},
            {422},
        ),
    }
    # POSTs on one of B's objects, with a valid body (an admin may step into a call: not into B's).
    post_path_bodies = {
        "/v1/contacts/{contact_id}/monitor": {"mode": "listen", "leg_id": str(uuid.uuid4())},
        "/v1/contacts/{contact_id}/queue": {"queue": b.objects["queue"]},
        "/v1/agents/{agent_id}/state": {"state": "away", "reason": "hijacked"},
        "/v1/supervisors/{account_id}/queues": {"queue_ids": None},
        "/v1/supervisors/{account_id}/scope": {"site_ids": None},
        "/v1/contacts/{contact_id}/pull": {},
        "/v1/alert-policy/queues/{queue_id}": {"waiting_over": 3},
        "/v1/agents/{agent_id}/dial": {"to": "+15550142"},
    }
    # PATCHes of A's own objects that point them at B's objects.
    cross_refs = [
        ("/v1/agents/{agent_id}", "agent", {"site_id": b.objects["site"]}),
        ("/v1/queues/{queue_id}", "queue", {"site_id": b.objects["site"]}),
        ("/v1/numbers/{number_id}", "number", {"queue_id": b.objects["queue"]}),
    ]
    covered: set[tuple[str, str]] = set()
    for path, method in operations:
        if path in NOT_TENANT_SCOPED:
            covered.add((path, method))
            continue
        params = [p for p in re.findall(r"{([^}]+)}", path) if p not in FIXED_PARAMS]
        if params:
            assert len(params) == 1 and params[0] in PARAM_KIND, f"no rule for {method} {path}"
            kind = PARAM_KIND[params[0]]
            url = path.replace("{" + params[0] + "}", b.objects[kind])
            for name, value in FIXED_PARAMS.items():
                url = url.replace("{" + name + "}", value)
            body = patch_bodies.get(kind) if method == "PATCH" else post_path_bodies.get(path)
            r = await client.request(method, url, json=body, headers=a.headers)
            assert_problem(r, 404)
            covered.add((path, method))
        elif path in ("/v1/reports/forecast", "/v1/reports/replay"):
            # About one queue, named in the query: B's queue is no queue of A's.
            r = await client.get(path, params={"queue": b.objects["queue"], "agents": "1"}, headers=a.headers)
            assert_problem(r, 404)
            covered.add((path, method))
        elif method == "GET":
            r = await client.get(
                path,
                params={"limit": 200} if "limit" in str(schema["paths"][path]) else None,
                headers=a.headers,
            )
            assert r.status_code == 200, (path, r.text)
            leaked = [i for i in b_ids if i in r.text]
            assert leaked == [], f"GET {path} shows tenant B's ids {leaked}"
            covered.add((path, method))
        elif method == "PATCH" and path == "/v1/me/settings":
            # A's own settings: B's must not change (the snapshot below compares them).
            r = await client.patch(path, json={"agent_grace_seconds": 7}, headers=a.headers)
            assert r.status_code == 200 and r.json()["agent_grace_seconds"] == 7, r.text
            covered.add((path, method))
        elif method == "POST" and path in post_bodies:
            body, statuses = post_bodies[path]
            r = await client.post(path, json=body, headers=a.headers)
            assert r.status_code in statuses, (path, r.status_code, r.text)
            assert not any(i in r.text for i in b_ids - set(map(str, body.values())))
            covered.add((path, method))
        elif method == "PUT" and path == "/v1/recording-settings":
            r = await client.put(path, json={"recording_percent": 40, "retention_days": 7}, headers=a.headers)
            assert r.status_code == 200, r.text
            assert (await client.get(path, headers=b.headers)).json() == b_recording
            covered.add((path, method))
        elif method == "PUT" and path == "/v1/alert-policy":
            b_policy = (await client.get(path, headers=b.headers)).json()
            assert (await client.put(path, json={"waiting_over": 2}, headers=a.headers)).status_code == 200
            assert (await client.get(path, headers=b.headers)).json() == b_policy
            covered.add((path, method))
        elif method == "PUT" and path == "/v1/calling-settings":
            # A's caller ID must be A's own number: B's is refused as unknown, and B's settings stay.
            b_number = (await client.get(f"/v1/numbers/{b.objects['number']}", headers=b.headers)).json()
            assert_problem(
                await client.put(path, json={"caller_id": b_number["e164"]}, headers=a.headers), 422
            )
            r = await client.put(path, json={"callback_mode": "customer_first"}, headers=a.headers)
            assert r.status_code == 200 and r.json()["callback_mode"] == "customer_first", r.text
            assert (await client.get(path, headers=b.headers)).json() == b_calling
            covered.add((path, method))
        elif method == "PUT" and path == "/v1/desk-settings":
            mine = {"dispositions": [{"code": "a_only", "label": "A"}], "away_reasons": []}
            assert (await client.put(path, json=mine, headers=a.headers)).status_code == 200
            assert (await client.get(path, headers=b.headers)).json() == b_desk
            covered.add((path, method))
    for path, kind, body in cross_refs:
        r = await client.patch(re.sub(r"{[^}]+}", a.objects[kind], path), json=body, headers=a.headers)
        assert_problem(r, 422)
    uncovered = set(operations) - covered
    assert uncovered == set(), (
        f"routes neither checked across tenants nor listed as not tenant-scoped: {uncovered}"
    )

    # B sees exactly what it saw before, and its key still works.
    after = await _snapshot(client, b)
    assert after == before
    assert (await client.get("/v1/me", headers=auth(b.objects["key_secret"]))).status_code == 200


async def test_a_number_is_claimed_once_across_tenants(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    e164 = unique_e164()
    assert (await client.post("/v1/numbers", json={"e164": e164}, headers=a.headers)).status_code == 201
    assert (
        "already claimed"
        in assert_problem(await client.post("/v1/numbers", json={"e164": e164}, headers=a.headers), 409)[
            "detail"
        ]
    )
    assert_problem(await client.post("/v1/numbers", json={"e164": e164}, headers=b.headers), 409)
    assert (await client.get("/v1/numbers", headers=b.headers)).json()["items"] == []

    # Concurrent claims of a fresh number from both tenants: exactly one wins.
    contested = unique_e164()
    claims = [client.post("/v1/numbers", json={"e164": contested}, headers=t.headers) for t in (a, b) * 5]
    results = await asyncio.gather(*claims)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * 9, statuses
    for r in results:
        if r.status_code == 409:
            assert_problem(r, 409)
    holders = [
        [
            n["e164"]
            for n in (await client.get("/v1/numbers", params={"limit": 200}, headers=t.headers)).json()[
                "items"
            ]
        ].count(contested)
        for t in (a, b)
    ]
    assert sorted(holders) == [0, 1]
