"""`python -m services.api` as a real process (the shared `api_server` fixture): it serves over TCP."""

from __future__ import annotations

import httpx


async def test_api_server_process_serves_signup_and_me(api_server: str) -> None:
    assert api_server.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as c:
        r = await c.post("/v1/signup", json={"company": "Proc Co", "email": "proc@x.example"})
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]["key"]
        me = await c.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["tenant"]["name"] == "Proc Co"
        health = await c.get("/healthz")
        assert health.status_code in (200, 503) and health.json()["postgres"]["status"] == "ok"
        assert (await c.get("/schema/openapi.json")).status_code == 200
