"""The agent protocol's message handling on the real API process (docs/agent-protocol.md): every command is
answered by one ack or error carrying the client's `ref`, bad messages never end the session, and desk
commands are answered by whoever serves `sb.<tenant>.cmd.<service>.*` (here the test, standing in for
routing and the coordinator, so that what the API sends is checked exactly)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import nats
import websockets

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed

_n = iter(range(1_000_000))


async def agent_session(api_server: str) -> tuple[str, str, Any]:
    tag = f"{time.time_ns()}-{next(_n)}"
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        r = await http.post("/v1/signup", json={"company": f"Proto {tag}", "email": f"p{tag}@example.com"})
        h = {"Authorization": f"Bearer {r.json()['api_key']['key']}"}
        tenant = r.json()["tenant"]["id"]
        agent = (
            await http.post("/v1/agents", json={"name": "P", "email": f"p{tag}@x.example"}, headers=h)
        ).json()
        token = (await http.post(f"/v1/agents/{agent['id']}/token", headers=h)).json()["token"]
    ws = await websockets.connect(api_server.replace("http://", "ws://") + f"/v1/ws?token={token}")
    ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ready["type"] == "ready" and ready["ice_servers"] == []
    return tenant, agent["id"], ws


async def ask(ws: Any, message: dict[str, Any], *, refless: bool = False) -> dict[str, Any]:
    """The reply to `message` (the one carrying its ref, or none if `refless`); what came in between is
    named if no reply does."""
    await ws.send(json.dumps({"v": 1, **message}))
    others: list[dict[str, Any]] = []
    while True:
        try:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except TimeoutError:
            raise AssertionError(f"no reply to {message} within 10 s; got meanwhile {others}") from None
        if reply["type"] in ("ack", "error", "pong") and reply.get("ref") == (
            None if refless else message.get("ref")
        ):
            return reply  # type: ignore[no-any-return]
        others.append(reply)


async def test_bad_messages_get_errors_with_their_ref_and_the_session_goes_on(api_server: str) -> None:
    _, _, ws = await agent_session(api_server)
    try:
        cases = [
            ({"type": "hold", "ref": "r1", "contact_id": "nope", "on": True}, "bad_message"),
            ({"type": "dtmf", "ref": "r2", "contact_id": str(uuid.uuid4()), "digits": "12x"}, "bad_message"),
            (
                {"type": "wrap_up", "ref": "r3", "contact_id": str(uuid.uuid4()), "disposition": ""},
                "bad_message",
            ),
            ({"type": "transfer", "ref": "r4", "contact_id": str(uuid.uuid4())}, "bad_message"),
            ({"type": "fly", "ref": "r5"}, "unknown_type"),
            ({"type": "login", "ref": "r6", "state": "dancing"}, "bad_message"),
            (
                {
                    "type": "accept",
                    "ref": "r7",
                    "contact_id": str(uuid.uuid4()),
                    "offer_id": "someone-else#0",
                },
                "not_found",
            ),
        ]
        for message, code in cases:
            reply = await ask(ws, message)
            assert (reply["type"], reply["code"], reply.get("ref")) == ("error", code, message["ref"]), reply
        too_long_ref = await ask(ws, {"type": "ping", "ref": "x" * 65}, refless=True)
        assert too_long_ref["code"] == "bad_message" and "ref" not in too_long_ref
        assert (await ask(ws, {"type": "ping", "ref": "p"})) == {"v": 1, "type": "pong", "ref": "p"}
    finally:
        await ws.close()


async def test_desk_commands_reach_routing_and_the_coordinator_with_the_tokens_agent(
    api_server: str, infra: Any
) -> None:
    tenant, agent, ws = await agent_session(api_server)
    nc = await nats.connect(infra.nats_url)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def serve(msg: Any) -> None:
        body = json.loads(msg.data)
        seen.append((msg.subject.rsplit(".", 1)[-1], body))
        if body.get("contact_id") == "00000000-0000-0000-0000-000000000000":
            await msg.respond(
                encode(Reply(ok=False, code="not_found", error="no such contact for this agent"))
            )
        else:
            await msg.respond(encode(Reply(ok=True, data={"echo": msg.subject.rsplit(".", 1)[-1]})))

    # Routing's commands are mapped onto partitions by the server; the coordinator's are plain.
    await nc.subscribe(f"sb.sys.routing.cmd.*.{tenant}.*", cb=serve)
    await nc.subscribe(f"sb.{tenant}.cmd.contacts.*", cb=serve)
    await flushed(nc)
    contact = str(uuid.uuid4())
    try:
        reply = await ask(ws, {"type": "login", "ref": "a", "state": "available"})
        # Failed once under load with a bare `error`: what the stand-in saw tells a command that never
        # reached it (no responders: the subscription) from a reply lost on its way back (a timeout).
        assert reply["type"] == "ack", (reply, seen)
        login = decode(json.dumps(seen[-1][1]).encode(), ev.RoutingAgentLogin)
        assert str(login.agent_id) == agent and login.away_reason is None
        await ask(ws, {"type": "login", "ref": "b"})
        assert seen[-1][1]["away_reason"] == "other"  # signed in away, with a reason routing knows
        reject = await ask(
            ws, {"type": "reject", "ref": "c", "contact_id": contact, "offer_id": f"{contact}#0"}
        )
        # Accept and reject go to the coordinator like every desk command (it forwards them to routing).
        assert reject == {"v": 1, "type": "ack", "ref": "c", "echo": "reject"}
        assert seen[-1][1]["agent_id"] == agent and seen[-1][1]["offer_id"] == f"{contact}#0"
        accept = await ask(
            ws, {"type": "accept", "ref": "c2", "contact_id": contact, "offer_id": f"{contact}#0"}
        )
        assert accept == {"v": 1, "type": "ack", "ref": "c2", "echo": "accept"}
        hold = await ask(ws, {"type": "hold", "ref": "d", "contact_id": contact, "on": True})
        assert hold == {"v": 1, "type": "ack", "ref": "d", "echo": "hold"}
        assert seen[-1][1]["agent_id"] == agent and seen[-1][1]["contact_id"] == contact
        await ask(
            ws, {"type": "transfer", "ref": "e", "contact_id": contact, "queue": "Billing", "note": "vip"}
        )
        assert (seen[-1][0], seen[-1][1]["queue"], seen[-1][1]["note"]) == ("transfer", "Billing", "vip")
        refused = await ask(
            ws, {"type": "hangup", "ref": "f", "contact_id": "00000000-0000-0000-0000-000000000000"}
        )
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "not_found", "f")
    finally:
        await ws.close()
        await nc.close()
