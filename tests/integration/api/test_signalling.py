"""Agent tokens and the signalling websocket against the real API process, real PostgreSQL and NATS. The media
worker's side of `webrtc_offer` is played by the test over NATS with a real aiortc leg (WebRtcLeg), so an
aiortc "browser" negotiates DTLS-SRTP end to end through the websocket."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import httpx
import jwt
import nats
import pytest
import websockets

from services.api.tokens import AGENT_AUDIENCE, ISSUER, issue_agent_token
from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.events import MediaWebRtcIce, MediaWebRtcOffer, WebRtcSignal
from services.kernel.messages import Reply, decode, encode
from services.kernel.subjects import cmd_subject, evt_subject
from services.media.rtp.g711 import G711
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg

_n = iter(range(1_000_000))


async def signup(http: httpx.AsyncClient) -> dict[str, Any]:
    tag = f"{time.time_ns()}-{next(_n)}"
    r = await http.post("/v1/signup", json={"company": f"Co {tag}", "email": f"a{tag}@example.com"})
    assert r.status_code == 201, r.text
    body = r.json()
    key = body["api_key"]["key"]
    h = {"Authorization": f"Bearer {key}"}
    agent = await http.post("/v1/agents", json={"name": "Ann", "email": f"ann{tag}@x.example"}, headers=h)
    assert agent.status_code == 201, agent.text
    return {"tenant": body["tenant"]["id"], "headers": h, "agent": agent.json()["id"]}


@pytest.fixture
async def http(api_server: str) -> Any:
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as client:
        yield client


def ws_url(api_server: str, token: str | None = None) -> str:
    url = api_server.replace("http://", "ws://") + "/v1/ws"
    return url + (f"?token={token}" if token else "")


async def recv(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def issue(http: httpx.AsyncClient, t: dict[str, Any]) -> str:
    r = await http.post(f"/v1/agents/{t['agent']}/token", headers=t["headers"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 900
    return str(body["token"])


async def test_token_issue_rules(http: httpx.AsyncClient, infra: Any) -> None:
    a, b = await signup(http), await signup(http)
    token = await issue(http, a)
    claims = jwt.decode(token, infra.token_secret, algorithms=["HS256"], audience=AGENT_AUDIENCE)
    assert claims["sub"] == a["agent"] and claims["tid"] == a["tenant"] and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] <= 900 and claims["jti"]
    assert (await issue(http, a)) != token  # a fresh jti each time
    # Another tenant's agent, a missing agent, garbage ids: 404; no key: 401; a developer key: 403.
    assert (await http.post(f"/v1/agents/{b['agent']}/token", headers=a["headers"])).status_code == 404
    assert (await http.post(f"/v1/agents/{uuid.uuid4()}/token", headers=a["headers"])).status_code == 404
    assert (await http.post("/v1/agents/nope/token", headers=a["headers"])).status_code == 404
    assert (await http.post(f"/v1/agents/{a['agent']}/token")).status_code == 401
    dev = await http.post("/v1/keys", json={"role": "developer"}, headers=a["headers"])
    dev_h = {"Authorization": f"Bearer {dev.json()['key']}"}
    assert (await http.post(f"/v1/agents/{a['agent']}/token", headers=dev_h)).status_code == 403


async def test_websocket_authentication(http: httpx.AsyncClient, api_server: str, infra: Any) -> None:
    a, b = await signup(http), await signup(http)
    token = await issue(http, a)

    async with websockets.connect(ws_url(api_server, token)) as ws:
        ready = await recv(ws)
        assert (
            ready["type"] == "ready" and ready["agent_id"] == a["agent"] and ready["tenant_id"] == a["tenant"]
        )

    # Token in the first message instead of the URL.
    async with websockets.connect(ws_url(api_server)) as ws:
        await ws.send(json.dumps({"v": 1, "type": "auth", "token": token}))
        assert (await recv(ws))["type"] == "ready"

    secret = infra.token_secret
    now = time.time()
    expired, _ = issue_agent_token(secret, uuid.UUID(a["tenant"]), uuid.UUID(a["agent"]), now=now - 901)
    # Signed right, but naming tenant A while the agent is B's: the agent does not exist in that tenant.
    crossed, _ = issue_agent_token(secret, uuid.UUID(a["tenant"]), uuid.UUID(b["agent"]), now=now)
    forged, _ = issue_agent_token("x" * 43, uuid.UUID(a["tenant"]), uuid.UUID(a["agent"]), now=now)
    too_long = jwt.encode(
        {
            "iss": ISSUER,
            "aud": AGENT_AUDIENCE,
            "sub": a["agent"],
            "tid": a["tenant"],
            "jti": "j",
            "iat": int(now),
            "exp": int(now) + 3600,
        },
        secret,
        algorithm="HS256",
    )
    for bad, code in [
        (expired, "token_expired"),
        (crossed, "token_invalid"),
        (forged, "token_invalid"),
        (too_long, "token_invalid"),
        ("not.a.jwt", "token_invalid"),
    ]:
        async with websockets.connect(ws_url(api_server, bad)) as ws:
            error = await recv(ws)
            assert error["type"] == "error" and error["code"] == code, (bad, error)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with websockets.connect(ws_url(api_server)) as ws:
        await ws.send(json.dumps({"v": 1, "type": "offer", "sdp": "x"}))  # not authenticated yet
        assert (await recv(ws))["code"] == "token_invalid"


async def test_signalling_relays_to_media_and_bad_messages_do_not_hurt_others(
    http: httpx.AsyncClient, api_server: str, infra: Any
) -> None:
    a = await signup(http)
    tenant = uuid.UUID(a["tenant"])
    nc = await nats.connect(infra.nats_url)
    legs: dict[uuid.UUID, WebRtcLeg] = {}
    ice: list[MediaWebRtcIce] = []

    async def media_offer(msg: Any) -> None:  # stands in for the media worker holding the call
        command = decode(msg.data, MediaWebRtcOffer)
        assert command.tenant_id == tenant and command.agent_id == a["agent"]
        if "m=audio" not in command.sdp:
            await msg.respond(encode(Reply(ok=False, code="bad_sdp", error="the offer has no audio")))
            return
        leg = legs[command.leg_id] = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU)
        answer = await leg.accept_offer(command.sdp)
        await msg.respond(encode(Reply(ok=True, data={"sdp": answer})))

    async def media_ice(msg: Any) -> None:
        ice.append(decode(msg.data, MediaWebRtcIce))
        await msg.respond(encode(Reply(ok=True)))

    subs = [
        await nc.subscribe(cmd_subject(tenant, "media", "webrtc_offer"), cb=media_offer),
        await nc.subscribe(cmd_subject(tenant, "media", "webrtc_ice"), cb=media_ice),
    ]
    browser = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU)
    token = await issue(http, a)
    try:
        async with (
            websockets.connect(ws_url(api_server, token)) as good,
            websockets.connect(ws_url(api_server, token)) as noisy,
        ):
            assert (await recv(good))["type"] == "ready"
            assert (await recv(noisy))["type"] == "ready"
            # The noisy session sends everything wrong; each gets an error frame and the session lives on.
            for raw, code in [
                ("{", "bad_message"),
                ("[1, 2]", "bad_message"),
                (json.dumps({"v": 2, "type": "ping"}), "unsupported_version"),
                ('{"v": true, "type": "ping"}', "unsupported_version"),  # True == 1 in Python: not a version
                ('{"v": 1.0, "type": "ping"}', "unsupported_version"),
                ('{"v": "1", "type": "ping"}', "unsupported_version"),
                (json.dumps({"v": 1, "type": "dance"}), "unknown_type"),
                (json.dumps({"v": 1, "type": "offer"}), "bad_message"),
                (
                    json.dumps({"v": 1, "type": "ice", "leg_id": str(uuid.uuid4()), "candidate": ""}),
                    "unknown_leg",
                ),
                (json.dumps({"v": 1, "type": "auth", "token": token}), "already_authenticated"),
                (json.dumps({"v": 1, "type": "offer", "sdp": "v=0"}), "bad_sdp"),
                ("x" * 70_000, "too_large"),
            ]:
                await noisy.send(raw)
                reply = await recv(noisy)
                assert reply["type"] == "error" and reply["code"] == code, (raw[:40], reply)
                assert set(reply) == {"v", "type", "code", "reason"}
            await noisy.send(json.dumps({"v": 1, "type": "ping"}))
            assert (await recv(noisy))["type"] == "pong"

            # The good session negotiates a real WebRTC leg through the API and NATS.
            offer = await browser.create_offer()
            await good.send(json.dumps({"v": 1, "type": "offer", "sdp": offer}))
            answer = await recv(good)
            assert answer["type"] == "answer" and "a=fingerprint" in answer["sdp"]
            leg_id = uuid.UUID(answer["leg_id"])
            await browser.accept_answer(answer["sdp"])
            deadline = time.monotonic() + 10
            while browser.state is not LegState.CONNECTED or legs[leg_id].state is not LegState.CONNECTED:
                assert time.monotonic() < deadline, "the leg did not connect"
                await asyncio.sleep(0.05)
            legs[leg_id].assert_dtls_srtp()
            assert legs[leg_id].codec == "PCMU"

            await good.send(json.dumps({"v": 1, "type": "ice", "leg_id": str(leg_id), "candidate": ""}))
            await good.send(json.dumps({"v": 1, "type": "ping"}))
            assert (await recv(good))["type"] == "pong"
            assert [i.leg_id for i in ice] == [leg_id]

            # Server events reach the agent's sessions (and only this agent's: another agent's is not sent).
            other = WebRtcSignal(tenant_id=tenant, agent_id=str(uuid.uuid4()), leg_id=leg_id, kind="ended")
            mine = WebRtcSignal(
                tenant_id=tenant, agent_id=a["agent"], leg_id=leg_id, kind="state", state="connected"
            )
            for event in (other, mine):
                await nc.publish(evt_subject(tenant, "webrtc", "signal"), encode(event))
            pushed = await recv(good)
            assert pushed == {"v": 1, "type": "state", "leg_id": str(leg_id), "state": "connected"}
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await nc.close()
        await browser.close()
        for leg in legs.values():
            await leg.close()


async def test_no_media_service_is_an_error_frame(http: httpx.AsyncClient, api_server: str) -> None:
    a = await signup(http)
    async with websockets.connect(ws_url(api_server, await issue(http, a))) as ws:
        await recv(ws)
        await ws.send(
            json.dumps({"v": 1, "type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"})
        )
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "media_unavailable"
        await ws.send(json.dumps({"v": 1, "type": "ping"}))
        assert (await recv(ws))["type"] == "pong"


async def test_one_socket_holds_a_bounded_number_of_legs(
    http: httpx.AsyncClient, api_server: str, infra: Any
) -> None:
    # The default cap is 4 legs per socket (SB_WEBRTC_LEGS_PER_SOCKET): the fifth offer is refused by the
    # API itself (media never sees it); a leg that ends frees its place.
    a = await signup(http)
    tenant = uuid.UUID(a["tenant"])
    nc = await nats.connect(infra.nats_url)
    offers: list[MediaWebRtcOffer] = []

    async def media_offer(msg: Any) -> None:  # stands in for the media worker
        offers.append(decode(msg.data, MediaWebRtcOffer))
        await msg.respond(encode(Reply(ok=True, data={"sdp": "v=0"})))

    sub = await nc.subscribe(cmd_subject(tenant, "media", "webrtc_offer"), cb=media_offer)
    offer = json.dumps({"v": 1, "type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"})
    try:
        async with websockets.connect(ws_url(api_server, await issue(http, a))) as ws:
            await recv(ws)
            for _ in range(4):
                await ws.send(offer)
                assert (await recv(ws))["type"] == "answer"
            await ws.send(offer)
            refused = await recv(ws)
            assert refused["type"] == "error" and refused["code"] == "limit", refused
            assert len(offers) == 4
            ended = WebRtcSignal(tenant_id=tenant, leg_id=offers[0].leg_id, agent_id=a["agent"], kind="ended")
            await nc.publish(evt_subject(tenant, "webrtc", "signal"), encode(ended))
            assert (await recv(ws))["type"] == "ended"
            await ws.send(offer)
            assert (await recv(ws))["type"] == "answer"
    finally:
        await sub.unsubscribe()
        await nc.close()


def _pushes_counted(text: str) -> dict[str, float]:
    found = re.findall(r'^sb_api_desk_pushes_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


async def test_a_desk_push_reaches_only_its_agents_process_and_socket(
    http: httpx.AsyncClient, api_server: str, infra: Any
) -> None:
    # Published the way the coordinator does (Bus.publish, JetStream), a push for agent B goes on B's own
    # subject: the API process holding only A's socket never receives it (its counter of pushes that were
    # not its socket's stays put), while A's push reaches A's socket.
    a = await signup(http)
    tenant = uuid.UUID(a["tenant"])
    other = await http.post(
        "/v1/agents", json={"name": "Bob", "email": f"bob{time.time_ns()}@x.example"}, headers=a["headers"]
    )
    assert other.status_code == 201, other.text
    b = other.json()["id"]
    bus = await connect(infra.nats_url, name="test-desk-push")
    watch = await bus.nc.subscribe(f"sb.{tenant}.evt.desk.push.>")
    try:
        async with websockets.connect(ws_url(api_server, await issue(http, a))) as ws:
            assert (await recv(ws))["type"] == "ready"
            before = _pushes_counted((await http.get("/metrics")).text)

            def push(agent: str, n: int) -> ev.DeskPush:
                body = {"contact_id": str(uuid.uuid4()), "n": n}
                return ev.DeskPush(tenant_id=tenant, agent_id=agent, kind="contact_withdrawn", body=body)

            for n in range(5):
                await bus.publish(push(b, n))
            await bus.publish(push(a["agent"], 5))
            got = await recv(ws)
            assert got["type"] == "contact_withdrawn" and got["n"] == 5, got
            await ws.send(json.dumps({"v": 1, "type": "ping"}))
            assert (await recv(ws))["type"] == "pong"  # nothing else came before the pong
            after = _pushes_counted((await http.get("/metrics")).text)
            assert after.get("not_ours", 0) == before.get("not_ours", 0), (before, after)
            assert after["sent"] >= before.get("sent", 0) + 1
            subjects = [(await watch.next_msg(timeout=5)).subject for _ in range(6)]
            assert subjects == [f"sb.{tenant}.evt.desk.push.{b}"] * 5 + [
                f"sb.{tenant}.evt.desk.push.{a['agent']}"
            ]
    finally:
        await watch.unsubscribe()
        await bus.close()


def _counted(text: str, name: str, kind: str) -> float:
    found = re.search(rf'^sb_{name}_total\{{type="{kind}"\}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_an_agents_state_reaches_the_process_once_and_only_its_socket(
    http: httpx.AsyncClient, api_server: str, infra: Any
) -> None:
    # Three agents' sockets in one API process: an agent's state change is received by the process once
    # (one subscription for the tenant, not one per socket) and handed to that agent's socket only.
    a = await signup(http)
    tenant = uuid.UUID(a["tenant"])
    others = []
    for name in ("Bob", "Cy"):
        r = await http.post(
            "/v1/agents",
            json={"name": name, "email": f"{name.lower()}{time.time_ns()}@x.example"},
            headers=a["headers"],
        )
        assert r.status_code == 201, r.text
        others.append({**a, "agent": r.json()["id"]})
    nc = await nats.connect(infra.nats_url)
    try:
        async with (
            websockets.connect(ws_url(api_server, await issue(http, a))) as mine,
            websockets.connect(ws_url(api_server, await issue(http, others[0]))) as second,
            websockets.connect(ws_url(api_server, await issue(http, others[1]))) as third,
        ):
            for ws in (mine, second, third):
                assert (await recv(ws))["type"] == "ready"
            before = (await http.get("/metrics")).text
            change = ev.AgentStateChanged(tenant_id=tenant, agent_id=a["agent"], old="away", new="available")
            await nc.publish(evt_subject(tenant, "agent", "state_changed"), encode(change))
            got = await recv(mine)
            assert (got["type"], got["state"], got["previous"]) == ("agent_state", "available", "away")
            for ws in (second, third):
                await ws.send(json.dumps({"v": 1, "type": "ping"}))
                assert (await recv(ws))["type"] == "pong"  # nothing came before it
            after = (await http.get("/metrics")).text
            for metric in ("api_fanout_events", "api_fanout_pushes"):
                grew = _counted(after, metric, "AgentStateChanged") - _counted(
                    before, metric, "AgentStateChanged"
                )
                assert grew == 1, (metric, grew)
    finally:
        await nc.close()
