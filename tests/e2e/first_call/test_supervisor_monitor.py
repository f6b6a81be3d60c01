"""A supervisor steps into a live call through the API, on the real processes: a SIP caller (1100 Hz) is
answered by a headless agent (the SDK's AgentSession, 1700 Hz); the supervisor signs in through an
invitation, opens a WebRTC leg on `/v1/ws` with the console token (2300 Hz) and asks
`POST /v1/contacts/{id}/monitor` for listen, then whisper, then barge, then none. Each party's ear is
checked for exactly the tones it should hear (as media's own monitor test does). A supervisor of another
tenant cannot step into the call, an agent key or a developer key cannot either, and every step is audited."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import switchboard
from switchboard import AgentSession
from switchboard.agent_events import AgentEvent, ContactConnected, MonitorNotice
from websockets.asyncio.client import ClientConnection, connect

from services.media.rtp.g711 import G711
from services.media.webrtc import LegState, WebRtcConfig, WebRtcLeg
from tests.e2e.first_call.conftest import PhoneCaller, Stack, make_tenant, tone, tone_power, tone_wav
from tests.e2e.first_call.test_agent_connect import SWITCHBOARD
from tests.sipp_uac import sipp_command

pytestmark = pytest.mark.e2e

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 1100.0, 1700.0, 2300.0
HEARD, NOT_HEARD = 0.1, 0.01
PASSWORD = "a long supervisor password 42"


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


class Console:
    """A supervisor's browser session: signed in through an invitation, the refresh cookie kept, and a fresh
    access token (console audience) traded for it whenever the last one is near its end (tests run with
    6 s tokens)."""

    def __init__(self, api: str) -> None:
        self.http = httpx.AsyncClient(base_url=api, timeout=15)
        self._token, self._expires = "", 0.0

    @classmethod
    async def sign_in(cls, api: str, admin_key: str, email: str, role: str = "supervisor") -> Console:
        console = cls(api)
        headers = {"Authorization": f"Bearer {admin_key}"}
        invite = await console.http.post("/v1/invites", json={"email": email, "role": role}, headers=headers)
        assert invite.status_code == 201, invite.text
        signed = await console.http.post(
            "/v1/auth/invite", json={"token": invite.json()["token"], "password": PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["role"] == role
        console._take(signed.json())
        return console

    def _take(self, body: dict[str, Any]) -> None:
        self._token, self._expires = str(body["access_token"]), float(body["expires_at"])

    async def token(self) -> str:
        if self._expires - time.time() < 3.0:
            r = await self.http.post("/v1/auth/refresh")
            assert r.status_code == 200, r.text
            self._take(r.json())
        return self._token

    async def monitor(self, contact_id: str, mode: str, leg_id: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token()}"}
        body = {"mode": mode, "leg_id": leg_id}
        return await self.http.post(f"/v1/contacts/{contact_id}/monitor", json=body, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()


class SupervisorEar:
    """The supervisor's browser, played by aiortc: a WebRTC leg over /v1/ws opened with a console token,
    saying its tone all along and keeping what it hears."""

    def __init__(self, ws: ClientConnection, leg: WebRtcLeg, leg_id: str, heard: list[np.ndarray]) -> None:
        self.ws, self.leg, self.leg_id, self.heard = ws, leg, leg_id, heard
        self._talk = asyncio.create_task(self._say())

    @classmethod
    async def open(cls, api: str, token: str, contact_id: str) -> SupervisorEar:
        ws = await connect(api.replace("http://", "ws://") + "/v1/ws")
        await ws.send(json.dumps({"v": 1, "type": "auth", "token": token}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        heard: list[np.ndarray] = []
        leg = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU, on_audio=heard.append)
        offer = await leg.create_offer()
        await ws.send(json.dumps({"v": 1, "type": "offer", "sdp": offer, "call_id": contact_id, "ref": "o"}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "answer":
                break
            assert message["type"] != "error", message
        await leg.accept_answer(message["sdp"])
        await _until(lambda: leg.state is LegState.CONNECTED)
        return cls(ws, leg, message["leg_id"], heard)

    async def _say(self) -> None:
        samples = tone(SUPERVISOR_HZ, 1.0)
        loop = asyncio.get_running_loop()
        start, i = loop.time(), 0
        while True:
            chunk = (i % 50) * 160
            self.leg.send_audio(samples[chunk : chunk + 160])
            i += 1
            await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))

    def mark(self) -> int:
        return len(self.heard)

    def since(self, mark: int) -> np.ndarray:
        frames = self.heard[mark:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)

    async def close(self) -> None:
        self._talk.cancel()
        await self.leg.close()
        await self.ws.close()


class AgentEar:
    """What the agent's SDK leg hears, kept in memory beside its recording."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.agent: AgentSession | None = None

    def attach(self, agent: AgentSession, contact_id: str) -> None:
        self.agent = agent
        leg = agent.leg(contact_id)
        assert leg is not None and leg.recorder is not None
        recorder = leg.recorder
        write = recorder.write

        def keep(samples: np.ndarray) -> None:
            self.heard.append(samples.copy())
            write(samples)

        recorder.write = keep  # type: ignore[method-assign]

    def mark(self) -> int:
        return len(self.heard)

    def since(self, mark: int) -> np.ndarray:
        frames = self.heard[mark:]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)


async def monitor_notices(ear: AgentEar, wait_for: int = 0, timeout: float = 10.0) -> list[MonitorNotice]:
    """The `monitor_notice` messages the agent's desk received so far (waiting for at least `wait_for`)."""
    assert ear.agent is not None
    notices: list[MonitorNotice] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic() if len(notices) < wait_for else 0.05
        event: AgentEvent | None = await ear.agent.next_event(timeout=max(left, 0.01))
        if event is None:
            return notices
        if isinstance(event, MonitorNotice):
            notices.append(event)


Ear = Any  # PhoneCaller (mark / pcm_since), AgentEar, SupervisorEar


def _since(ear: Ear, mark: int) -> np.ndarray:
    return ear.pcm_since(mark).astype(np.float64) if isinstance(ear, PhoneCaller) else ear.since(mark)


# The longest a mode change may take to reach every ear (0.4 s unloaded): through the API, the coordinator
# and the media process, then RTP and the ear's own reader, each a process that waits its turn for a core.
SETTLE_S = 10.0
RATE = 8000  # every ear's samples per second


async def listen_window(
    ears: dict[str, Ear],
    seconds: float = 1.2,
    *,
    until: Callable[[dict[str, np.ndarray]], bool] | None = None,
) -> dict[str, np.ndarray]:
    """What each party heard over the next `seconds` of audio (everyone talks all the time). After a mode
    change, `until` says what the ears hear once the new mix has reached them: the window starts when a
    0.4 s stretch meets it (at most SETTLE_S; the caller's checks of the window then say what is wrong).
    Under load a fixed 0.4 s was too short (the barge came out silent), and a reader starved of CPU had
    0.5 s of audio after 1.2 s of wall time: the window is counted in samples, not seconds of wall time."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        marks = {name: ear.mark() for name, ear in ears.items()}
        await asyncio.sleep(0.4)
        if until is None or time.monotonic() > deadline:
            break
        if until({name: _since(ear, marks[name]) for name, ear in ears.items()}):
            break
    marks = {name: ear.mark() for name, ear in ears.items()}
    await asyncio.sleep(seconds)
    for _ in range(int(SETTLE_S / 0.05)):
        if all(len(_since(ear, marks[name])) >= seconds * RATE for name, ear in ears.items()):
            break
        await asyncio.sleep(0.05)
    return {name: _since(ear, marks[name]) for name, ear in ears.items()}


def sounding(samples: np.ndarray, frame: int = RATE // 50) -> np.ndarray:
    """The window's 20 ms frames that carry sound (an ear's window is whole packets of 20 ms): media sends
    silence in place of a party's audio that came too late, and that is not something new heard."""
    frames = [samples[i : i + frame] for i in range(0, len(samples) - frame + 1, frame)]
    kept = [f for f in frames if np.any(f)]
    return np.concatenate(kept) if kept else np.zeros(0)


TONES = {"caller": CALLER_HZ, "agent": AGENT_HZ, "supervisor": SUPERVISOR_HZ}


def ear_problems(heard: dict[str, np.ndarray], expected: dict[str, set[str]]) -> list[str]:
    """Who hears a speaker it should not, or does not hear one it should (never itself)."""
    problems = []
    for listener, audio in heard.items():
        for speaker, frequency in TONES.items():
            if speaker == listener:
                continue
            power = tone_power(audio, frequency)
            if speaker in expected[listener] and not power > HEARD:
                problems.append(f"{listener} does not hear {speaker} ({power:.3f})")
            elif speaker not in expected[listener] and not power < NOT_HEARD:
                problems.append(f"{listener} hears {speaker} ({power:.3f})")
    return problems


async def check_ears(ears: dict[str, Ear], expected: dict[str, set[str]]) -> None:
    """Each listener hears exactly the speakers in `expected[listener]`, once the mix has settled."""
    heard = await listen_window(ears, until=lambda stretch: not ear_problems(stretch, expected))
    for listener, audio in heard.items():
        assert len(audio) > 4000, f"{listener} heard almost nothing ({len(audio)} samples)"
    problems = ear_problems(heard, expected)
    assert not problems, "; ".join(problems)


EXPECTED = {
    "listen": {"caller": {"agent"}, "agent": {"caller"}, "supervisor": {"caller", "agent"}},
    "whisper": {"caller": {"agent"}, "agent": {"caller", "supervisor"}, "supervisor": {"caller", "agent"}},
    "barge": {
        "caller": {"agent", "supervisor"},
        "agent": {"caller", "supervisor"},
        "supervisor": {"caller", "agent"},
    },
}


async def connected_call(
    stack: Stack, tenant: Any, tmp_path: Path
) -> tuple[AgentSession, AgentEar, PhoneCaller, str]:
    """A SIP caller answered by a headless agent that plays its tone: (agent, its ear, caller, contact id)."""
    agent = AgentSession(
        stack.api,
        tenant.token("agent0@example.com"),
        auto_answer=True,
        play=tone_wav(tmp_path / "agent.wav", AGENT_HZ),
        play_loop=True,
        record=str(tmp_path / "agent-{contact_id}.wav"),
    )
    await agent.connect()
    await agent.login(state="available")
    caller = PhoneCaller(stack.sip_port, tenant.number, frequency=CALLER_HZ)
    await caller.dial()
    ear = AgentEar()
    while True:
        event = await agent.next_event(timeout=20)
        assert event is not None, "the agent was never connected"
        if isinstance(event, ContactConnected):
            ear.attach(agent, event.contact_id)
            return agent, ear, caller, event.contact_id


async def supervisor_key(api: str, admin_key: str) -> str:
    async with httpx.AsyncClient(
        base_url=api, timeout=10, headers={"Authorization": f"Bearer {admin_key}"}
    ) as http:
        r = await http.post("/v1/keys", json={"name": "floor", "role": "supervisor"})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


async def switchboard_cli(api: str, key: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "SB_API_URL": api, "SB_API_KEY": key}
    env.pop("SB_PROFILE", None)
    proc = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD),
        "--json",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return dict(json.loads(out))


async def post_monitor(api: str, token: str, contact_id: str, mode: str, leg_id: str) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=api, timeout=15, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        return await http.post(f"/v1/contacts/{contact_id}/monitor", json={"mode": mode, "leg_id": leg_id})


async def _with_call(stack: Stack, tmp_path: Path, body: Callable[..., Awaitable[None]]) -> None:
    tenant = await asyncio.to_thread(make_tenant, stack.api)
    agent, agent_ear, caller, contact_id = await connected_call(stack, tenant, tmp_path)
    try:
        await body(tenant, agent_ear, caller, contact_id)
    finally:
        await caller.hang_up()
        caller.close()
        await agent.close()


async def test_listen_whisper_barge_through_the_api_by_what_each_party_hears(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack

    async def body(tenant: Any, agent_ear: AgentEar, caller: PhoneCaller, contact_id: str) -> None:
        console = await Console.sign_in(stack.api, tenant.key, f"lead-{uuid.uuid4().hex[:8]}@example.com")
        supervisor = await SupervisorEar.open(stack.api, await console.token(), contact_id)
        ears = {"caller": caller, "agent": agent_ear, "supervisor": supervisor}
        try:
            before = await listen_window(ears)
            assert tone_power(before["supervisor"], CALLER_HZ) < NOT_HEARD
            assert tone_power(before["caller"], SUPERVISOR_HZ) < NOT_HEARD
            # listen through the API as the console calls it, whisper through the CLI and barge through the
            # SDK, both with a supervisor API key of the tenant.
            r = await console.monitor(contact_id, "listen", supervisor.leg_id)
            assert r.status_code == 200, r.text
            assert r.json()["mode"] == "listen" and r.json()["agent_leg_id"]
            await check_ears(ears, EXPECTED["listen"])
            key = await supervisor_key(stack.api, tenant.key)
            cli = await switchboard_cli(
                stack.api,
                key,
                "contacts",
                "monitor",
                contact_id,
                "--mode",
                "whisper",
                "--leg",
                supervisor.leg_id,
            )
            assert cli["mode"] == "whisper" and cli["contact_id"] == contact_id, cli
            await check_ears(ears, EXPECTED["whisper"])
            async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
                session = await client.contacts.monitor(contact_id, "barge", supervisor.leg_id)
            assert session.mode == "barge" and session.leg_id == supervisor.leg_id
            await check_ears(ears, EXPECTED["barge"])
            # Back to listen on the fly, then out: nobody hears the supervisor, the supervisor hears nothing.
            r = await console.monitor(contact_id, "listen", supervisor.leg_id)
            assert r.status_code == 200, r.text
            await check_ears(ears, EXPECTED["listen"])
            r = await console.monitor(contact_id, "none", supervisor.leg_id)
            assert r.status_code == 200, r.text
            after = await listen_window(ears)
            assert (
                tone_power(after["caller"], AGENT_HZ) > HEARD
                and tone_power(after["agent"], CALLER_HZ) > HEARD
            )
            assert tone_power(after["caller"], SUPERVISOR_HZ) < NOT_HEARD
            assert tone_power(after["agent"], SUPERVISOR_HZ) < NOT_HEARD
            assert tone_power(after["supervisor"], CALLER_HZ) < NOT_HEARD
            # Leaving twice is a clear 409, not a silent success.
            again = await console.monitor(contact_id, "none", supervisor.leg_id)
            assert again.status_code == 409, again.text
            # The tenant's default policy (monitor_notice none): the agent's desk was told nothing.
            assert await monitor_notices(agent_ear) == []
        finally:
            await supervisor.close()
            await console.close()
        async with httpx.AsyncClient(
            base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {tenant.key}"}
        ) as http:
            entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
        monitored = [(e["action"], e["detail"]["mode"]) for e in entries if e["target_id"] == contact_id]
        assert monitored == [
            ("contact.monitored", "listen"),
            ("contact.monitored", "whisper"),
            ("contact.monitored", "barge"),
            ("contact.monitored", "listen"),
            ("contact.monitor_ended", "none"),
        ]
        assert all(e["actor_role"] == "supervisor" for e in entries if e["target_id"] == contact_id)
        by_person = [e for e in entries if e["target_id"] == contact_id and "account_id" in e["detail"]]
        assert len(by_person) == 3  # the console's own requests name the person; the key's name the key

    await _with_call(stack, tmp_path, body)


async def test_only_this_tenants_supervisors_step_in(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack

    async def body(tenant: Any, agent_ear: AgentEar, caller: PhoneCaller, contact_id: str) -> None:
        other = await asyncio.to_thread(make_tenant, stack.api)
        outsider = await Console.sign_in(
            stack.api, other.key, f"other-lead-{uuid.uuid4().hex[:8]}@example.com"
        )
        # The outsider's leg cannot even be made next to A's call, and A's call is not found for B.
        ws = await connect(stack.api.replace("http://", "ws://") + "/v1/ws")
        try:
            await ws.send(json.dumps({"v": 1, "type": "auth", "token": await outsider.token()}))
            assert json.loads(await ws.recv())["type"] == "ready"
            leg = WebRtcLeg(WebRtcConfig(), peer_law=G711.PCMU)
            sdp = await leg.create_offer()
            await ws.send(json.dumps({"v": 1, "type": "offer", "sdp": sdp, "call_id": contact_id}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refused["type"] == "error", refused
            # Agent commands are not a supervisor's: refused by name.
            await ws.send(json.dumps({"v": 1, "type": "login"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "unknown_type"
            await leg.close()
        finally:
            await ws.close()
        r = await outsider.monitor(contact_id, "listen", str(uuid.uuid4()))
        assert r.status_code == 404, r.text
        # A developer key of the call's own tenant, and an agent's token, are not a supervisor's.
        async with httpx.AsyncClient(
            base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {tenant.key}"}
        ) as http:
            dev = await http.post("/v1/keys", json={"name": "dev", "role": "developer"})
            assert dev.status_code == 201, dev.text
        r = await post_monitor(stack.api, dev.json()["key"], contact_id, "listen", str(uuid.uuid4()))
        assert r.status_code == 403, r.text
        r = await post_monitor(
            stack.api, tenant.token("agent0@example.com"), contact_id, "listen", str(uuid.uuid4())
        )
        assert r.status_code == 401, r.text
        # The tenant's own supervisor with a leg that does not exist: a clear 404 naming the leg.
        own = await Console.sign_in(stack.api, tenant.key, f"lead2-{uuid.uuid4().hex[:8]}@example.com")
        r = await own.monitor(contact_id, "listen", str(uuid.uuid4()))
        assert r.status_code == 404 and "leg" in r.json()["detail"], r.text
        bad = await own.monitor(contact_id, "shout", str(uuid.uuid4()))
        assert bad.status_code in (400, 422), bad.text
        # Signed out: the console token is dead at once, before it expires.
        token = await own.token()
        out = await own.http.post("/v1/auth/signout", headers={"Authorization": f"Bearer {token}"})
        assert out.status_code == 200, out.text
        r = await post_monitor(stack.api, token, contact_id, "listen", str(uuid.uuid4()))
        assert r.status_code == 401, r.text
        for console in (own, outsider):
            await console.close()

    await _with_call(stack, tmp_path, body)


async def test_the_supervisors_desk_phone_as_the_monitoring_endpoint(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    """The supervisor steps in through a desk phone (SIPp as the phone: it answers and echoes what it
    hears): the platform rings it from the worker holding the call. In listen nobody hears the phone; in
    whisper the agent hears it (its own tone and the caller's, echoed), the caller does not; in barge the
    caller hears its own tone back; leaving hangs the phone up (SIPp gets its BYE and exits 0). Rung
    again, the phone is hung up when the call itself ends."""
    import shutil

    from tests.e2e.first_call.test_desk_phone import PICK_UP_AFTER_3S
    from tests.service_procs import free_port

    if shutil.which("sipp") is None:
        pytest.skip("sipp (Debian sip-tester) is not installed")
    stack = first_call_stack

    (tmp_path / "phone.xml").write_text(PICK_UP_AFTER_3S.replace('<pause milliseconds="3000"/>', ""))

    async def ringable() -> tuple[asyncio.subprocess.Process, int]:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            *sipp_command(port),
            *["-sf", "phone.xml", "-rtp_echo", "-m", "1", "-timeout", "60"],
            cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.3)  # SIPp binds its port
        return proc, port

    async def body(tenant: Any, agent_ear: AgentEar, caller: PhoneCaller, contact_id: str) -> None:
        # The tenant tells its agents (not its callers) when a supervisor steps in.
        told = await switchboard_cli(stack.api, tenant.key, "settings", "set", "--monitor-notice", "agent")
        assert told["monitor_notice"] == "agent", told
        phone, port = await ringable()
        again: asyncio.subprocess.Process | None = None
        console = await Console.sign_in(stack.api, tenant.key, f"desk-{uuid.uuid4().hex[:8]}@example.com")
        ears = {"caller": caller, "agent": agent_ear}
        try:
            headers = {"Authorization": f"Bearer {await console.token()}"}
            monitor = f"/v1/contacts/{contact_id}/monitor"
            for bad in ({"mode": "listen", "phone": "tel:+15550100"}, {"mode": "listen"}):
                r = await console.http.post(monitor, json=bad, headers=headers)
                assert r.status_code in (400, 422), r.text
            phone_uri = f"sip:lead@127.0.0.1:{port}"
            r = await console.http.post(monitor, json={"mode": "listen", "phone": phone_uri}, headers=headers)
            assert r.status_code == 200 and r.json()["phone"] == phone_uri, r.text
            leg_id = r.json()["leg_id"]
            heard = await listen_window(ears)
            assert tone_power(heard["agent"], CALLER_HZ) > HEARD
            assert tone_power(heard["agent"], AGENT_HZ) < NOT_HEARD  # the phone's echo reaches nobody
            assert tone_power(heard["caller"], CALLER_HZ) < NOT_HEARD
            # Policy agent: the desk is told, the caller hears nothing new: what it hears is the agent's tone
            # alone. Not counting the silence media plays while the agent's audio is late: the agent is this
            # test's process, and starved of CPU it sends late (at load 11, 9 silent frames of 61 took the
            # whole window's share to 0.84, 0.99 without them; 0.78 was seen at load 19). An announcement is
            # sound, so it still counts.
            [notice] = await monitor_notices(agent_ear, wait_for=1)
            assert (notice.contact_id, notice.mode, notice.previous) == (contact_id, "listen", "none")
            assert tone_power(heard["caller"], AGENT_HZ) > HEARD
            assert tone_power(sounding(heard["caller"]), AGENT_HZ) > 0.8
            key = await supervisor_key(stack.api, tenant.key)
            cli = await switchboard_cli(
                stack.api, key, "contacts", "monitor", contact_id, "--mode", "whisper", "--leg", leg_id
            )
            assert cli["mode"] == "whisper", cli
            heard = await listen_window(ears, until=lambda h: tone_power(h["agent"], AGENT_HZ) > HEARD)
            assert tone_power(heard["agent"], AGENT_HZ) > HEARD  # its own voice, back through the phone
            assert tone_power(heard["caller"], CALLER_HZ) < NOT_HEARD
            [notice] = await monitor_notices(agent_ear, wait_for=1)
            assert (notice.mode, notice.previous) == ("whisper", "listen")
            async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
                await client.contacts.monitor(contact_id, "barge", leg_id)
                heard = await listen_window(ears, until=lambda h: tone_power(h["caller"], CALLER_HZ) > HEARD)
                assert tone_power(heard["caller"], CALLER_HZ) > HEARD  # the caller hears the phone now
                left = await client.contacts.monitor(contact_id, "none", leg_id)
            assert left.mode == "none"
            assert await asyncio.wait_for(phone.wait(), 10) == 0, "the phone got no BYE"
            heard = await listen_window(ears, until=lambda h: tone_power(h["caller"], CALLER_HZ) < NOT_HEARD)
            assert (
                tone_power(heard["caller"], AGENT_HZ) > HEARD
                and tone_power(heard["caller"], CALLER_HZ) < NOT_HEARD
            )
            notices = await monitor_notices(agent_ear, wait_for=2)
            assert [(n.mode, n.previous) for n in notices] == [("barge", "whisper"), ("none", "barge")]
            # Rung again for a listen, the tenant now telling its callers only: the caller hears the
            # announcement over the agent for a moment, the desk is told nothing. Then the caller hangs
            # up: the call is over, the phone gets its BYE.
            async with httpx.AsyncClient(
                base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {tenant.key}"}
            ) as http:  # the API this time (the CLI above): no second CLI process
                told = (await http.patch("/v1/me/settings", json={"monitor_notice": "caller"})).json()
            assert told["monitor_notice"] == "caller", told
            again, port = await ringable()
            headers = {"Authorization": f"Bearer {await console.token()}"}
            body = {"mode": "listen", "phone": f"sip:lead@127.0.0.1:{port}"}
            r = await console.http.post(monitor, json=body, headers=headers)
            assert r.status_code == 200, r.text
            heard = await listen_window(ears)
            assert tone_power(heard["caller"], AGENT_HZ) < 0.6, "the caller heard no announcement"
            assert await monitor_notices(agent_ear) == []
            await caller.hang_up()
            assert await asyncio.wait_for(again.wait(), 10) == 0, "the phone outlived the call"
        finally:
            await console.close()
            for proc in (phone, again):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        async with httpx.AsyncClient(
            base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {tenant.key}"}
        ) as http:
            entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
        steps = [
            (e["detail"]["mode"], e["detail"].get("phone")) for e in entries if e["target_id"] == contact_id
        ]
        assert steps[:4] == [("listen", phone_uri), ("whisper", None), ("barge", None), ("none", None)]
        assert steps[4][0] == "listen" and steps[4][1] is not None

    await _with_call(stack, tmp_path, body)
