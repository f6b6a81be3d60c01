"""A web caller (the click-to-call widget's protocol) reaches an agent: a widget token from the tenant's
public key, `call` on the websocket with an aiortc "browser" (the SDK's AgentLeg, playing a tone), the
coordinator answering it as a contact of the key's queue, and the SDK's headless agent taking it. Audio both
ways; the queue the token names is the only one it can reach; a revoked key starts no call."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from switchboard import AgentSession
from switchboard._agent_audio import AgentLeg
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer, Recorded

from tests.e2e.first_call.conftest import Stack, make_tenant, next_of, tone_power, tone_wav, wait_contact

CALLER_HZ = 600.0
AGENT_HZ = 1000.0


async def recv(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] in (kind, "error"):
            return message  # type: ignore[no-any-return]


async def test_web_caller_reaches_an_agent_and_they_talk(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    with t.client() as client:
        key = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id]})
        assert key.status_code == 201, key.text
        public = key.json()["public_key"]
    async with httpx.AsyncClient(base_url=stack.api) as http:
        r = await http.post("/v1/widget/token", json={"key": public, "queue": "Support"})
        assert r.status_code in (200, 201), r.text
        token = r.json()["token"]
    ws = await websockets.connect(stack.api.replace("http://", "ws://") + f"/v1/ws?token={token}")
    browser = AgentLeg(
        "web",
        [],
        play=tone_wav(tmp_path / "caller.wav", CALLER_HZ),
        play_loop=True,
        record=str(tmp_path / "web-{contact_id}.wav"),
    )
    try:
        ready = await recv(ws, "ready")
        assert ready["caller"].startswith("widget:") and ready["queue_id"] == t.queue_id
        # A web caller cannot act as an agent.
        await ws.send(json.dumps({"v": 1, "type": "login", "ref": "x"}))
        refused = await recv(ws, "ack")
        assert refused["code"] == "unknown_type" and "call" in refused["reason"]
        async with AgentSession(
            stack.api,
            t.token("agent0@example.com"),
            auto_answer=True,
            play=tone_wav(tmp_path / "agent.wav", AGENT_HZ),
            play_loop=True,
            record=tmp_path / "agent-{contact_id}.wav",
        ) as agent:
            await agent.login(state="available")
            await ws.send(json.dumps({"v": 1, "type": "call", "sdp": await browser.create_offer()}))
            answer = await recv(ws, "answer")
            assert answer["type"] == "answer", answer
            await browser.accept_answer(answer["leg_id"], answer["sdp"])
            assert await browser.wait_connected()
            browser.start()
            offer = await next_of(agent, ContactOffer, timeout=20)
            assert offer.contact_id == answer["leg_id"] and offer.context.caller.name == "Web caller"
            await next_of(agent, ContactConnected)
            assert (await recv(ws, "answered"))["leg_id"] == answer[
                "leg_id"
            ]  # the page stops showing a place
            await asyncio.sleep(2.5)
            assert browser.recorder is not None
            heard = np.frombuffer(
                await asyncio.to_thread(Path(browser.recorder.path).read_bytes), dtype=np.int16
            )
            assert tone_power(heard[-8000:], AGENT_HZ, rate=browser.rate) > 0.3
            await ws.send(json.dumps({"v": 1, "type": "hangup", "ref": "h"}))
            hung = await recv(ws, "ack")
            assert (hung["type"], hung["ref"]) == ("ack", "h"), hung
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "caller"
            recorded = await next_of(agent, Recorded)
            with wave.open(recorded.path, "rb") as w:
                samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
                rate = w.getframerate()
            assert tone_power(samples[-rate:], CALLER_HZ, rate=rate) > 0.3
        record = await wait_contact(t, offer.contact_id, "ended")
        assert record["caller_name"] == "Web caller" and record["queue_id"] == t.queue_id
    finally:
        await browser.close()
        await ws.close()


async def test_revoked_widget_key_starts_no_call(first_call_stack: Stack) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    with t.client() as client:
        key = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id]}).json()
    async with httpx.AsyncClient(base_url=stack.api) as http:
        token = (
            await http.post("/v1/widget/token", json={"key": key["public_key"], "queue": "Support"})
        ).json()["token"]
    with t.client() as client:
        assert client.delete(f"/v1/widget-keys/{key['id']}").status_code in (200, 204)
    ws = await websockets.connect(stack.api.replace("http://", "ws://") + f"/v1/ws?token={token}")
    try:
        refused = await recv(ws, "ready")
        assert (
            refused["type"] == "error"
            and refused["code"] == "token_invalid"
            and "revoked" in refused["reason"]
        )
    finally:
        await ws.close()


async def test_closing_the_page_ends_the_web_call(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    with t.client() as client:
        public = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id]}).json()["public_key"]
    async with httpx.AsyncClient(base_url=stack.api) as http:
        token = (await http.post("/v1/widget/token", json={"key": public, "queue": "Support"})).json()[
            "token"
        ]
    ws = await websockets.connect(stack.api.replace("http://", "ws://") + f"/v1/ws?token={token}")
    browser = AgentLeg("web", [], play=tone_wav(tmp_path / "caller.wav", CALLER_HZ), play_loop=True)
    try:
        await recv(ws, "ready")
        async with AgentSession(stack.api, t.token("agent0@example.com"), auto_answer=True) as agent:
            await agent.login(state="available")
            await ws.send(json.dumps({"v": 1, "type": "call", "sdp": await browser.create_offer()}))
            answer = await recv(ws, "answer")
            await browser.accept_answer(answer["leg_id"], answer["sdp"])
            assert await browser.wait_connected()
            await next_of(agent, ContactConnected, timeout=20)
            await ws.close()  # the tab is closed; the peer connection is left behind
            ended = await next_of(agent, ContactEnded)
            assert ended.by == "caller" and ended.contact_id == answer["leg_id"]
    finally:
        await browser.close()
