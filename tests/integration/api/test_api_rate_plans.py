"""The per-key API limit (issue #17, item 10): a platform default (SB_KEY_RATE_PER_MINUTE) and a tenant's
plan (tenants.api_rate_per_minute, set by the operator), each answered 429 with Retry-After past it."""

from __future__ import annotations

from typing import Any

import asyncpg

from .conftest import assert_problem, make_app, serve


async def _tenant(client: Any, name: str) -> tuple[str, dict[str, str]]:
    r = await client.post("/v1/signup", json={"company": name, "email": f"{name.lower()}@rates.example"})
    assert r.status_code == 201, r.text
    return r.json()["tenant"]["id"], {"Authorization": f"Bearer {r.json()['api_key']['key']}"}


async def test_the_platform_default_and_a_tenants_plan(infra: Any) -> None:
    async with serve(make_app(infra, key_rate=5)) as client:
        plan_tenant, plan = await _tenant(client, "PlanCo")
        _, default = await _tenant(client, "DefaultCo")
        owner = await asyncpg.connect(infra.owner_url)
        try:
            await owner.execute("UPDATE tenants SET api_rate_per_minute = 3 WHERE id = $1", plan_tenant)
        finally:
            await owner.close()
        assert [(await client.get("/v1/sites", headers=plan)).status_code for _ in range(3)] == [200] * 3
        refused = assert_problem(await client.get("/v1/sites", headers=plan), 429)
        assert "3 requests per minute" in refused["detail"]
        assert [(await client.get("/v1/sites", headers=default)).status_code for _ in range(5)] == [200] * 5
        r = await client.get("/v1/sites", headers=default)
        assert (
            "5 requests per minute" in assert_problem(r, 429)["detail"] and int(r.headers["Retry-After"]) >= 1
        )
