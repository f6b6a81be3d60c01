"""The realtime feed for a supervisor's browser: authenticated by a first message carrying the console
token (browsers cannot set headers on websockets; the token never goes in the URL), scoped to the
token's tenant; a token in the URL is ignored and a signed-out session's token is refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import switchboard
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from services.contacts.records import ContactRecord, save_contact
from services.kernel import db
from services.kernel import events as ev
from services.kernel.bus import Bus

SWITCHBOARD = Path(sys.executable).with_name("switchboard")
PASSWORD = "a long supervisor password 42"


def _tenant(api: str) -> tuple[str, uuid.UUID, str]:
    with switchboard.Client(base_url=api) as anonymous:
        result = anonymous.signup(f"Feed {uuid.uuid4().hex[:6]}", f"ops-{uuid.uuid4().hex[:6]}@example.com")
    with switchboard.Client(api_key=result.api_key.key, base_url=api) as client:
        queue = client.queues.create(f"support-{uuid.uuid4().hex[:4]}")
    return result.api_key.key, uuid.UUID(result.tenant.id), queue.id


async def _console(http: httpx.AsyncClient, key: str) -> str:
    email = f"lead-{uuid.uuid4().hex[:6]}@example.com"
    invite = await http.post(
        "/v1/invites", json={"email": email, "role": "supervisor"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert invite.status_code == 201, invite.text
    signed = await http.post("/v1/auth/invite", json={"token": invite.json()["token"], "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    return str(signed.json()["access_token"])


async def _refused(url: str, token: str) -> None:
    async with ws_connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        error = json.loads(await ws.recv(decode=True))
        assert error["type"] == "error" and error["code"] == "unauthorized", error
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_console_token_feed_is_the_tenants_only(api_server: str, bus: Bus) -> None:
    key_a, tenant_a, queue_a = _tenant(api_server)
    _, tenant_b, queue_b = _tenant(api_server)
    url = api_server.replace("http://", "ws://") + "/v1/realtime/feed"
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        token_a = await _console(http, key_a)
        async with ws_connect(url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token_a}))
            snapshot = json.loads(await ws.recv(decode=True))
            assert snapshot["type"] == "snapshot"
            assert [q["queue_id"] for q in snapshot["queues"]["queues"]] == [queue_a]
            # B's event first: had it leaked, it would arrive before A's.
            await bus.publish(
                ev.QueueStats(tenant_id=tenant_b, queue_id=queue_b, waiting=9, longest_wait_s=1.0)
            )
            await bus.publish(
                ev.QueueStats(tenant_id=tenant_a, queue_id=queue_a, waiting=3, longest_wait_s=2.0)
            )
            message = json.loads(await ws.recv(decode=True))
            assert message["queue_id"] == queue_a and message["waiting"] == 3, message
        # An agent's token, garbage, and A's token once A signed out: refused.
        await _refused(url, "not.a.token")
        signed_out = await http.post("/v1/auth/signout")
        assert signed_out.status_code == 200 and signed_out.json()["sessions_ended"] >= 1
        await _refused(url, token_a)
        # A token in the URL is not read: the socket still waits for its auth message.
        async with ws_connect(f"{url}?token={token_a}") as ws:
            await ws.send(json.dumps({"type": "hello"}))
            assert json.loads(await ws.recv(decode=True))["type"] == "error"


async def test_another_sites_page_cannot_drive_the_session_cookie(api_server: str) -> None:
    key, _, _ = _tenant(api_server)
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        await _console(http, key)  # the refresh cookie is in this client's jar
        host = api_server.split("://", 1)[1]
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            for path in ("/v1/auth/refresh", "/v1/auth/signout"):
                r = await http.post(path, headers=headers)
                assert r.status_code == 403, (path, headers, r.text)
        # The page's own origin (and a client that sends none, like the SDK) still works.
        r = await http.post(
            "/v1/auth/refresh", headers={"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        )
        assert r.status_code == 200, r.text
        assert (await http.post("/v1/auth/refresh")).status_code == 200
        assert (await http.post("/v1/auth/signout")).json()["sessions_ended"] == 1


async def test_a_supervisor_assigned_to_a_queue_sees_and_acts_on_that_queue_only(
    api_server: str, bus: Bus, pool: asyncpg.Pool
) -> None:
    key, tenant, mine = _tenant(api_server)
    with switchboard.Client(api_key=key, base_url=api_server) as client:
        other = client.queues.create(f"sales-{uuid.uuid4().hex[:4]}").id
        invite = client.invite_supervisor(f"lead-{uuid.uuid4().hex[:6]}@example.com")
    contacts = {}
    async with db.tenant_tx(pool, tenant) as conn:
        for queue in (mine, other):
            contacts[queue] = uuid.uuid4()
            record = ContactRecord(
                id=contacts[queue],
                tenant_id=tenant,
                state="queued",
                arrived_at=time.time(),
                queue_id=uuid.UUID(queue),
            )
            await save_contact(conn, record)
    admin = {"Authorization": f"Bearer {key}"}
    url = api_server.replace("http://", "ws://") + "/v1/realtime/feed"
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        path = f"/v1/supervisors/{invite.account_id}/queues"
        bad = await http.put(path, json={"queue_ids": [str(uuid.uuid4())]}, headers=admin)
        assert bad.status_code == 422, bad.text
        with switchboard.Client(api_key=key, base_url=api_server) as client:
            scope = client.set_supervisor_queues(invite.account_id, [mine])
        assert scope.queue_ids == [mine]
        signed = await http.post("/v1/auth/invite", json={"token": invite.token, "password": PASSWORD})
        token = signed.json()["access_token"]
        me = {"Authorization": f"Bearer {token}"}
        seen = (await http.get("/v1/realtime/queues", headers=me)).json()["queues"]
        assert [q["queue_id"] for q in seen] == [mine]
        everything = (await http.get("/v1/realtime/queues", headers=admin)).json()["queues"]
        assert sorted(q["queue_id"] for q in everything) == sorted([mine, other])
        # Another queue's contact is not there for this supervisor: not monitored, not moved, not moved to.
        leg = {"mode": "listen", "leg_id": str(uuid.uuid4())}
        r = await http.post(f"/v1/contacts/{contacts[other]}/monitor", json=leg, headers=me)
        assert r.status_code == 404, r.text
        r = await http.post(f"/v1/contacts/{contacts[other]}/queue", json={"queue": mine}, headers=me)
        assert r.status_code == 404, r.text
        r = await http.post(f"/v1/contacts/{contacts[mine]}/queue", json={"queue": other}, headers=me)
        assert r.status_code == 404 and "queue" in r.json()["detail"], r.text
        # Its own queue's contact gets past the scope (routing, not running here, is the next step).
        r = await http.post(f"/v1/contacts/{contacts[mine]}/queue", json={"queue": mine}, headers=me)
        assert r.status_code in (409, 503), r.text
        async with ws_connect(url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            snapshot = json.loads(await ws.recv(decode=True))
            assert [q["queue_id"] for q in snapshot["queues"]["queues"]] == [mine]
            await bus.publish(ev.QueueStats(tenant_id=tenant, queue_id=other, waiting=5, longest_wait_s=1.0))
            await bus.publish(ev.QueueStats(tenant_id=tenant, queue_id=mine, waiting=2, longest_wait_s=1.0))
            message = json.loads(await ws.recv(decode=True))
            assert message["queue_id"] == mine and message["waiting"] == 2, message
        # Unscoped again, by the CLI (--all): the whole tenant.
        env = {**os.environ, "SB_API_URL": api_server, "SB_API_KEY": key}
        env.pop("SB_PROFILE", None)
        cli = await asyncio.to_thread(
            subprocess.run,
            [str(SWITCHBOARD), "supervisors", "queues", invite.account_id, "--all", "--json"],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert cli.returncode == 0 and json.loads(cli.stdout)["queue_ids"] is None, cli.stderr
        token = (await http.post("/v1/auth/refresh")).json()["access_token"]
        seen = (await http.get("/v1/realtime/queues", headers={"Authorization": f"Bearer {token}"})).json()
        assert len(seen["queues"]) == 2
