"""The widget's keypad (headless Chromium, the whole platform): once the web caller is connected, a Keypad
button opens twelve keys; each key sends its digit over the call's "dtmf" data channel, and media makes it
the call's digit (`call.dtmf`, source datachannel), which is what an IVR menu listens to.
Screenshot: .artifacts/widget/keypad.png."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.kernel.events import CallDtmf
from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import Stack, Watch, make_tenant
from tests.e2e.first_call.test_widget_browser import _watch, _widget_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
]

SHOTS = Path(__file__).resolve().parents[3] / ".artifacts" / "widget"


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
