"""The supervisor console's figures, charts and alerts in Debian's Chromium, from facts the reporting
store holds for today (written as the ingest would): one call answered in 2 s and two abandoned after
30 s in a queue with a 20 s threshold: the tile shows 3 offered and 33 % against the 80 % target, the
alert says so, and both charts draw today's half hour (3 offered, 1 answered, 2 abandoned; SL 33 %).
Screenshot in .artifacts/supervisor-console/5-charts-and-alert.png."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import switchboard
from reporting_harness import contact_events

from services.reporting.store import FactStore
from tests.e2e.browser import chromium

pytestmark = pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium")

SHOTS = Path(__file__).resolve().parents[3] / ".artifacts" / "supervisor-console"
PASSWORD = "a long supervisor password 42"


async def test_tiles_charts_and_alerts_from_todays_facts(
    api_server: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    with switchboard.Client(base_url=api_server) as anonymous:
        result = anonymous.signup(f"Charts {uuid.uuid4().hex[:6]}", f"ops-{uuid.uuid4().hex[:6]}@example.com")
    tenant = uuid.UUID(result.tenant.id)
    with switchboard.Client(api_key=result.api_key.key, base_url=api_server) as client:
        queue = client.queues.create("Billing", sl_seconds=20, short_abandon_seconds=5)
        # Sign-in emails are unique across organisations and the suite shares one database.
        lead = f"lead-{uuid.uuid4().hex[:8]}@example.com"
        invite = client.invite_supervisor(lead)
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as http:
        r = await http.post("/v1/auth/invite", json={"token": invite.token, "password": PASSWORD})
        assert r.status_code == 200, r.text
    # Today (the tenant's zone is UTC): a little before now, all ended already, and all in the current half
    # hour, which the charts' last point shows (a run at 18:59 once split them across 18:30 and 19:00).
    into_half_hour = time.time() % 1800
    if into_half_hour < 60:  # the contacts take 51 s to end: wait until they fit after the boundary
        await asyncio.sleep(60 - into_half_hour)
    now = time.time()
    start = max(now - 200, now - now % 1800)
    events = contact_events(
        tenant, queue.id, start, answer_after=2.0, abandon_after=None, agent_id="a", handle_s=20.0
    )
    events += contact_events(tenant, queue.id, start + 10, answer_after=None, abandon_after=30.0)
    events += contact_events(tenant, queue.id, start + 20, answer_after=None, abandon_after=31.0)
    await FactStore(pool).write(tenant, events)

    async with chromium.launch(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(f"{api_server}/supervisor/")
        await page.fill("#email", lead)
        await page.fill("#password", PASSWORD)
        await page.click("#signin-button")
        tile = page.locator('article[data-queue="Billing"]')
        await tile.wait_for(timeout=10000)
        text = await tile.inner_text()
        assert "33% / 80%" in text and "Offered\n3" in text and "Abandoned\n2" in text, text
        assert await tile.get_attribute("class") == "tile alert"
        await page.locator("#alerts", has_text="Billing: service level 33% today is under 80%").wait_for()
        await page.wait_for_function("window.supervisorCharts['sl-chart'] !== undefined", timeout=10000)
        volume = await page.evaluate("window.supervisorCharts['volume-chart'].data.map((s) => Array.from(s))")
        sl = await page.evaluate("window.supervisorCharts['sl-chart'].data.map((s) => Array.from(s))")
        assert [volume[1][-1], volume[2][-1], volume[3][-1]] == [3, 1, 2], volume
        assert sl[1][-1] == 33 and sl[2][-1] == 80, sl
        assert await page.locator(".uplot canvas").count() == 2
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "5-charts-and-alert.png"), full_page=True)
        assert problems == []
