"""Agents' websockets end with what they were issued through (the real API process): a revoked API key's
agent tokens, a forced sign-out, a removed agent; and a browser session's socket lasts as long as the
session, not as long as its short access token."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

_n = iter(range(1_000_000))
PASSWORD = "correct horse battery"
ENDS_WITHIN_S = 3.0


async def _tenant(http: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, Any]]:
    tag = f"{time.time_ns()}-{next(_n)}"
    r = await http.post("/v1/signup", json={"company": f"Shift {tag}", "email": f"s{tag}@example.com"})
    h = {"Authorization": f"Bearer {r.json()['api_key']['key']}"}
    agent = (
        await http.post("/v1/agents", json={"name": "S", "email": f"s{tag}@x.example"}, headers=h)
    ).json()
    return h, agent


async def _connect(api_server: str, token: str) -> tuple[Any, dict[str, Any]]:
    ws = await websockets.connect(api_server.replace("http://", "ws://") + f"/v1/ws?token={token}")
    ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ready["type"] == "ready", ready
    return ws, ready


async def _ended(ws: Any) -> tuple[float, dict[str, Any]]:
    """(seconds until the server closed the socket, the last error it sent)."""
    start, last = time.monotonic(), {}
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), ENDS_WITHIN_S + 2))
            if message["type"] == "error":
                last = message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    return time.monotonic() - start, last


async def test_revoking_the_issuing_key_ends_its_agent_tokens_sockets(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        h, agent = await _tenant(http)
        second = (await http.post("/v1/keys", json={"role": "admin"}, headers=h)).json()
        h2 = {"Authorization": f"Bearer {second['key']}"}
        token = (await http.post(f"/v1/agents/{agent['id']}/token", headers=h2)).json()["token"]
        ws, _ = await _connect(api_server, token)
        assert (await http.delete(f"/v1/keys/{second['id']}", headers=h)).status_code == 204
        took, error = await _ended(ws)
        assert took < ENDS_WITHIN_S and error["code"] == "session_ended" and error["cause"] == "key_revoked"
        # And the token cannot open a new socket.
        ws = await websockets.connect(api_server.replace("http://", "ws://") + f"/v1/ws?token={token}")
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert refused["code"] == "token_invalid" and "revoked" in refused["reason"]
        await ws.close()


async def test_session_socket_lasts_the_session_and_ends_on_forced_signout(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        h, agent = await _tenant(http)
        invite = (await http.post("/v1/invites", json={"email": agent["email"]}, headers=h)).json()
        signed = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        assert signed.status_code == 200, signed.text
        body = signed.json()
        ws, ready = await _connect(api_server, body["access_token"])
        # The socket's lifetime is the session's (a shift), not the access token's minutes.
        assert ready["expires_at"] == pytest.approx(body["session_expires_at"], abs=1)
        assert ready["expires_at"] - body["expires_at"] > 11 * 3600
        forced = await http.post(f"/v1/agents/{agent['id']}/signout", headers=h)
        assert forced.status_code == 200, forced.text
        took, error = await _ended(ws)
        assert (
            took < ENDS_WITHIN_S
            and error["cause"] == "forced_signout"
            and "an admin signed you out" in error["reason"]
        )
        ws = await websockets.connect(
            api_server.replace("http://", "ws://") + f"/v1/ws?token={body['access_token']}"
        )
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert refused["code"] == "token_invalid" and "signed out" in refused["reason"]
        await ws.close()


async def test_removing_the_agent_ends_its_sockets(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        h, agent = await _tenant(http)
        token = (await http.post(f"/v1/agents/{agent['id']}/token", headers=h)).json()["token"]
        ws, _ = await _connect(api_server, token)
        assert (await http.delete(f"/v1/agents/{agent['id']}", headers=h)).status_code == 204
        took, error = await _ended(ws)
        assert took < ENDS_WITHIN_S and error["cause"] == "agent_removed"
