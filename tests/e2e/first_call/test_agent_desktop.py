"""The agent desktop page (`/agent/`, services/web/agent) in headless Chromium takes a call through the whole
platform: opened with an admin-issued token in the URL (`switchboard agents token`, for headless agents and tests)
it connects, signs in to calls, shows the offer with its context, accepts,
plays the caller (600 Hz, checked with an AnalyserNode on its <audio> element's stream), sends the fake
microphone to the caller (energy on the caller's RTP), restarts ICE mid-call (audio both ways after it, the same
DTLS session), holds and resumes, hangs up and wraps up with a disposition that the contact record keeps."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.runtime.embedded import free_port
from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import PhoneCaller, make_tenant, sipp_uas, trunk_to
from tests.sipp_uac import sipp_command

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
]

# The dominant frequency of the caller's audio as the page plays it, over `ms`.
MEASURE_JS = r"""
async (ms) => {
  const stream = document.getElementById("remote").srcObject;
  const ctx = new AudioContext();
  await ctx.resume();
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  an.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(stream).connect(an);
  const spectrum = new Float32Array(an.frequencyBinCount), sum = new Float64Array(an.frequencyBinCount);
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    an.getFloatFrequencyData(spectrum);
    for (let i = 0; i < spectrum.length; i++) sum[i] += Math.pow(10, spectrum[i] / 10);
  }
  const bin = (f) => Math.round(f * an.fftSize / ctx.sampleRate);
  let best = bin(200);
  for (let i = bin(200); i <= bin(3400); i++) if (sum[i] > sum[best]) best = i;
  const peakHz = best * ctx.sampleRate / an.fftSize, peakDb = 10 * Math.log10(sum[best] + 1e-30);
  await ctx.close();
  return {peak_hz: peakHz, peak_db: peakDb};
}
"""


GOODBYE_FLOW = """\
name: fc-goodbye
start: bye
nodes:
  bye: {type: hangup, prompt: {say: "Thank you for your time. Goodbye."}}
"""


async def _visible(page: Any, selector: str, timeout_s: float = 15.0) -> None:
    await page.wait_for_selector(selector, state="visible", timeout=timeout_s * 1000)


async def _supervisor_steps_in(stack: Any, tenant: Any, page: Any, tmp_path: Path) -> None:
    """The tenant tells its agents when a supervisor steps in (monitor_notice agent): a supervisor listens
    through a desk phone (SIPp, answers at once) and the desk shows it under the caller until it leaves."""
    import shutil

    import switchboard

    from tests.e2e.first_call.test_desk_phone import PICK_UP_AFTER_3S
    from tests.e2e.first_call.test_supervisor_monitor import supervisor_key, switchboard_cli

    if shutil.which("sipp") is None:
        return
    told = await switchboard_cli(stack.api, tenant.key, "settings", "set", "--monitor-notice", "agent")
    assert told["monitor_notice"] == "agent", told
    (tmp_path / "phone.xml").write_text(PICK_UP_AFTER_3S.replace('<pause milliseconds="3000"/>', ""))
    port = free_port()
    phone = await asyncio.create_subprocess_exec(
        *sipp_command(port),
        *["-sf", "phone.xml", "-rtp_echo", "-m", "1", "-timeout", "60"],
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        contact_id = await page.evaluate(
            "agentDesktop.events.filter((m) => m.type === 'contact_offer').pop().contact_id"
        )
        key = await supervisor_key(stack.api, tenant.key)
        async with switchboard.AsyncClient(api_key=key, base_url=stack.api) as client:
            session = await client.contacts.monitor(contact_id, "listen", phone=f"sip:lead@127.0.0.1:{port}")
            await _visible(page, "#monitored")
            assert "listening" in await page.inner_text("#monitored")
            await page.screenshot(path=str(tmp_path / "monitored.png"))
            await client.contacts.monitor(contact_id, "none", session.leg_id)
        await page.wait_for_selector("#monitored", state="hidden", timeout=10000)
        await asyncio.wait_for(phone.wait(), 10)
    finally:
        if phone.returncode is None:
            phone.kill()
            await phone.wait()


# The desk's own reconnection (protocol.js Leg.watch/restart): its leg reports the audio path lost (the
# connection state reads `disconnected`, as Chrome reports it when its ICE checks go unanswered; loopback
# never drops, so the state is made to read so) and the desk restarts ICE for real once it has a socket:
# new ICE credentials both ways, the same DTLS session; then the real state, connected, is reported again.
LOSE_PATH_JS = r"""
() => {
  const leg = [...agentDesktop.legs.values()].find((l) => l.pc && l.pc.connectionState === "connected");
  const ufrags = (sdp) => [...sdp.matchAll(/a=ice-ufrag:(\S+)/g)].map((m) => m[1]);
  const fingerprint = (sdp) => sdp.match(/a=fingerprint:(.+)/)[1];
  window.restartTest = {leg, ufrags, fingerprint, dtls: leg.pc.getSenders()[0].transport, conn: agentDesktop.conn,
    before: {local: ufrags(leg.pc.localDescription.sdp), remote: ufrags(leg.pc.remoteDescription.sdp),
             dtls: fingerprint(leg.pc.remoteDescription.sdp)}};
  Object.defineProperty(leg.pc, "connectionState", {get: () => "disconnected", configurable: true});
  leg.pc.dispatchEvent(new Event("connectionstatechange"));
}
"""
PATH_BACK_JS = r"""
() => {
  const {leg, ufrags, fingerprint, dtls, before, conn} = window.restartTest;
  delete leg.pc.connectionState;  // the real one again
  leg.pc.dispatchEvent(new Event("connectionstatechange"));
  return {
    restarts: leg.restarts, state: leg.pc.connectionState, dtls_state: dtls.state,
    same_dtls: leg.pc.getSenders()[0].transport === dtls, before, new_socket: agentDesktop.conn !== conn,
    after: {local: ufrags(leg.pc.localDescription.sdp), remote: ufrags(leg.pc.remoteDescription.sdp),
            dtls: fingerprint(leg.pc.remoteDescription.sdp)},
  };
}
"""


async def _ice_restart_keeps_the_call(page: Any, caller: PhoneCaller, tmp_path: Path) -> None:
    """The Wi-Fi drops for three seconds: the desk's socket goes too (the browser reports `offline`) and the
    agent sees "reconnecting"; the desk's first restart fails (no socket), it reconnects when the network is
    back and its next restart goes through the new socket: the server answers with new credentials on the
    same leg (same DTLS fingerprint and transport), the agent sees "reconnected", and audio goes on both
    ways (600 Hz heard, the microphone reaching the caller)."""
    await page.evaluate(LOSE_PATH_JS)
    await page.context.set_offline(True)
    await page.wait_for_function(
        "document.getElementById('call-status').textContent.includes('reconnecting')"
    )
    await page.screenshot(path=str(tmp_path / "audio-reconnecting.png"))
    await asyncio.sleep(3.0)  # past the first restart (RESTART_AFTER_MS), which finds no socket
    assert await page.evaluate("window.restartTest.leg.restarts") == 0
    await page.context.set_offline(False)
    await page.wait_for_function("window.restartTest.leg.restarts >= 1", timeout=15000)
    await page.wait_for_function(
        "(() => { const pc = window.restartTest.leg.pc;"
        " return Object.getPrototypeOf(pc).__lookupGetter__('connectionState').call(pc) === 'connected'; })()",
        timeout=10000,
    )
    restarted = await page.evaluate(PATH_BACK_JS)
    assert restarted["restarts"] >= 1 and restarted["state"] == "connected", restarted
    before, after = restarted["before"], restarted["after"]
    assert set(after["local"]).isdisjoint(before["local"]), restarted  # the browser's new credentials
    assert set(after["remote"]).isdisjoint(before["remote"]), restarted  # and the server's
    assert (
        after["dtls"] == before["dtls"] and restarted["same_dtls"] and restarted["dtls_state"] == "connected"
    )
    assert restarted["new_socket"], restarted  # the leg outlived its socket; a new one restarted it
    assert "Call audio reconnected." in await page.inner_text("#call-status")
    await page.screenshot(path=str(tmp_path / "audio-reconnected.png"))
    heard = await asyncio.wait_for(page.evaluate(MEASURE_JS, 1000), 10)
    assert abs(heard["peak_hz"] - 600) < 15 and heard["peak_db"] > -60, heard
    mark = caller.mark()
    await asyncio.sleep(1.0)
    frames = caller.pcm_since(mark).astype(np.float64).reshape(-1, 160)
    assert len(frames) > 30 and np.sqrt(np.mean(frames**2, axis=1)).max() > 300, len(frames)


async def test_agent_desktop_takes_a_call(first_call_stack: Any, tmp_path: Path) -> None:
    tenant = await asyncio.to_thread(make_tenant, first_call_stack.api)
    async with httpx.AsyncClient(
        base_url=first_call_stack.api, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=10
    ) as http:  # a flow the agent can transfer a caller to (before the desk loads its lists)
        assert (await http.post("/v1/flows", json={"definition": GOODBYE_FLOW})).status_code == 201
    token = await asyncio.to_thread(tenant.token, "agent0@example.com")
    caller: PhoneCaller | None = None
    async with chromium.launch(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        try:
            await page.goto(f"{first_call_stack.api}/agent/#token={token}")
            # It connects and signs in to calls as available at once.
            await page.wait_for_function(
                "window.agentDesktop && agentDesktop.state === 'available'", timeout=10000
            )
            assert "token=" not in page.url  # the page takes the token out of the address bar

            caller = PhoneCaller(first_call_stack.sip_port, tenant.number, frequency=600.0)
            await caller.dial()
            await _visible(page, "#offer-panel")
            context = await page.inner_text("#context")
            assert "+15550100" in context and "Ada Caller" in context and "Support" in context, context
            # The leg is made while it rings: accept once it is connected, so audio follows at once.
            await page.wait_for_function(
                "[...agentDesktop.legs.values()].some((l) => l.pc && l.pc.connectionState === 'connected')",
                timeout=10000,
            )
            await page.click("#accept")
            await _visible(page, "#call-panel")
            connected_at = time.monotonic()
            assert "+15550100" in await page.inner_text("#call-number")

            heard = await asyncio.wait_for(page.evaluate(MEASURE_JS, 1500), 10)
            assert abs(heard["peak_hz"] - 600) < 15 and heard["peak_db"] > -60, heard
            # The fake microphone (Chromium's periodic beep) reaches the caller: some loud 20 ms frames.
            mark = caller.mark()
            await asyncio.sleep(1.5)
            frames = caller.pcm_since(mark).astype(np.float64).reshape(-1, 160)
            loud = np.sqrt(np.mean(frames**2, axis=1))
            assert len(frames) > 50 and loud.max() > 300, (len(frames), loud.max())
            await _ice_restart_keeps_the_call(page, caller, tmp_path)

            await page.click("#hold")
            await page.wait_for_function(
                "document.getElementById('hold').getAttribute('aria-pressed') === 'true'"
            )
            await page.click("#hold")
            await page.wait_for_function(
                "document.getElementById('hold').getAttribute('aria-pressed') === 'false'"
            )
            await _supervisor_steps_in(first_call_stack, tenant, page, tmp_path)

            await page.click("#hangup")
            await asyncio.wait_for(caller.ended_by_platform.wait(), 10)
            await _visible(page, "#wrapup-panel")
            await page.select_option("#disposition", "resolved")
            await page.fill("#notes", "taken in the browser test")
            await page.click("#wrap")
            await _visible(page, "#idle-panel")
            talk_s = time.monotonic() - connected_at

            contact_id = await page.evaluate(
                "agentDesktop.events.find((m) => m.type === 'contact_offer').contact_id"
            )
            async with httpx.AsyncClient(
                base_url=first_call_stack.api, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=10
            ) as http:
                for _ in range(50):  # the record is written by the coordinator a moment after wrap-up
                    record = (await http.get(f"/v1/contacts/{contact_id}")).json()
                    if record.get("disposition"):
                        break
                    await asyncio.sleep(0.1)
            assert record["disposition"] == "resolved" and record["notes"] == "taken in the browser test", (
                record
            )
            assert (
                record["outcome"] == "handled" and record["agent_id"] == tenant.agents["agent0@example.com"]
            )
            assert 0 < record["talk_s"] <= talk_s + 1, record

            # The dial box: refused with the reason until an admin lets the agent dial; then a call out
            # through the tenant's trunk (SIPp echoing), hung up from the page.
            port = free_port()
            await asyncio.to_thread(trunk_to, tenant, port)
            uas = await sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo", "-m", "1")
            try:
                await page.fill("#dial-to", "+15550142")
                await page.click("#dial-go")
                await page.wait_for_function("document.getElementById('dial-error').textContent !== ''")
                assert "may not place outbound calls" in await page.inner_text("#dial-error")
                await page.screenshot(path=str(tmp_path / "dial-refused.png"))
                async with httpx.AsyncClient(
                    base_url=first_call_stack.api,
                    headers={"Authorization": f"Bearer {tenant.key}"},
                    timeout=10,
                ) as http:
                    agent_id = tenant.agents["agent0@example.com"]
                    assert (
                        await http.patch(f"/v1/agents/{agent_id}", json={"can_dial": True})
                    ).status_code == 200
                await page.fill("#dial-to", "+15550142")
                await page.click("#dial-go")
                await _visible(page, "#call-panel", 20)
                assert "+15550142" in await page.inner_text("#call-caller")
                heard = await asyncio.wait_for(page.evaluate(MEASURE_JS, 1500), 10)
                assert heard["peak_db"] > -60, heard  # the far end echoes the page's microphone
                await page.screenshot(path=str(tmp_path / "dial-connected.png"))
                # The agent leaves the far end to a flow (a survey or menu): the IVR says goodbye, hangs up.
                await page.click("#transfer-button")
                await page.click("#to-flow-tab")
                await page.select_option("#transfer-flow", "fc-goodbye")
                await page.screenshot(path=str(tmp_path / "transfer-to-flow.png"))
                await page.click("#transfer-go")
                await _visible(page, "#wrapup-panel")
                assert await asyncio.wait_for(uas.wait(), 20) == 0  # the flow's hangup: BYE to the far end
                outbound = await page.evaluate(
                    "agentDesktop.events.filter((m) => m.type === 'contact_offer').pop().contact_id"
                )
                async with httpx.AsyncClient(
                    base_url=first_call_stack.api,
                    headers={"Authorization": f"Bearer {tenant.key}"},
                    timeout=10,
                ) as http:
                    moved = (await http.get(f"/v1/contacts/{outbound}")).json()
                assert moved["direction"] == "outbound" and moved["transfers"][-1]["to_flow"] == "fc-goodbye"
                assert "post_call_flow" in [e["event"] for e in moved["timeline"]]
            finally:
                if uas.returncode is None:
                    uas.kill()
                    await uas.wait()
            assert not problems, problems
        finally:
            if caller is not None:
                caller.close()
            await page.close()
