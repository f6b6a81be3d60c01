"""The click-to-call widget (sdk/js/widget.js) in headless Chromium: the demo page the API serves at
`/widget/?key=...&queue=...` gets a "Call us" button; a click calls the key's queue through the whole platform
(widget token, /v1/ws, WebRTC leg, the coordinator) and the SDK's headless agent takes the call. Audio both
ways: the agent records Chromium's fake microphone (its periodic beep), the page's AnalyserNode hears the
agent's 1 kHz WAV. Hanging up with the widget's button ends the contact by the caller. A key the page may not
use shows a message in the widget, not an exception."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactEnded, ContactOffer, Recorded

from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import Stack, make_tenant, next_of, tone_wav, wait_contact

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
]

AGENT_HZ = 1000.0
BEEP_HZ = 400.0  # Chromium's fake audio capture (--use-fake-device-for-media-stream)

# The dominant frequency (telephone band) and its level in the widget's <audio> element's stream, over `ms`.
MEASURE_JS = r"""
async (ms) => {
  const stream = document.querySelector("#call-us audio").srcObject;
  const ctx = new AudioContext();
  await ctx.resume();
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  an.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(stream).connect(an);
  const spectrum = new Float32Array(an.frequencyBinCount), sum = new Float64Array(an.frequencyBinCount);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    an.getFloatFrequencyData(spectrum);
    for (let i = 0; i < spectrum.length; i++) sum[i] += Math.pow(10, spectrum[i] / 10);
    n++;
  }
  const bin = (f) => Math.round(f * an.fftSize / ctx.sampleRate);
  let best = bin(200);
  for (let i = bin(200); i <= bin(3400); i++) if (sum[i] > sum[best]) best = i;
  const peakHz = best * ctx.sampleRate / an.fftSize, peakDb = 10 * Math.log10(sum[best] / n + 1e-30);
  await ctx.close();
  return {peak_hz: peakHz, peak_db: peakDb};
}
"""


def _beeps(path: str) -> tuple[list[int], list[float]]:
    """Chromium's fake microphone in a recording: the 20 ms frames where a beep starts (RMS past 1000) and
    the dominant frequency (200-3400 Hz) of the 100 ms from each start."""
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 1000
    # A start follows 100 ms of quiet (a beep may dip for a frame); whole beeps only: not one the recording
    # began in, nor one cut short by its end.
    starts = [i for i in range(5, len(loud) - 5) if loud[i] and not loud[i - 5 : i].any()]
    pitches = []
    for i in starts:
        piece = samples[i * size : i * size + rate // 10]
        spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece))))
        freqs = np.fft.rfftfreq(len(piece), 1 / rate)
        band = (freqs >= 200) & (freqs <= 3400)
        pitches.append(float(freqs[band][np.argmax(spectrum[band])]))
    return starts, pitches


def _widget_key(t: Any, origins: list[str]) -> str:
    with t.client() as client:
        r = client.post("/v1/widget-keys", json={"queue_ids": [t.queue_id], "origins": origins})
        assert r.status_code == 201, r.text
        return str(r.json()["public_key"])


def _watch(page: Any) -> list[str]:
    """Uncaught exceptions and console errors/warnings of the page: the widget must have none."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    return problems


async def test_widget_calls_an_agent_and_they_hear_each_other(
    first_call_stack: Stack, tmp_path: Path
) -> None:
    stack = first_call_stack
    t = await asyncio.to_thread(make_tenant, stack.api)
    # Only the API's own origin (where the demo page is served) may use this key: the browser's Origin passes.
    public = await asyncio.to_thread(_widget_key, t, [stack.api])
    async with AgentSession(
        stack.api,
        await asyncio.to_thread(t.token, "agent0@example.com"),
        auto_answer=True,
        play=tone_wav(tmp_path / "agent.wav", AGENT_HZ),
        play_loop=True,
        record=tmp_path / "agent-{contact_id}.wav",
    ) as agent:
        await agent.login(state="available")
        async with chromium.launch(tmp_path / "chromium-profile") as browser:
            page = await browser.new_page()
            problems = _watch(page)
            try:
                await page.goto(f"{stack.api}/widget/?key={public}&queue=Support")
                call = page.locator("#call-us .sb-call")
                hang_up = page.locator("#call-us .sb-hangup")
                assert await call.inner_text() == "Call us" and await hang_up.is_hidden()
                await call.click()

                offer = await next_of(agent, ContactOffer, timeout=20)
                assert offer.context.caller.name == "Web caller"
                await next_of(agent, ContactConnected)
                await page.wait_for_function("sbWidget.state === 'connected'", timeout=10000)
                assert await hang_up.is_visible() and await call.is_disabled()

                # Agent -> browser: the agent's 1 kHz is what the widget's <audio> element plays.
                heard = await asyncio.wait_for(page.evaluate(MEASURE_JS, 1500), 10)
                assert abs(heard["peak_hz"] - AGENT_HZ) < 15 and heard["peak_db"] > -60, heard

                await hang_up.click()
                ended = await next_of(agent, ContactEnded)
                assert ended.by == "caller", ended
                await page.wait_for_function("sbWidget.state === 'ended'", timeout=5000)
                assert await call.inner_text() == "Call ended" and await hang_up.is_hidden()
                assert await page.evaluate("sbWidget.pc === null && sbWidget.ws === null")
                states = await page.evaluate("sbWidget.states")
                assert states[0] == "calling" and "connected" in states and states[-1] == "ended", states

                # Browser -> agent: Chromium's fake microphone beeps (400 Hz, 20 ms every 500 ms); the
                # agent's recording has those beeps, at that pitch and pace. On a starved machine audio
                # comes short (at load 15 a recording had a tenth less audio than time: beeps 0.44-0.46 s
                # apart) and a beep is a single 20 ms frame, so one frame lost loses a beep (a 1 s gap): the
                # pace is the shortest gap, and no more than one beep in a row may be missing.
                recorded = await next_of(agent, Recorded)
                starts, pitches = _beeps(recorded.path)
                assert recorded.seconds > 1.0 and len(starts) >= 2, (recorded, starts)
                assert all(abs(p - BEEP_HZ) < 25 for p in pitches), pitches
                gaps = np.diff(starts) * 0.02
                assert 0.35 <= min(gaps) <= 0.6 and max(gaps) <= 1.2, gaps
                assert not problems, problems
            finally:
                await page.close()
    record = await wait_contact(t, offer.contact_id, "ended")
    assert record["caller_name"] == "Web caller" and record["queue_id"] == t.queue_id, record


async def test_widget_shows_why_it_cannot_call(first_call_stack: Stack, tmp_path: Path) -> None:
    t = await asyncio.to_thread(make_tenant, first_call_stack.api)
    # A key for another site: the page's origin is refused when the widget asks for a token.
    public = await asyncio.to_thread(_widget_key, t, ["https://shop.example.com"])
    async with chromium.launch(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        problems = _watch(page)
        try:
            await page.goto(f"{first_call_stack.api}/widget/?key={public}&queue=Support")
            await page.click("#call-us .sb-call")
            await page.wait_for_function("sbWidget.state === 'failed'", timeout=10000)
            message = await page.inner_text("#call-us .sb-message")
            assert "may not be used from the origin" in message, message
            # Ready to try again, nothing left open.
            assert await page.inner_text("#call-us .sb-call") == "Call us"
            assert await page.is_enabled("#call-us .sb-call")
            assert await page.evaluate("sbWidget.ws === null && sbWidget.mic === null")
            # The 403 is the browser's own console line for a failed fetch, not the widget's.
            assert not [p for p in problems if "403" not in p], problems
        finally:
            await page.close()


async def test_widget_shows_the_agent_hanging_up(first_call_stack: Stack, tmp_path: Path) -> None:
    stack = first_call_stack
    t = await asyncio.to_thread(make_tenant, stack.api)
    public = await asyncio.to_thread(_widget_key, t, [])
    async with AgentSession(
        stack.api, await asyncio.to_thread(t.token, "agent0@example.com"), auto_answer=True
    ) as agent:
        await agent.login(state="available")
        async with chromium.launch(tmp_path / "chromium-profile") as browser:
            page = await browser.new_page()
            problems = _watch(page)
            try:
                await page.goto(f"{stack.api}/widget/?key={public}&queue=Support")
                await page.click("#call-us .sb-call")
                offer = await next_of(agent, ContactOffer, timeout=20)
                await next_of(agent, ContactConnected)
                await page.wait_for_function("sbWidget.state === 'connected'", timeout=10000)
                await agent.hangup(offer.contact_id)
                ended = await next_of(agent, ContactEnded)
                assert ended.by == "agent", ended
                # The `ended` push of the caller's leg: the widget shows it and lets go of everything.
                await page.wait_for_function("sbWidget.state === 'ended'", timeout=5000)
                assert await page.inner_text("#call-us .sb-call") == "Call ended"
                assert await page.is_hidden("#call-us .sb-hangup")
                assert await page.evaluate("sbWidget.pc === null && sbWidget.ws === null")
                assert not problems, problems
            finally:
                await page.close()
