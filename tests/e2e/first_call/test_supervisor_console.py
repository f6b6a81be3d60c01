"""The supervisor console (services/web/supervisor) in Debian's Chromium through the whole platform, with
the reporting service feeding the realtime view: a supervisor signs in; the agent grid shows a headless
agent signing in; the supervisor sets the agent away from the grid; a SIP caller queues (the Support tile
shows it waiting); made available from the grid, the agent is offered the call and answers (the grid
shows it on a call); the supervisor listens, whispers and barges through the browser's own WebRTC leg
(the API's monitor sessions audited with the person); then signs the agent out from the grid (its desk
closes). Screenshots in .artifacts/supervisor-console/ (look at them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected

from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import PhoneCaller, make_tenant, tone_wav
from tests.e2e.first_call.test_recording_call import _drop
from tests.e2e.first_call.test_supervisor_monitor import switchboard_cli
from tests.service_procs import service_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
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
    invite = await switchboard_cli(stack.api, tenant.key, "supervisors", "invite", "lead@example.com")
    assert invite["role"] == "supervisor" and invite["url"].startswith(stack.api), invite
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as http:
        r = await http.post("/v1/auth/invite", json={"token": invite["token"], "password": PASSWORD})
        assert r.status_code == 200, r.text
    agent = AgentSession(
        stack.api,
        tenant.token(email),
        auto_answer=True,
        play=tone_wav(tmp_path / "agent.wav", 1700.0),
        play_loop=True,
    )
    caller: PhoneCaller | None = None
    async with chromium.launch(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        try:
            await page.goto(f"{stack.api}/supervisor/")
            await page.wait_for_selector("#signin-form")
            await _shot(page, "1-sign-in")
            await page.fill("#email", "lead@example.com")
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
            caller = PhoneCaller(stack.sip_port, tenant.number)
            await caller.dial()
            await _until_text(tile.locator(".waiting"), "1", timeout=8)
            await _shot(page, "2-a-caller-waiting")

            await row.locator('button[data-action="available"]').click()
            connected = await agent.next_event(timeout=15)
            while not isinstance(connected, ContactConnected):
                assert connected is not None, "the agent was never connected"
                connected = await agent.next_event(timeout=15)
            await _until_text(row, "On a call")
            await _until_text(tile.locator(".waiting"), "0")
            await _until_text(row.locator("td.contact"), connected.contact_id[:8])

            await row.locator('button[data-action="listen"]').click()
            await page.wait_for_selector(
                'button.mode[data-mode="listen"][aria-pressed="true"]', timeout=15000
            )
            await _shot(page, "3-listening")
            for mode in ("whisper", "barge"):
                await page.click(f'button.mode[data-mode="{mode}"]')
                await page.wait_for_selector(f'button.mode[data-mode="{mode}"][aria-pressed="true"]')
            await page.click("#monitor-leave")
            await page.wait_for_selector("#monitor-panel.hidden", state="attached")

            await caller.hang_up()
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
            if caller is not None:
                caller.close()
            await agent.close()

    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=admin) as http:
        entries = (await http.get("/v1/audit", params={"limit": 200})).json()["items"]
    monitored = [
        e["detail"]["mode"]
        for e in entries
        if e["action"] in ("contact.monitored", "contact.monitor_ended")
        and e["target_id"] == connected.contact_id
    ]
    assert monitored == ["listen", "whisper", "barge", "none"]
    floor = ("contact.monitored", "contact.monitor_ended", "agent.state_set", "agent.signed_out")
    steps = [e for e in entries if e["action"] in floor]
    assert [e["action"] for e in steps].count("agent.state_set") == 2  # away, then available
    people = {e["detail"].get("account_id") for e in steps}
    assert None not in people and len(people) == 1  # every step names the signed-in supervisor
