"""The widget's keypad (headless Chromium, the whole platform): once the web caller is connected, a Keypad
button opens twelve keys; each key sends its digit over the call's "dtmf" data channel, and media makes it
the call's digit (`call.dtmf`, source datachannel), which is what an IVR menu listens to. A widget key
attached to a flow sends its callers through the IVR: the digit pressed on the keypad picks the menu's
option, the caller joins the queue and the widget shows its place in line and expected wait.
Screenshots: .artifacts/widget/keypad.png, .artifacts/widget/ivr-in-line.png."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected

from services.kernel.events import CallDtmf, ContactQueued
from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import PhoneCaller, Stack, Watch, make_tenant, next_of
from tests.e2e.first_call.test_widget_browser import _watch, _widget_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
]

SHOTS = Path(__file__).resolve().parents[3] / ".artifacts" / "widget"
WEB_MENU = """\
name: web-menu
start: menu
fallback: bye
nodes:
  menu:
    type: menu
    prompt: {say: "For support, press 2. For anything else, press 3."}
    options: {"2": support, "3": bye}
    timeout: 8
    retries: 1
    on_fail: bye
  support: {type: queue, queue: Support}
  bye: {type: hangup}
"""


async def test_the_widgets_keypad_sends_the_calls_digits(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = await asyncio.to_thread(make_tenant, stack.api)
    public = await asyncio.to_thread(_widget_key, t, [])
    watch = await Watch.start(stack.nats_url, t.id)
    async with chromium.launch(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        problems = _watch(page)
        try:
            await page.goto(f"{stack.api}/widget/?key={public}&queue=Support")
            keys = page.locator("#call-us .sb-keys-toggle")
            assert await keys.is_hidden()  # no keypad before a call
            await page.click("#call-us .sb-call")
            await page.wait_for_function("sbWidget.state === 'connected'", timeout=15000)
            await page.wait_for_function("sbWidget.channel && sbWidget.channel.readyState === 'open'")
            await keys.click()
            for digit in "42#":
                await page.click(f"#call-us .sb-keypad button:text('{digit}')")
            assert await page.evaluate("sbWidget.pressed") == "42#"
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / "keypad.png"))
            for _ in range(200):  # media publishes each digit as it arrives
                if len(watch.all(CallDtmf)) >= 3:
                    break
                await asyncio.sleep(0.05)
            got = watch.all(CallDtmf)
            assert "".join(e.digit for e in got) == "42#", got
            assert {e.source for e in got} == {"datachannel"} and len({e.call_id for e in got}) == 1, got
            await page.click("#call-us .sb-hangup")
            await page.wait_for_function("sbWidget.state === 'ended'", timeout=5000)
            assert await keys.is_hidden()
            assert not problems, problems
        finally:
            await page.close()
            await watch.close()


async def test_the_widgets_keypad_drives_an_ivr_and_shows_its_place_in_line(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = await asyncio.to_thread(make_tenant, stack.api, flow=WEB_MENU)
    with t.client() as client:
        refused = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id], "flow": "no-such-flow"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "flow", refused.text
        r = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id], "flow": "web-menu"})
        assert r.status_code == 201 and r.json()["flow_id"], r.text
        public = r.json()["public_key"]
        # The only agent is busy with a phone caller on a number routed straight to the queue: the web caller
        # waits in line, with an expected wait (one staffed agent, the queue's default handle time).
        direct = "+1556" + str(uuid.uuid4().int)[:8]
        assert client.post("/v1/numbers", json={"e164": direct}).status_code == 201
        assert client.post(f"/v1/numbers/{direct}/route", json={"queue": "Support"}).status_code == 200
    watch = await Watch.start(stack.nats_url, t.id)
    phone = PhoneCaller(stack.sip_port, direct)
    async with (
        AgentSession(
            stack.api, await asyncio.to_thread(t.token, "agent0@example.com"), auto_answer=True
        ) as agent,
        chromium.launch(tmp_path / "chromium-profile") as browser,
    ):
        page = await browser.new_page()
        problems = _watch(page)
        try:
            await agent.login(state="available")
            await phone.dial()
            await next_of(agent, ContactConnected, timeout=15)

            await page.goto(f"{stack.api}/widget/?key={public}&queue=Support")
            await page.click("#call-us .sb-call")
            # The key goes the moment the call's data channel opens: before the flow's menu has started to
            # listen (the IVR learns of the call only once it is connected). Media keeps a key pressed while
            # nothing listens for the next collection, a few seconds at most, so the menu still gets it.
            await page.wait_for_function(
                "sbWidget.channel && sbWidget.channel.readyState === 'open' && (sbWidget.press('2'), true)",
                polling="raf",
                timeout=15000,
            )
            await page.wait_for_function("sbWidget.state === 'connected'", timeout=15000)
            pressed = await watch.wait_for(CallDtmf, timeout=10)
            queued = await watch.wait_for(ContactQueued, lambda e: e.call_id == pressed.call_id, timeout=15)
            # The flow's menu took the key: its record shows the path and the digit it routed on. The record is
            # the coordinator's, saved after routing's contact.queued that the watch saw: read until it has it.
            with t.client() as client:
                for _ in range(100):
                    record = client.get(f"/v1/contacts/{pressed.call_id}").json()
                    if len(record.get("ivr_path") or []) >= 2:
                        break
                    await asyncio.sleep(0.1)
            assert record["ivr_path"][:2] == ["menu", "support"] and record["ivr_digits"] == "2", record
            assert record["caller_name"] == "Web caller", record
            assert queued.expected_wait_s, queued
            await page.wait_for_function(
                "document.querySelector('#call-us').textContent.includes('number 1 in line')", timeout=10000
            )
            text = await page.inner_text("#call-us")
            minutes = max(1, round(queued.expected_wait_s / 60))
            assert f"You are number 1 in line (about {minutes} min)" in text, text
            assert await page.evaluate("sbWidget.position") == {
                "position": 1,
                "expected_wait_s": queued.expected_wait_s,
            }
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / "ivr-in-line.png"))
            await page.click("#call-us .sb-hangup")
            await page.wait_for_function("sbWidget.state === 'ended'", timeout=5000)
            assert not problems, problems
        finally:
            phone.close()
            await page.close()
            await watch.close()
