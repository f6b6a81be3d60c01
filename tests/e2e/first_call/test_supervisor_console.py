"""The supervisor console (services/web/supervisor) in Debian's Chromium through the whole platform, with
the reporting service feeding the realtime view: a supervisor signs in; the agent grid shows a headless
agent signing in; the supervisor sets the agent away from the grid; a SIPp caller queues (the Support tile
shows it waiting, the queue's own 90 % target and the tenant's alert thresholds); a second caller
queues, the waiting list shows both in routing's order and an alert fires (more waiting than the policy
allows); the supervisor puts the second caller at the front and "Take it" explains that they have no agent
profile; made available from the grid, the agent is offered the caller put first and answers (the grid
shows it on a call, and its quality: offers answered); the supervisor listens, whispers and barges through the browser's own WebRTC leg
(its microphone a 2300 Hz tone): the SIPp caller (600 Hz) and the agent (1700 Hz) are checked for hearing it
exactly when they should, the page's own audio for hearing both of them; each step is audited with the
person; then signs the agent out from the grid (its desk
closes). Screenshots in .artifacts/supervisor-console/ (look at them)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactOffer

from services.media.rtp.g711 import ulaw_decode
from services.runtime.embedded import free_port
from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import make_tenant, tone_power, tone_wav
from tests.e2e.first_call.test_agent_connect import CALLER_HZ as SIPP_CALLER_HZ
from tests.e2e.first_call.test_agent_connect import CallerRtp
from tests.e2e.first_call.test_recording_call import _drop
from tests.e2e.first_call.test_supervisor_floor import _next
from tests.e2e.first_call.test_supervisor_monitor import (
    HEARD,
    NOT_HEARD,
    SUPERVISOR_HZ,
    AgentEar,
    listen_window,
    switchboard_cli,
)
from tests.service_procs import service_env
from tests.sipp_uac import sipp_command, uac_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

SHOTS = Path(__file__).resolve().parents[3] / ".artifacts" / "supervisor-console"
PASSWORD = "a long supervisor password 42"


@pytest.fixture(scope="module")
def console_stack(first_call_stack: Any, infra: Any) -> Iterator[Any]:
    """The first-call stack plus the reporting service (the realtime view's facts)."""
    durable = f"rpt-{first_call_stack.sip_port}"
    name = "reporting"
    first_call_stack.envs[name] = service_env(
        infra, SB_SERVICE_NAME=name, SB_REPORTING_DURABLE=durable, SB_WEBHOOKS_DURABLE=f"wh-{durable}"
    )
    first_call_stack.modules[name] = "services.reporting"
    first_call_stack.logs[name] = infra.data_dir / f"reporting-{durable}.log"
    first_call_stack.logs[name].touch()
    first_call_stack.start(name)
    try:
        yield first_call_stack
    finally:
        proc = first_call_stack.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        asyncio.run(_drop(infra.nats_url, durable))


CALLER_HZ, AGENT_HZ = SIPP_CALLER_HZ, 1700.0


class SippCaller:
    """SIPp calls (Debian's sip-tester); its RTP is this test's socket (CallerRtp: 600 Hz, keeps what it hears)."""

    def __init__(self, proc: asyncio.subprocess.Process, rtp: CallerRtp, transport: Any) -> None:
        self.proc, self.rtp, self.transport = proc, rtp, transport

    @classmethod
    async def dial(cls, sip_port: int, number: str, tmp_path: Path) -> SippCaller:
        # The system picks a free UDP port (a port free for TCP may be a media worker's RTP port).
        transport, rtp = await asyncio.get_running_loop().create_datagram_endpoint(
            CallerRtp, local_addr=("127.0.0.1", 0)
        )
        rtp_port = transport.get_extra_info("sockname")[1]
        caller = '"Ada Caller" <sip:+15550177@[local_ip]:[local_port]>'
        (tmp_path / "caller.xml").write_text(
            uac_scenario(rtp_port=rtp_port, caller=caller, hangup_after_ms=120_000, name="console caller")
        )
        proc = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", "caller.xml", "-s", number, f"127.0.0.1:{sip_port}",
            "-m", "1", "-timeout", "150",
            cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return cls(proc, rtp, transport)

    def mark(self) -> int:
        return len(self.rtp.received)

    def since(self, mark: int) -> np.ndarray:
        return ulaw_decode(b"".join(p for _, p in self.rtp.received[mark:])).astype(np.float64)

    async def hang_up(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.rtp.talking is not None:
            self.rtp.talking.cancel()
        self.transport.close()


class DeskPhone:
    """SIPp as the supervisor's desk phone: answers at once and echoes what it hears."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def _desk_phone(tmp_path: Path) -> DeskPhone:
    from tests.e2e.first_call.test_desk_phone import PICK_UP_AFTER_3S

    port = free_port()
    (tmp_path / "phone.xml").write_text(PICK_UP_AFTER_3S.replace('<pause milliseconds="3000"/>', ""))
    proc = await asyncio.create_subprocess_exec(
        *sipp_command(port),
        "-sf", "phone.xml", "-rtp_echo", "-m", "1", "-timeout", "60",
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.3)  # SIPp binds its port
    return DeskPhone(proc, port)


MIC_HEARD = 0.05  # the browser's microphone through its WebRTC leg and the mix: 0.12 measured


def _mixed(heard: dict[str, Any], expected: set[str]) -> bool:
    """The supervisor's mode has reached the ears: the supervisor's microphone heard by `expected` alone,
    and the caller still hearing the agent."""
    return tone_power(heard["caller"], AGENT_HZ) > HEARD and all(
        tone_power(audio, SUPERVISOR_HZ) > MIC_HEARD
        if who in expected
        else tone_power(audio, SUPERVISOR_HZ) < NOT_HEARD
        for who, audio in heard.items()
    )


# The supervisor's ear: the level (dB) of each frequency in what the page's <audio> plays, over 1 s.
EAR_JS = """async (freqs) => {
  const stream = document.getElementById("monitor-audio").srcObject;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.8;
  ctx.createMediaStreamSource(stream).connect(analyser);
  await new Promise((r) => setTimeout(r, 1000));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  const at = (f) => Math.max(...[-2, -1, 0, 1, 2].map((d) => bins[Math.round(f / (ctx.sampleRate / analyser.fftSize)) + d]));
  const out = freqs.map(at);
  await ctx.close();
  return out;
}"""


@asynccontextmanager
async def _chromium(tmp_path: Path) -> AsyncIterator[Any]:
    """Chromium as tests/e2e/browser/chromium.py launches it, its microphone a 2300 Hz tone."""
    from playwright.async_api import async_playwright

    mic = tmp_path / "mic.wav"
    rate = 48000
    t = np.arange(rate * 4) / rate
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((8000 * np.sin(2 * np.pi * SUPERVISOR_HZ * t)).astype("<i2").tobytes())
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium.CHROMIUM,
            args=[*chromium.CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic}"],
            headless=True,
        )
        try:
            yield context
        finally:
            await context.close()


async def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _row(page: Any, email: str) -> Any:
    return page.locator(f'tr[data-agent="{email}"]')


async def _until_text(locator: Any, text: str, timeout: float = 5.0) -> float:
    """Seconds until `locator` shows `text` (the console's lag)."""
    start = time.monotonic()
    await locator.filter(has_text=text).first.wait_for(timeout=timeout * 1000)
    return time.monotonic() - start


async def test_the_console_shows_the_floor_and_steps_into_a_call(console_stack: Any, tmp_path: Path) -> None:
    stack = console_stack
    tenant = await asyncio.to_thread(make_tenant, stack.api)
    admin = {"Authorization": f"Bearer {tenant.key}"}
    email = "agent0@example.com"
    # Sign-in emails are unique across organisations and the suite shares one database.
    lead = f"lead-{uuid.uuid4().hex[:8]}@example.com"
    invite = await switchboard_cli(stack.api, tenant.key, "supervisors", "invite", lead)
    assert invite["role"] == "supervisor" and invite["url"].startswith(stack.api), invite
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as http:
        r = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        assert r.status_code == 200, r.text
    agent = AgentSession(
        stack.api,
        tenant.token(email),
        auto_answer=False,
        play=tone_wav(tmp_path / "agent.wav", AGENT_HZ),
        play_loop=True,
        record=str(tmp_path / "agent-{contact_id}.wav"),
    )
    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
        r = await http.patch(f"/v1/queues/{tenant.queue_id}", json={"sl_percent": 90})
        assert r.status_code == 200, r.text
    await switchboard_cli(stack.api, tenant.key, "alerts", "set", "--waiting-over", "1", "--away-over", "60")
    caller: SippCaller | None = None
    second: SippCaller | None = None
    async with _chromium(tmp_path) as browser:
        page = await browser.new_page()
        problems: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))

        def on_dialog(d: Any) -> None:
            dialogs.append(d.message)
            accepting.add(asyncio.ensure_future(d.accept()))

        accepting: set[Any] = set()
        page.on("dialog", on_dialog)
        try:
            await page.goto(f"{stack.api}/supervisor/")
            await page.wait_for_selector("#signin-form")
            await _shot(page, "1-sign-in")
            await page.fill("#email", lead)
            await page.fill("#password", PASSWORD)
            await page.click("#signin-button")
            await page.wait_for_selector("#live.on", timeout=10000)
            tile = page.locator('article[data-queue="Support"]')
            await tile.wait_for()
            row = await _row(page, email)
            await _until_text(row, "Signed out")

            await agent.connect()
            await agent.login(state="available")
            lag = await _until_text(row, "Available")
            assert lag < 2.0, lag
            await row.locator('button[data-action="away"]').click()
            await _until_text(row, "Away")
            await _until_text(tile, "/ 90%")  # the queue's own target, not a global one
            await _until_text(tile.locator(".policy"), "waiting > 1")
            (tmp_path / "first").mkdir()
            caller = await SippCaller.dial(stack.sip_port, tenant.number, tmp_path / "first")
            await _until_text(tile.locator(".waiting"), "1", timeout=8)
            await _shot(page, "2-a-caller-waiting")
            (tmp_path / "second").mkdir()
            second = await SippCaller.dial(stack.sip_port, tenant.number, tmp_path / "second")
            await _until_text(tile.locator(".waiting"), "2", timeout=8)
            await _until_text(page.locator("#alerts"), "2 callers waiting, over 1")
            waiting = page.locator("#waiting tr")
            await waiting.nth(1).wait_for()
            first_id, second_id = [await waiting.nth(i).get_attribute("data-contact") for i in (0, 1)]
            assert await waiting.nth(0).locator("td.position").inner_text() == "1"
            await waiting.nth(1).locator('button[data-action="front"]').click()
            await page.locator(f'#waiting tr:first-child[data-contact="{second_id}"]').wait_for(timeout=5000)
            await _shot(page, "2a-second-caller-put-first")
            await waiting.nth(1).locator('button[data-action="take"]').click()
            for _ in range(100):
                if dialogs:
                    break
                await asyncio.sleep(0.05)
            assert dialogs and "no agent profile" in dialogs[0], dialogs  # told why, nothing changed
            assert await page.locator("#waiting tr").count() == 2

            await row.locator('button[data-action="available"]').click()
            offer = await _next(agent, ContactOffer)
            assert offer.contact_id == second_id  # the one put at the front, though it came second
            await _until_text(row, "Ringing")  # offered: the agent's desk rings
            await _shot(page, "2b-offered")
            # Reporting lagging the feed (held still): the console reads the realtime view on the feed's
            # events, before the facts have them, and must read it again once they are in.
            reporting = stack.procs["reporting"]
            reporting.send_signal(signal.SIGSTOP)
            try:
                await agent.accept(offer.contact_id)
                connected = await _next(agent, ContactConnected)
                await _until_text(row, "On a call")
                await _until_text(tile.locator(".waiting"), "1")
                await _until_text(row.locator("td.contact"), connected.contact_id[:8])
                await asyncio.sleep(0.5)  # the re-reads the feed's events asked for are answered
            finally:
                reporting.send_signal(signal.SIGCONT)
            # Today: one offer, answered (from reporting's facts once they are in).
            await _until_text(row.locator("td.agent-quality"), "Answered 100%", timeout=15)
            assert await page.locator("#waiting tr").get_attribute("data-contact") == first_id
            agent_ear = AgentEar()
            agent_ear.attach(agent, connected.contact_id)
            ears = {"caller": second, "agent": agent_ear}  # the caller put first is the one answered

            await row.locator('button[data-action="listen"]').click()
            await page.wait_for_selector(
                'button.mode[data-mode="listen"][aria-pressed="true"]', timeout=15000
            )
            await _shot(page, "3-listening")
            # The browser's microphone says 2300 Hz (a WAV as Chromium's fake capture device): nobody hears
            # it while listening, the agent alone when whispering, both when barging. The supervisor's
            # own ear (the page's <audio>) hears the caller and the agent throughout.
            for mode in ("listen", "whisper", "barge"):
                if mode != "listen":
                    await page.click(f'button.mode[data-mode="{mode}"]')
                    await page.wait_for_selector(f'button.mode[data-mode="{mode}"][aria-pressed="true"]')
                expected = {"listen": set(), "whisper": {"agent"}, "barge": {"agent", "caller"}}[mode]
                heard = await listen_window(ears, 1.5, until=lambda h, e=expected: _mixed(h, e))
                for who, audio in heard.items():
                    assert len(audio) > 8000, f"{mode}: the {who} heard almost nothing"
                    power = tone_power(audio, SUPERVISOR_HZ)
                    if (
                        who in expected
                    ):  # measured 0.12 (a third party's share of a three-way mix), 0.000 when not
                        assert power > MIC_HEARD, (
                            f"{mode}: the {who} does not hear the supervisor ({power:.3f})"
                        )
                    else:
                        assert power < NOT_HEARD, f"{mode}: the {who} hears the supervisor ({power:.3f})"
                assert tone_power(heard["caller"], AGENT_HZ) > HEARD
                ear = await page.evaluate(EAR_JS, [CALLER_HZ, AGENT_HZ, 5000.0])
                assert ear[0] > ear[2] + 20 and ear[1] > ear[2] + 20, f"{mode}: the supervisor hears {ear} dB"
            await page.click("#monitor-leave")
            await page.wait_for_selector("#monitor-panel.hidden", state="attached")

            # Through the supervisor's desk phone instead (SIPp answering and echoing what it hears): the
            # platform rings it; in barge the caller hears its own voice back through the phone; leaving
            # hangs the phone up.
            phone = await _desk_phone(tmp_path)
            try:
                await page.check("#via-phone")
                await page.fill("#phone", f"sip:lead@127.0.0.1:{phone.port}")
                await row.locator('button[data-action="listen"]').click()
                await _until_text(page.locator("#monitor-title"), "Listening on your phone", timeout=10)
                await page.click('button.mode[data-mode="barge"]')
                await page.wait_for_selector('button.mode[data-mode="barge"][aria-pressed="true"]')
                await _shot(page, "3b-barging-on-the-desk-phone")
                heard = await listen_window(
                    {"caller": second}, 1.5, until=lambda h: tone_power(h["caller"], CALLER_HZ) > HEARD
                )
                assert tone_power(heard["caller"], CALLER_HZ) > HEARD  # its own tone, echoed by the phone
                await page.click("#monitor-leave")
                assert await asyncio.wait_for(phone.proc.wait(), 10) == 0, "the desk phone got no BYE"
            finally:
                await phone.close()

            await caller.hang_up()
            await second.hang_up()
            await row.locator('button[data-action="signout"]').click()
            await _until_text(row, "Signed out", timeout=8)
            for _ in range(100):
                if agent.close_code is not None:
                    break
                await asyncio.sleep(0.05)
            assert agent.close_code == 4401
            await _shot(page, "4-signed-out")
            assert problems == []
        except Exception:
            await _shot(page, "failed")
            raise
        finally:
            for c in (caller, second):
                if c is not None:
                    await c.hang_up()
            await agent.close()

    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
        entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
    monitored = [
        e["detail"]["mode"]
        for e in entries
        if e["action"] in ("contact.monitored", "contact.monitor_ended")
        and e["target_id"] == connected.contact_id
    ]
    assert monitored == ["listen", "whisper", "barge", "none", "listen", "barge", "none"]
    floor = (
        "contact.monitored", "contact.monitor_ended", "agent.state_set", "agent.signed_out", "contact.fronted"
    )  # fmt: skip
    steps = [e for e in entries if e["action"] in floor]
    assert [e["action"] for e in steps].count("agent.state_set") == 2  # away, then available
    people = {e["detail"].get("account_id") for e in steps}
    assert None not in people and len(people) == 1  # every step names the signed-in supervisor
