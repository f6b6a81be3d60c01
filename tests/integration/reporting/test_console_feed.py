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
from typing import Any

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


async def test_sites_scope_queues_and_the_agent_grid(api_server: str, bus: Bus) -> None:
    """A supervisor of site North sees North's queue, the agents at North and those serving that queue
    (a home worker with its skill), in REST and on the feed; another agent is 404 to the floor controls,
    and another queue's contact cannot be pulled or put first."""
    key, tenant, _ = _tenant(api_server)
    admin = {"Authorization": f"Bearer {key}"}
    suffix = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=api_server, timeout=10, headers=admin) as http:

        async def made(path: str, body: dict[str, object]) -> str:
            r = await http.post(path, json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        north = await made("/v1/sites", {"name": "North", "timezone": "UTC", "kind": "office"})
        south = await made("/v1/sites", {"name": "South", "timezone": "UTC", "kind": "office"})
        north_q = await made("/v1/queues", {"name": "Billing", "skills": {"billing": 1}, "site_id": north})
        south_q = await made("/v1/queues", {"name": "Returns", "skills": {"returns": 1}, "site_id": south})

        async def agent(name: str, site: str | None, skills: dict[str, int]) -> str:
            body = {"name": name, "email": f"{name}-{suffix}@example.com", "skills": skills, "site_id": site}
            return await made("/v1/agents", body)

        at_north = await agent("ann", north, {"returns": 1})
        serving = await agent("bob", None, {"billing": 2})
        elsewhere = await agent("cat", south, {"returns": 1})
        invite = (
            await http.post("/v1/invites", json={"email": f"lead-{suffix}@example.com", "role": "supervisor"})
        ).json()
        bad = await http.put(f"/v1/supervisors/{invite['account_id']}/scope", json={"site_ids": [south_q]})
        assert bad.status_code == 422 and "site" in bad.text, bad.text
        # Another organisation's site is no site of this tenant's (row-level security): refused the same.
        other_key, _, other_queue = _tenant(api_server)
        theirs = await http.post(
            "/v1/sites",
            json={"name": "Theirs", "timezone": "UTC", "kind": "office"},
            headers={"Authorization": f"Bearer {other_key}"},
        )
        assert theirs.status_code == 201, theirs.text
        for body in ({"site_ids": [theirs.json()["id"]]}, {"queue_ids": [other_queue]}):
            r = await http.put(f"/v1/supervisors/{invite['account_id']}/scope", json=body)
            assert r.status_code == 422, r.text
    with switchboard.Client(api_key=key, base_url=api_server) as client:
        scope = client.set_supervisor_scope(invite["account_id"], None, [north])
    assert scope.site_ids == [north] and scope.queue_ids is None
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        signed = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        me = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        queues = (await http.get("/v1/realtime/queues", headers=me)).json()["queues"]
        assert [q["queue_id"] for q in queues] == [north_q]
        agents = (await http.get("/v1/realtime/agents", headers=me)).json()["agents"]
        assert sorted(a["agent_id"] for a in agents) == sorted([at_north, serving])
        everyone = (await http.get("/v1/realtime/agents", headers=admin)).json()["agents"]
        assert elsewhere in {a["agent_id"] for a in everyone}
        # The floor controls do not reach an agent outside the scope (as if it did not exist).
        r = await http.post(f"/v1/agents/{elsewhere}/state", json={"state": "away"}, headers=me)
        assert r.status_code == 404, r.text
        r = await http.post(f"/v1/agents/{elsewhere}/signout", headers=me)
        assert r.status_code == 404, r.text
        r = await http.post(f"/v1/agents/{serving}/state", json={"state": "away"}, headers=me)
        assert r.status_code in (409, 503), r.text  # in scope: routing (not running here) decides
        async with ws_connect(api_server.replace("http://", "ws://") + "/v1/realtime/feed") as ws:
            await ws.send(json.dumps({"type": "auth", "token": signed.json()["access_token"]}))
            snapshot = json.loads(await ws.recv(decode=True))
            assert {a["agent_id"] for a in snapshot["agents"]["agents"]} == {at_north, serving}
            for agent_id in (elsewhere, serving):
                await bus.publish(
                    ev.AgentStateChanged(tenant_id=tenant, agent_id=agent_id, old="away", new="available")
                )
            message = json.loads(await ws.recv(decode=True))
            assert message["agent_id"] == serving, message  # the other site's agent was never delivered


async def test_alert_policy_and_queue_targets(api_server: str, pool: asyncpg.Pool) -> None:
    """The tenant's thresholds: the default, a queue's own, in force in the realtime queues with the
    alerts crossed now; the queue's own SL target; admins write, supervisors read, bad values refused."""
    key, tenant, queue = _tenant(api_server)
    admin = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_server, timeout=10, headers=admin) as http:
        assert (
            await http.patch(f"/v1/queues/{queue}", json={"sl_percent": 90, "sl_seconds": 15})
        ).status_code == 200
        rows = (await http.get("/v1/realtime/queues")).json()["queues"]
        assert rows[0]["sl_target"] == 0.9
        assert rows[0]["thresholds"] == {
            "longest_wait_s": 15.0, "service_level_below": 0.9, "waiting_over": None, "away_over": None
        }  # fmt: skip
        assert rows[0]["alerts"] == []
        for bad in ({"away_over_percent": 0}, {"longest_wait_seconds": -5}, {"colour": "red"}):
            r = await http.put("/v1/alert-policy", json=bad)
            assert r.status_code == 400 or r.status_code == 422, (bad, r.text)
        r = await http.put("/v1/alert-policy", json={"waiting_over": 1, "away_over_percent": 40})
        assert r.status_code == 200, r.text
        # Routing's live figures as reporting keeps them: three waiting, the longest 40 s; one of the two
        # signed-in agents away.
        async with db.tenant_tx(pool, tenant) as conn:
            await conn.execute(
                """INSERT INTO rpt_queue_now (tenant_id, queue_id, at, waiting, longest_wait_s, ready, agents)
                   VALUES ($1, $2, now(), 3, 40.0, 1, '{"available": 1, "away": 1}')""",
                tenant, queue,
            )  # fmt: skip
        rows = (await http.get("/v1/realtime/queues")).json()["queues"]
        kinds = {a["kind"]: a for a in rows[0]["alerts"]}
        assert set(kinds) == {"longest_wait", "waiting", "away"}, rows[0]
        assert kinds["away"]["value"] == 0.5 and kinds["away"]["threshold"] == 0.4
        assert kinds["longest_wait"]["threshold"] == 15.0  # unset: the queue's own SL threshold
        # The queue's own policy replaces the default: nothing but a 60 s wait is watched there.
        with_cli = await asyncio.to_thread(
            subprocess.run,
            [str(SWITCHBOARD), "alerts", "set", "--queue", queue, "--longest-wait", "60", "--json"],
            env={**os.environ, "SB_API_URL": api_server, "SB_API_KEY": key},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert with_cli.returncode == 0, with_cli.stderr
        rows = (await http.get("/v1/realtime/queues")).json()["queues"]
        assert rows[0]["alerts"] == [] and rows[0]["thresholds"]["longest_wait_s"] == 60.0
        invite = (
            await http.post(
                "/v1/invites",
                json={"email": f"lead-{uuid.uuid4().hex[:6]}@example.com", "role": "supervisor"},
            )
        ).json()
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        signed = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        me = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        policy = (await http.get("/v1/alert-policy", headers=me)).json()
        assert policy["default"]["waiting_over"] == 1
        assert [(q["queue_id"], q["policy"]["longest_wait_seconds"]) for q in policy["queues"]] == [
            (queue, 60)
        ]
        r = await http.put("/v1/alert-policy", json={"waiting_over": 9}, headers=me)
        assert r.status_code == 403, r.text
    with switchboard.Client(api_key=key, base_url=api_server) as client:
        client.clear_alert_policy(queue)
        assert client.alert_policy().queues == []


async def test_agent_quality_today_from_the_state_facts(api_server: str, pool: asyncpg.Pool) -> None:
    """Three offers today: one answered, one declined, one still ringing (the first made in the same routing
    step as the agent's return, so with the same timestamp); 60 s on a call and 30 s in wrap-up:
    answered 1 of 2 decided, 1 missed, occupancy 90 s of the time working (from the first change to now)."""
    from services.reporting.store import FactStore

    key, tenant, _ = _tenant(api_server)
    async with httpx.AsyncClient(
        base_url=api_server, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        r = await http.post(
            "/v1/agents", json={"name": "Ann", "email": f"ann-{uuid.uuid4().hex[:6]}@example.com"}
        )
        agent = r.json()["id"]
        start = (
            time.time() - 600
        )  # minutes ago: today, unless this runs in the first ten minutes past midnight
        steps = [  # (seconds after start, new state)
            (0, "available"), (0, "reserved"), (15, "on_contact"), (75, "wrap_up"), (105, "available"),
            (120, "reserved"), (130, "available"), (180, "reserved"),
        ]  # fmt: skip
        events, old = [], "logged_out"
        for at, new in steps:
            events.append(
                ev.AgentStateChanged(tenant_id=tenant, ts=start + at, agent_id=agent, old=old, new=new)
            )
            old = new
        await FactStore(pool).write(tenant, events)
        rows = (await http.get("/v1/realtime/agents")).json()["agents"]
    quality = next(a["quality"] for a in rows if a["agent_id"] == agent)
    assert (quality["offers"], quality["missed"], quality["answer_rate"]) == (3, 1, 0.5)
    # Working from 0 s to now (ringing since 180 s), busy 90 s of it.
    assert quality["occupancy"] == pytest.approx(90 / (time.time() - start), rel=0.05)


async def test_alerts_are_published_once_when_crossed_and_when_cleared(
    api_server: str, bus: Bus, pool: asyncpg.Pool
) -> None:
    """The reporting service's alert watch: after facts of the tenant are written it publishes
    queue.alert_raised once per threshold crossed (a later batch does not repeat it), raises a longest-wait
    alert when the wait crosses its threshold with no event in between, and queue.alert_cleared when the
    line is empty again; the types are webhook events a tenant can subscribe to."""
    from services.reporting import webhooks as wh
    from services.reporting.alert_watch import AlertWatch
    from services.reporting.store import FactStore

    key, tenant, queue = _tenant(api_server)
    with switchboard.Client(api_key=key, base_url=api_server) as client:
        client.set_alert_policy(switchboard.AlertPolicy(longest_wait_seconds=2, waiting_over=1))
    seen: list[ev.QueueAlertRaised | ev.QueueAlertCleared] = []

    async def keep(event: Any) -> None:
        seen.append(event)

    listener = await bus.listen([ev.QueueAlertRaised, ev.QueueAlertCleared], keep, tenant_id=tenant)
    watch = AlertWatch(bus, pool, debounce_s=0.05)
    store = FactStore(pool)

    async def stats(waiting: int, longest: float) -> None:
        await store.write(
            tenant, [ev.QueueStats(tenant_id=tenant, queue_id=queue, waiting=waiting, longest_wait_s=longest)]
        )
        watch.touched({tenant})

    async def until_seen(count: int, seconds: float = 5.0) -> None:
        for _ in range(int(seconds / 0.05)):
            if len(seen) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} alert events expected, got {seen}")

    try:
        await stats(2, 0.5)  # two waiting (over 1); the longest at 0.5 s of 2 s
        await until_seen(1)
        assert [(type(e).__name__, e.kind) for e in seen] == [("QueueAlertRaised", "waiting")]
        await stats(3, 0.6)
        await asyncio.sleep(0.3)
        assert len(seen) == 1  # still crossed: not announced again
        started = time.monotonic()
        await until_seen(2)  # nothing more written: the wait crosses 2 s on its own
        assert seen[1].kind == "longest_wait" and isinstance(seen[1], ev.QueueAlertRaised)
        assert 1.0 < time.monotonic() - started < 2.5, time.monotonic() - started
        assert "waited" in seen[1].message and seen[1].threshold == 2.0
        await stats(0, 0.0)
        await until_seen(4)
        assert {(type(e).__name__, e.kind) for e in seen[2:]} == {
            ("QueueAlertCleared", "waiting"), ("QueueAlertCleared", "longest_wait")
        }  # fmt: skip
    finally:
        await watch.stop()
        await listener.stop()
    assert {"queue.alert_raised", "queue.alert_cleared"} <= set(wh.EVENTS)
    body = json.loads(wh.body_of(seen[0]))
    assert body["type"] == "queue.alert_raised" and body["data"]["kind"] == "waiting"
