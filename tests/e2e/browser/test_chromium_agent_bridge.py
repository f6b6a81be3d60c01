"""Headless Chromium as the agent, bridged to a SIPp caller through the real API and media services.

The browser signs in over /v1/ws with an agent token issued by the real API and offers a WebRTC leg whose
`call_id` names the SIPp caller's call (so the worker holding the call answers it); the test answers the
SIP call and bridges the two legs with the media `bridge` command, as tests/e2e/media/test_sipp_bridge.py
does for an aiortc agent. SIPp does the SIP signalling; its SDP points the audio at a UDP socket of this
test, which sends and receives the caller's RTP (PCMU), so audio is checked on both sides:
- browser -> caller: the page sends a 1 kHz WebAudio oscillator (not the fake capture device's beep: a
  steady tone of a known frequency); the test hears 1 kHz in the RTP reaching the caller's socket;
- caller -> browser: the socket sends 600 Hz; an AnalyserNode on the remote stream in the page reports the
  dominant frequency, 600 Hz, and nothing of it before the caller spoke.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.messages import Reply, decode, encode
from services.kernel.waits import flushed
from services.media.rtp.g711 import ulaw_decode, ulaw_encode
from services.runtime.embedded import free_port
from tests.sipp_uac import sipp_command, uac_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

AGENT_TONE_HZ = 1000.0
CALLER_TONE_HZ = 600.0

# The page: sign in over the websocket, offer a leg for the caller's call with a WebAudio tone as the
# microphone, play the remote stream in an <audio> element (Chrome decodes nothing otherwise) and measure it.
PAGE_JS = r"""
window.agentTest = {
  messages: [],
  async start(wsUrl, token, callId, toneHz, opusOnly) {
    const ctx = new AudioContext();
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = toneHz;
    const gain = ctx.createGain();
    gain.gain.value = 0.4;
    const mic = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(mic);
    osc.start();
    this.ctx = ctx;
    const ws = new WebSocket(wsUrl + "?token=" + encodeURIComponent(token));
    this.ws = ws;
    ws.onmessage = (e) => this.messages.push(JSON.parse(e.data));
    const next = (type, ms = 10000) => new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = () => {
        const i = this.messages.findIndex((m) => m.type === type || m.type === "error");
        if (i >= 0) {
          const m = this.messages.splice(i, 1)[0];
          return m.type === "error" ? reject(new Error(m.code + ": " + m.reason)) : resolve(m);
        }
        if (Date.now() - t0 > ms) return reject(new Error("no " + type + " within " + ms + " ms"));
        setTimeout(poll, 20);
      };
      poll();
    });
    const ready = await next("ready");
    const pc = new RTCPeerConnection({iceServers: []});
    this.pc = pc;
    pc.addTrack(mic.stream.getAudioTracks()[0], mic.stream);
    if (opusOnly) {
      // An offer with Opus and no G.711: the platform transcodes (as a browser that dropped G.711 makes it).
      const keep = RTCRtpReceiver.getCapabilities("audio").codecs.filter(
        (c) => c.mimeType === "audio/opus" || c.mimeType === "audio/telephone-event");
      pc.getTransceivers()[0].setCodecPreferences(keep);
    }
    const remote = new Promise((resolve) => { pc.ontrack = (e) => resolve(e.streams[0]); });
    await pc.setLocalDescription(await pc.createOffer());
    // No trickle: the offer carries the host candidates (loopback gathers in a few milliseconds).
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, 3000);
    });
    ws.send(JSON.stringify({v: 1, type: "offer", sdp: pc.localDescription.sdp, call_id: callId, ref: "o1"}));
    const answer = await next("answer");
    await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
    const stream = await remote;
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.srcObject = stream;
    document.body.appendChild(audio);
    await audio.play();
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 8192;
    this.analyser.smoothingTimeConstant = 0;
    ctx.createMediaStreamSource(stream).connect(this.analyser);
    await new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = () => {
        if (pc.connectionState === "connected") return resolve();
        if (pc.connectionState === "failed" || Date.now() - t0 > 10000)
          return reject(new Error("peer connection " + pc.connectionState));
        setTimeout(poll, 20);
      };
      poll();
    });
    const codec = answer.sdp.match(/a=rtpmap:\d+ ([A-Za-z0-9]+)\//)[1];
    const fmtp = (answer.sdp.match(/a=fmtp:\d+ .*maxaveragebitrate.*/) || [""])[0];
    return {agent_id: ready.agent_id, leg_id: answer.leg_id, codec, fmtp};
  },
  // Average the spectrum of the remote audio over `ms`: the dominant frequency (200-3400 Hz, the
  // telephone band), the level (dB) at the asked frequencies and the RMS of the waveform.
  async measure(ms, freqs) {
    const an = this.analyser, rate = this.ctx.sampleRate;
    const spectrum = new Float32Array(an.frequencyBinCount), wave = new Float32Array(an.fftSize);
    const sum = new Float64Array(an.frequencyBinCount);
    let n = 0, energy = 0, count = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      an.getFloatFrequencyData(spectrum);
      for (let i = 0; i < spectrum.length; i++) sum[i] += Math.pow(10, spectrum[i] / 10);
      an.getFloatTimeDomainData(wave);
      for (const x of wave) { energy += x * x; count++; }
      n++;
      await new Promise((r) => setTimeout(r, 50));
    }
    const hz = (i) => i * rate / an.fftSize, bin = (f) => Math.round(f * an.fftSize / rate);
    let best = bin(200);
    for (let i = bin(200); i <= bin(3400); i++) if (sum[i] > sum[best]) best = i;
    const db = (f) => 10 * Math.log10(Math.max(sum[bin(f) - 1], sum[bin(f)], sum[bin(f) + 1]) / n + 1e-30);
    return {peak_hz: hz(best), peak_db: db(hz(best)), levels: freqs.map(db), rms: Math.sqrt(energy / count)};
  },
};
"""


def _share(samples: np.ndarray, frequency: float, rate: int = 8000) -> float:
    """Share of the signal's energy at `frequency` (1.0: a pure tone)."""
    x = samples.astype(np.float64)
    if len(x) == 0:
        return 0.0
    n = np.arange(len(x))
    power = abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / rate))) ** 2
    return float(power / ((np.sum(x * x) * len(x) / 2) or 1.0))


class CallerRtp(asyncio.DatagramProtocol):
    """The caller's audio: the socket SIPp's SDP names. It records what the platform sends and, once it
    knows the platform's RTP address (the first packet's source), can send a PCMU tone back from the same
    socket (so the platform's symmetric-RTP latching keeps this address)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, int, bytes]] = []
        self.remote: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[0] >> 6 == 2 and 72 > (data[1] & 0x7F):  # RTP, not RTCP
            self.remote = self.remote or addr
            count = data[0] & 0x0F
            self.received.append((time.monotonic(), data[1] & 0x7F, data[12 + 4 * count :]))

    def audio_since(self, since: float) -> np.ndarray:
        pcm = [ulaw_decode(p) for t, pt, p in self.received if t >= since and pt == 0]
        return np.concatenate(pcm) if pcm else np.zeros(0, dtype=np.int16)

    async def send_tone(self, frequency: float, seconds: float) -> None:
        assert self.transport is not None and self.remote is not None
        ssrc, start = 0x5B0A7D01, time.monotonic()
        frames = int(seconds / 0.02)
        for i in range(frames):
            t = (np.arange(160) + i * 160) / 8000
            payload = ulaw_encode((9000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16))
            header = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, ssrc)
            self.transport.sendto(header + payload, self.remote)
            # Paced on the monotonic clock: a late wake-up sends the next frame sooner, not all later.
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))


def _scenario(rtp_port: int) -> str:
    """INVITE offering PCMU with the audio at this test's socket, ACK, then wait for the platform's BYE."""
    caller = "sipp <sip:+15550177@[local_ip]:[local_port]>"
    return uac_scenario(rtp_port=rtp_port, caller=caller, bye_timeout_ms=30000, name="browser agent caller")


async def _line(api: str) -> dict[str, str]:
    """A tenant made through the real API: an agent, a queue, a number sent to it, an agent token."""
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        tag = uuid.uuid4().hex[:8]
        r = await http.post("/v1/signup", json={"company": f"Browser {tag}", "email": f"b{tag}@example.com"})
        assert r.status_code == 201, r.text
        http.headers["Authorization"] = f"Bearer {r.json()['api_key']['key']}"
        tenant = r.json()["tenant"]["id"]
        agent = await http.post("/v1/agents", json={"name": "Chromium", "email": f"c{tag}@example.com"})
        assert agent.status_code == 201, agent.text
        queue = await http.post("/v1/queues", json={"name": "Browser"})
        assert queue.status_code == 201, queue.text
        number = "+1555" + str(uuid.uuid4().int)[:8]
        made = await http.post("/v1/numbers", json={"e164": number, "queue_id": queue.json()["id"]})
        assert made.status_code == 201, made.text
        token = await http.post(f"/v1/agents/{agent.json()['id']}/token")
        assert token.status_code == 201, token.text
    return {"tenant": tenant, "agent": agent.json()["id"], "number": number, "token": token.json()["token"]}


async def _wait(predicate: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("codec", ["PCMU", "opus"])
async def test_chromium_agent_and_sipp_caller_hear_each_other(
    infra: Any, api_server: str, media: Any, browser: Any, tmp_path: Path, codec: str
) -> None:
    """PCMU: the browser offers what it offers by default and the platform takes the caller's law.
    opus: the browser offers Opus alone, so the worker transcodes (libopus at 8 kHz both ways)."""
    line = await _line(api_server)
    tenant = line["tenant"]
    loop = asyncio.get_running_loop()
    rtp_port = free_port()
    transport, caller = await loop.create_datagram_endpoint(CallerRtp, local_addr=("127.0.0.1", rtp_port))
    (tmp_path / "caller.xml").write_text(_scenario(rtp_port))
    nc = await nats.connect(infra.nats_url)
    seen: list[Any] = []
    kinds = {"arrived": ev.CallArrived, "ended": ev.CallEnded, "dtmf": ev.CallDtmf}

    async def on_event(msg: Any) -> None:
        kind = kinds.get(msg.subject.rsplit(".", 1)[-1])
        if kind is not None:
            seen.append(msgspec.json.decode(msg.data, type=kind))

    async def command(cmd: Any, name: str) -> Reply:
        reply = await nc.request(f"sb.{tenant}.cmd.media.{name}", encode(cmd), timeout=10)
        return decode(reply.data, Reply)

    await nc.subscribe(f"sb.{tenant}.evt.call.*", cb=on_event)
    await flushed(nc)
    sipp = await asyncio.create_subprocess_exec(
        *sipp_command(),
        "-sf", "caller.xml", "-s", line["number"], f"127.0.0.1:{media.sip_port}",
        "-m", "1", "-timeout", "45", "-timeout_error", "-trace_err",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    page = await browser.new_page()
    try:
        arrived = await _wait(
            lambda: next((e for e in seen if isinstance(e, ev.CallArrived)), None), "call.arrived"
        )
        call_id = arrived.call_id
        assert arrived.to_e164 == line["number"] and arrived.codec == "PCMU"
        assert (await command(ev.MediaAnswer(tenant_id=uuid.UUID(tenant), call_id=call_id), "answer")).ok

        # An http:// page on 127.0.0.1 (a secure context, like the agent desktop) with the test's script.
        await page.goto(f"{api_server}/healthz")
        await page.evaluate(PAGE_JS)
        ws_url = api_server.replace("http://", "ws://") + "/v1/ws"
        started = await asyncio.wait_for(
            page.evaluate(
                "([u, t, c, f, o]) => agentTest.start(u, t, c, f, o)",
                [ws_url, line["token"], str(call_id), AGENT_TONE_HZ, codec == "opus"],
            ),
            30,
        )
        assert started["agent_id"] == line["agent"]
        # PCMU: the caller's law, the bridge adds no PCMU<->PCMA step. Opus: our path codes from and
        # decodes to 8 kHz and says so.
        assert started["codec"] == codec, started
        if codec == "opus":
            assert (
                "maxplaybackrate=8000" in started["fmtp"] and "sprop-maxcapturerate=8000" in started["fmtp"]
            )
        leg_id = uuid.UUID(started["leg_id"])

        # Before the bridge the browser hears nothing of the caller.
        quiet = await page.evaluate("([ms, f]) => agentTest.measure(ms, f)", [600, [CALLER_TONE_HZ]])
        assert quiet["levels"][0] < -80, quiet

        bridged_at = time.monotonic()
        bridge = ev.MediaBridge(tenant_id=uuid.UUID(tenant), call_id=call_id, other_call_id=leg_id)
        reply = await command(bridge, "bridge")
        assert reply.ok, reply

        # 1. browser -> caller: 1.5 s of the page's 1 kHz in the RTP at the caller's socket.
        await _wait(lambda: len(caller.audio_since(bridged_at)) >= 8000 * 2, "2 s of RTP at the caller", 10)
        heard = caller.audio_since(bridged_at)[-12000:]
        rms = float(np.sqrt(np.mean(heard.astype(np.float64) ** 2)))
        assert rms > 500, f"the caller heard near silence (RMS {rms:.0f})"
        assert _share(heard, AGENT_TONE_HZ) > 0.3, "the caller did not hear the browser's 1 kHz"
        assert _share(heard, CALLER_TONE_HZ) < 0.01

        # 2. caller -> browser: the socket speaks 600 Hz; the page's analyser finds it.
        sender = asyncio.create_task(caller.send_tone(CALLER_TONE_HZ, 4.0))
        await asyncio.sleep(0.6)  # jitter buffers fill
        loud = await page.evaluate(
            "([ms, f]) => agentTest.measure(ms, f)", [1500, [CALLER_TONE_HZ, AGENT_TONE_HZ]]
        )
        assert abs(loud["peak_hz"] - CALLER_TONE_HZ) < 15, loud
        assert loud["levels"][0] > -40 and loud["levels"][0] - loud["levels"][1] > 30, loud
        assert loud["rms"] > 0.05, loud
        await asyncio.wait_for(sender, 10)

        # 3. The browser's RFC 4733 digits reach the worker (through the worker's SRTP path) as call.dtmf.
        await page.evaluate("() => agentTest.pc.getSenders()[0].dtmf.insertDTMF('5#', 120, 70)")
        digits = await _wait(
            lambda: (
                [e.digit for e in seen if isinstance(e, ev.CallDtmf) and e.call_id == leg_id] == ["5", "#"]
                and [e for e in seen if isinstance(e, ev.CallDtmf) and e.call_id == leg_id]
            ),
            "the browser's digits",
        )
        assert {d.source for d in digits} == {"rfc4733"}, digits

        # The platform hangs up the caller (SIPp answers the BYE and exits 0), then the agent's leg.
        assert (await command(ev.MediaHangup(tenant_id=uuid.UUID(tenant), call_id=call_id), "hangup")).ok
        out, _ = await asyncio.wait_for(sipp.communicate(), 20)
        assert sipp.returncode == 0, out.decode(errors="replace")[-2000:]
        assert (await command(ev.MediaHangup(tenant_id=uuid.UUID(tenant), call_id=leg_id), "hangup")).ok
        await _wait(
            lambda: {e.call_id for e in seen if isinstance(e, ev.CallEnded)} >= {call_id, leg_id},
            "both ended",
        )
        # The page was told its leg ended, over the websocket.
        await _wait_page(page, "ended")
    except BaseException:
        print(f"--- media log ---\n{media.log_path.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        await page.close()
        transport.close()
        await nc.close()
        if sipp.returncode is None:
            sipp.kill()
            await sipp.wait()


async def _wait_page(page: Any, kind: str) -> None:
    for _ in range(250):
        if await page.evaluate("(k) => agentTest.messages.some((m) => m.type === k)", kind):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the page got no {kind!r}: {await page.evaluate('agentTest.messages')}")
