"""Browser sign-in (services/api/signin.py): invitations, passwords, sessions with rotating refresh cookies,
reuse detection, sign-out everywhere, forced sign-out, lockout, throttling shared by two API instances, and
the desk settings; all on the real app with PostgreSQL and NATS."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from services.api.tokens import verify_token

from .conftest import Tenant, assert_problem, make_app, serve, signup, unique

PASSWORD = "correct horse battery"


async def _agent(client: httpx.AsyncClient, t: Tenant, name: str = "Ada Agent") -> dict[str, Any]:
    r = await client.post(
        "/v1/agents", json={"name": name, "email": f"{unique('a')}@example.com"}, headers=t.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _invite(client: httpx.AsyncClient, t: Tenant, email: str, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/invites", json={"email": email, **body}, headers=t.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another browser: same app, its own cookie jar."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://api.test")


async def _signed_up_agent(client: httpx.AsyncClient, t: Tenant) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = await _agent(client, t)
    invite = await _invite(client, t, agent["email"])
    async with _browser(client) as b:
        r = await b.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        assert r.status_code == 200, r.text
    return agent, invite


async def test_invite_set_password_refresh_rotates_and_reuse_revokes(
    client: httpx.AsyncClient, tenant: Tenant, infra: Any
) -> None:
    agent = await _agent(client, tenant)
    invite = await _invite(client, tenant, agent["email"])
    assert invite["path"] == f"/agent/#invite={invite['token']}" and invite["agent_id"] == agent["id"]

    async with _browser(client) as b:
        info = await b.post("/v1/auth/invite/lookup", json={"token": invite["token"]})
        assert info.status_code == 200 and info.json()["email"] == agent["email"], info.text
        weak = await b.post("/v1/auth/invite", json={"token": invite["token"], "password": "short"})
        assert assert_problem(weak, 422)["errors"][0]["field"] == "password"
        mine = await b.post("/v1/auth/invite", json={"token": invite["token"], "password": agent["email"]})
        assert_problem(mine, 422)

        r = await b.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        for part in ("sb_refresh=", "httponly", "samesite=strict", "path=/v1/auth"):
            assert part in cookie, cookie
        assert "secure" not in cookie  # plain http here; https gets Secure
        first = r.json()
        assert first["role"] == "agent" and first["agent_id"] == agent["id"]
        assert first["session_expires_at"] - first["expires_at"] > 11 * 3600  # a shift, not a token
        claims = verify_token(infra.token_secret, first["access_token"])
        assert str(claims.agent_id) == agent["id"] and str(claims.session_id) == first["session_id"]
        assert first["access_token"] not in r.headers["set-cookie"]
        # The refresh token is nowhere in the body.
        assert b.cookies.get("sb_refresh") not in r.text

        assert_problem(
            await b.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD}), 410
        )

        old_cookie = b.cookies.get("sb_refresh")
        refreshed = await b.post("/v1/auth/refresh")
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["session_id"] == first["session_id"]
        new_cookie = b.cookies.get("sb_refresh")
        assert new_cookie and new_cookie != old_cookie

        # The answer was lost (the browser retries with the cookie it still has): within the grace the
        # spent cookie is accepted once and gets the same successor, not a session revoked for reuse.
        async with _browser(client) as retry:
            retry.cookies.set("sb_refresh", old_cookie, domain="api.test", path="/v1/auth")
            again = await retry.post("/v1/auth/refresh")
            assert again.status_code == 200, again.text
            assert retry.cookies.get("sb_refresh") == new_cookie
            verify_token(infra.token_secret, again.json()["access_token"])
        # The spent cookie comes back a second time (a stolen copy): the session is revoked, the current
        # cookie too.
        async with _browser(client) as thief:
            thief.cookies.set("sb_refresh", old_cookie, domain="api.test", path="/v1/auth")
            stolen = assert_problem(await thief.post("/v1/auth/refresh"), 401)
            assert "used twice" in stolen["detail"]
        assert "signed out" in assert_problem(await b.post("/v1/auth/refresh"), 401)["detail"]

    audit = (await client.get("/v1/audit", params={"limit": 200}, headers=tenant.headers)).json()["items"]
    assert {"account.invited", "account.password_set", "session.refresh_reused"} <= {
        a["action"] for a in audit
    }


async def test_signin_wrong_password_locks_and_is_audited(client: httpx.AsyncClient, tenant: Tenant) -> None:
    agent, _ = await _signed_up_agent(client, tenant)
    async with _browser(client) as b:
        ok = await b.post("/v1/auth/signin", json={"email": agent["email"].upper(), "password": PASSWORD})
        assert ok.status_code == 200, ok.text
        unknown = await b.post("/v1/auth/signin", json={"email": "nobody@example.com", "password": PASSWORD})
        wrong = await b.post(
            "/v1/auth/signin", json={"email": agent["email"], "password": "not the password"}
        )
        # One answer for an unknown email and a wrong password.
        assert assert_problem(unknown, 401)["detail"] == assert_problem(wrong, 401)["detail"]
        for _ in range(3):
            assert_problem(
                await b.post("/v1/auth/signin", json={"email": agent["email"], "password": "nope nope"}), 401
            )
        locked = await b.post("/v1/auth/signin", json={"email": agent["email"], "password": "nope nope"})
        assert "locked" in assert_problem(locked, 403)["detail"]
        # Locked: even the right password is refused, without being checked.
        right = await b.post("/v1/auth/signin", json={"email": agent["email"], "password": PASSWORD})
        assert assert_problem(right, 403)["type"].endswith("account-locked")
    # A new invitation unlocks it.
    invite = await _invite(client, tenant, agent["email"])
    async with _browser(client) as b:
        r = await b.post("/v1/auth/invite", json={"token": invite["token"], "password": "another good one"})
        assert r.status_code == 200, r.text
    audit = (await client.get("/v1/audit", params={"limit": 200}, headers=tenant.headers)).json()["items"]
    actions = [a["action"] for a in audit if a["target_type"] == "account"]
    assert actions.count("signin.failed") == 4 and "signin.locked" in actions
    assert "signin.refused_locked" in actions and "signin.succeeded" in actions
    failed = next(a for a in audit if a["action"] == "signin.failed")
    assert failed["detail"]["address"] == "127.0.0.1" and failed["actor_key_id"] is None


async def test_signin_throttle_holds_across_two_api_instances(client: httpx.AsyncClient, infra: Any) -> None:
    t = await signup(client)
    agent, _ = await _signed_up_agent(client, t)
    body = {"email": agent["email"], "password": "wrong but fine"}
    async with (
        serve(make_app(infra, signin_rate_per_minute=3, signin_lock_failures=100)) as one,
        serve(make_app(infra, signin_rate_per_minute=3, signin_lock_failures=100)) as two,
    ):
        statuses = [
            (await (one if i % 2 else two).post("/v1/auth/signin", json=body)).status_code for i in range(4)
        ]
        assert statuses[:3] == [401, 401, 401], statuses
        assert statuses[3] == 429
        r = await one.post("/v1/auth/signin", json=body)
        assert_problem(r, 429) and int(r.headers["retry-after"]) >= 1


async def test_a_spent_cookie_after_the_grace_is_reuse(client: httpx.AsyncClient, infra: Any) -> None:
    t = await signup(client)
    agent, _ = await _signed_up_agent(client, t)
    async with serve(make_app(infra, refresh_grace_s=0)) as api:
        r = await api.post("/v1/auth/signin", json={"email": agent["email"], "password": PASSWORD})
        assert r.status_code == 200, r.text
        spent = api.cookies.get("sb_refresh")
        assert (await api.post("/v1/auth/refresh")).status_code == 200
        api.cookies.set("sb_refresh", spent, domain="api.test", path="/v1/auth")
        assert "used twice" in assert_problem(await api.post("/v1/auth/refresh"), 401)["detail"]


async def test_signin_throttle_rows_are_pruned_by_time(client: httpx.AsyncClient, infra: Any) -> None:
    """Counters of windows closed over an hour ago go at the next attempts: the table stays bounded."""
    stale = [f"acct:stale-{unique('b')}-{i}" for i in range(3)]
    conn = await asyncpg.connect(infra.app_url)
    try:
        async with conn.transaction():
            for bucket in stale:
                await conn.execute("SELECT set_config('app.throttle_bucket', $1, true)", bucket)
                await conn.execute(
                    """INSERT INTO signin_throttle (bucket, window_start, hits)
                       VALUES ($1, now() - interval '2 hours', 7)""",
                    bucket,
                )
        fresh = f"acct:fresh-{unique('b')}"
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.throttle_bucket', $1, true)", fresh)
            await conn.execute(
                "INSERT INTO signin_throttle (bucket, window_start, hits) VALUES ($1, now() - interval '30 minutes', 1)",
                fresh,
            )
        r = await client.post(
            "/v1/auth/signin", json={"email": f"{unique('n')}@example.com", "password": "x" * 12}
        )
        assert r.status_code == 401, r.text

        async def left(bucket: str) -> int:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.throttle_bucket', $1, true)", bucket)
                return int(
                    await conn.fetchval("SELECT count(*) FROM signin_throttle WHERE bucket = $1", bucket)
                )

        assert [await left(b) for b in stale] == [0, 0, 0]
        assert await left(fresh) == 1  # a window closed less than an hour ago is kept
        # Nobody sees another bucket's live counter through the pruning policy.
        assert await conn.fetchval("SELECT count(*) FROM signin_throttle WHERE bucket = $1", fresh) == 0
    finally:
        await conn.close()


async def test_signout_ends_every_session_and_admin_can_force_out(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    agent, _ = await _signed_up_agent(client, tenant)
    creds = {"email": agent["email"], "password": PASSWORD}
    async with _browser(client) as laptop, _browser(client) as phone:
        assert (await laptop.post("/v1/auth/signin", json=creds)).status_code == 200
        assert (await phone.post("/v1/auth/signin", json=creds)).status_code == 200
        out = await laptop.post("/v1/auth/signout")
        assert out.status_code == 200 and out.json()["sessions_ended"] >= 2, out.text
        assert_problem(await phone.post("/v1/auth/refresh"), 401)
        assert_problem(await laptop.post("/v1/auth/refresh"), 401)  # cookie cleared

        assert (await phone.post("/v1/auth/signin", json=creds)).status_code == 200
        forced = await client.post(f"/v1/agents/{agent['id']}/signout", headers=tenant.headers)
        assert forced.status_code == 200 and forced.json()["sessions_ended"] == 1, forced.text
        assert "signed out" in assert_problem(await phone.post("/v1/auth/refresh"), 401)["detail"]


async def test_invite_refusals(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    no_agent = await client.post("/v1/invites", json={"email": "ghost@example.com"}, headers=h)
    assert assert_problem(no_agent, 422)["errors"][0]["field"] == "email"
    assert_problem(
        await client.post("/v1/invites", json={"email": "x@example.com", "role": "owner"}, headers=h), 422
    )
    agent = await _agent(client, tenant)
    other = await signup(client)
    r = await client.post("/v1/agents", json={"name": "Twin", "email": agent["email"]}, headers=other.headers)
    assert r.status_code == 201
    await _invite(client, tenant, agent["email"])
    # The same email cannot hold accounts in two organisations (sign-in is by email alone).
    taken = await client.post("/v1/invites", json={"email": agent["email"]}, headers=other.headers)
    assert "another organisation" in assert_problem(taken, 409)["detail"]
    supervisor = await _invite(client, tenant, f"{unique('s')}@example.com", role="supervisor")
    assert supervisor["agent_id"] is None
    async with _browser(client) as b:
        r = await b.post("/v1/auth/invite", json={"token": supervisor["token"], "password": PASSWORD})
        assert r.status_code == 200 and r.json()["role"] == "supervisor", r.text
    assert_problem(await client.post("/v1/auth/invite", json={"token": "x" * 43, "password": PASSWORD}), 404)
    # Not an admin key: refused.
    dev = (await client.post("/v1/keys", json={"role": "developer"}, headers=h)).json()["key"]
    assert_problem(
        await client.post(
            "/v1/invites", json={"email": agent["email"]}, headers={"Authorization": f"Bearer {dev}"}
        ),
        403,
    )


async def test_desk_settings_and_the_agents_desk(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    defaults = (await client.get("/v1/desk-settings", headers=h)).json()
    assert [d["code"] for d in defaults["dispositions"]][:2] == ["resolved", "follow_up"]
    assert defaults["wrap_up_form_extends"] is True
    bad_cases = [
        ({"dispositions": [], "away_reasons": []}, "dispositions"),
        ({"dispositions": [{"code": "A B", "label": "x"}], "away_reasons": []}, "dispositions[0].code"),
        (
            {"dispositions": [{"code": "a", "label": "x"}, {"code": "a", "label": "y"}], "away_reasons": []},
            "dispositions[1].code",
        ),
        (
            {
                "dispositions": [{"code": "a", "label": "x"}],
                "away_reasons": [{"code": "missed", "label": "M"}],
            },
            "away_reasons[0].code",
        ),
    ]
    for body, field in bad_cases:
        problem = assert_problem(await client.put("/v1/desk-settings", json=body, headers=h), 422)
        assert problem["errors"][0]["field"] == field, (body, problem)
    mine = {
        "dispositions": [{"code": "sale", "label": "Sale"}, {"code": "no_sale", "label": "No sale"}],
        "away_reasons": [{"code": "coffee", "label": "Coffee"}],
        "wrap_up_form_extends": False,
    }
    r = await client.put("/v1/desk-settings", json=mine, headers=h)
    assert r.status_code == 200 and r.json() == mine, r.text
    assert (await client.get("/v1/desk-settings", headers=h)).json() == mine

    queue = (await client.post("/v1/queues", json={"name": "Billing"}, headers=h)).json()
    agent, _ = await _signed_up_agent(client, tenant)
    colleague = await _agent(client, tenant, "Bob Colleague")
    async with _browser(client) as b:
        token = (await b.post("/v1/auth/signin", json={"email": agent["email"], "password": PASSWORD})).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        desk = (await b.get("/v1/desk", headers=auth)).json()
        assert desk["agent"]["name"] == "Ada Agent" and desk["settings"] == mine
        assert desk["state"] == "logged_out"
        assert [q["name"] for q in desk["queues"]] == ["Billing"] and desk["queues"][0]["id"] == queue["id"]
        others = (await b.get("/v1/desk/agents", headers=auth)).json()["items"]
        assert {"id": colleague["id"], "name": "Bob Colleague", "state": "logged_out"} in others
        assert all(o["id"] != agent["id"] for o in others)
        assert_problem(await b.get("/v1/desk", headers={"Authorization": "Bearer nonsense"}), 401)
        await b.post("/v1/auth/signout")
        # The access token outlives nothing: its session is over.
        assert "signed out" in assert_problem(await b.get("/v1/desk", headers=auth), 401)["detail"]
    # An API key is not an agent's token, and the desk settings need a key.
    assert_problem(await client.get("/v1/desk", headers=h), 401)
    assert_problem(await client.get("/v1/desk-settings"), 401)
