"""An agent at home, in one network namespace of its own (run by test_home_agent.py as
`unshare -n ... python -m tests.e2e.browser.home_agent OUT_DIR`): `switchboard up --public-url https://ADDR`
on the namespace's only non-loopback address (a veth, found with the socket APIs like the runtime finds
it), with a self-signed certificate and coturn; headless Chromium opens the agent desktop at that HTTPS
origin, trusting the certificate by its key (the test's stand-in for the documented trust steps), signs in,
takes a SIP caller's call with the fake microphone and hears it; a relay-only peer connection gets a TURN
relay candidate with the short-lived credentials the desk received. Nothing leaves the namespace.
Prints one JSON object of findings; the test asserts on it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.runtime.embedded import free_port
from services.runtime.public import machine_addresses
from tests.e2e.browser import chromium
from tests.e2e.first_call.conftest import PhoneCaller, make_tenant
from tests.e2e.first_call.test_agent_desktop import MEASURE_JS

REPO = Path(__file__).resolve().parents[3]

# Gathers candidates through the desk's TURN servers only: a `relay` candidate means coturn accepted the
# short-lived credentials and allocated a relay.
RELAY_JS = r"""
async () => {
  const pc = new RTCPeerConnection({iceServers: agentDesktop.iceServers, iceTransportPolicy: "relay"});
  pc.createDataChannel("probe");
  const found = [];
  const done = new Promise((resolve) => {
    pc.onicecandidate = (e) => { if (e.candidate) found.push(e.candidate.candidate); else resolve(); };
    setTimeout(resolve, 8000);
  });
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  pc.close();
  return found;
}
"""

# The local address of the agent leg's selected candidate pair: where the call's media really flows. The
# transport's selectedCandidatePairId is the source of truth; a pair's `nominated` flag can still be false
# in the first stats after "connected" (CI saw no nominated pair once), so the page waits for a selection.
PAIR_JS = r"""
async () => {
  const leg = [...agentDesktop.legs.values()].find((l) => l.pc && l.pc.connectionState === "connected");
  for (let i = 0; i < 50; i++) {
    const stats = await leg.pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && stats.get(pairId);
    if (pair) {
      const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
      return {local: local.address, local_type: local.candidateType, remote: remote.address};
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {local: null, local_type: null, remote: null};
}
"""


def spki_hash(cert: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value: base64 SHA-256 of the key's SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def wait_up(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while "Switchboard is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"switchboard up did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


async def agent_takes_a_call(api: str, sip_port: int, addr: str, cert: Path, out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    tenant = await asyncio.to_thread(make_tenant, api)
    token = await asyncio.to_thread(tenant.token, "agent0@example.com")
    flags = [f for f in chromium.CHROMIUM_FLAGS if f != "--allow-loopback-in-peer-connection"]
    flags.append(f"--ignore-certificate-errors-spki-list={spki_hash(cert)}")
    from playwright.async_api import async_playwright

    caller: PhoneCaller | None = None
    async with async_playwright() as p:
        browser = await p.chromium.launch_persistent_context(
            str(out / "chromium-profile"), executable_path=chromium.CHROMIUM, args=flags, headless=True
        )
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(f"{api}/agent/#token={token}")
            await page.wait_for_function(
                "window.agentDesktop && agentDesktop.state === 'available'", timeout=20000
            )
            found["secure_context"] = await page.evaluate("window.isSecureContext")
            found["origin"] = await page.evaluate("location.origin")
            found["ice_servers"] = await page.evaluate("agentDesktop.iceServers")
            if found["ice_servers"]:
                relay = await page.evaluate(RELAY_JS)
                found["relay_candidates"] = [c for c in relay if " typ relay " in c]
            caller = PhoneCaller(sip_port, tenant.number, frequency=600.0, host=addr)
            await caller.dial()
            await page.wait_for_selector("#offer-panel", state="visible", timeout=15000)
            await page.wait_for_function(
                "[...agentDesktop.legs.values()].some((l) => l.pc && l.pc.connectionState === 'connected')",
                timeout=15000,
            )
            await page.click("#accept")
            await page.wait_for_selector("#call-panel", state="visible", timeout=10000)
            found["pair"] = await page.evaluate(PAIR_JS)
            found["heard"] = await asyncio.wait_for(page.evaluate(MEASURE_JS, 1500), 15)
            mark = caller.mark()
            await asyncio.sleep(1.5)
            frames = caller.pcm_since(mark).astype(np.float64)
            frames = frames[: len(frames) // 160 * 160].reshape(-1, 160)
            found["caller_frames"] = len(frames)
            found["caller_loudest_rms"] = (
                float(np.sqrt(np.mean(frames**2, axis=1)).max()) if len(frames) else 0.0
            )
            await page.screenshot(path=str(out / "home-agent-call.png"))
            await page.click("#hangup")
            await asyncio.wait_for(caller.ended_by_platform.wait(), 10)
            found["page_errors"] = problems
        finally:
            if caller is not None:
                caller.close()
            await browser.close()
    return found


def main(out: Path) -> int:
    addresses = machine_addresses()
    if not addresses:
        print(json.dumps({"error": "no non-loopback address in this namespace"}))
        return 1
    addr = addresses[0]
    data = Path(tempfile.mkdtemp(prefix="sbhome-"))  # not under pytest's tmp (see the common pitfalls)
    http_port, sip_port, turn_port = free_port(), free_port(), free_port()
    log = out / "switchboard-up.log"
    argv = [sys.executable, "-m", "services.runtime", "--data-dir", str(data)]
    argv += ["--http-port", str(http_port), "--sip-port", str(sip_port), "--bind", addr]
    argv += ["--public-url", f"https://{addr}:{http_port}"]
    if shutil.which("turnserver"):
        argv += ["--turn", "--turn-port", str(turn_port)]
    argv += ["--media-workers", "1", "--api-workers", "1", "--services", "api,media,routing,contacts"]
    env = {**os.environ, "SB_LOG_LEVEL": "warning", "NO_COLOR": "1"}
    started = time.monotonic()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    found: dict[str, Any] = {"address": addr, "addresses": addresses, "started_at": time.time()}
    try:
        wait_up(log, proc, 180)
        found["up_s"] = round(time.monotonic() - started, 1)
        cert = data / "tls" / "self-signed.crt"
        api = f"https://{addr}:{http_port}"
        # Verified against the certificate itself: it must name the address agents open.
        found["healthz"] = httpx.get(f"{api}/healthz", verify=str(cert), timeout=5).status_code
        # The helpers' httpx clients trust it the same way (SSL_CERT_FILE).
        os.environ["SSL_CERT_FILE"] = str(cert)
        found["banner"] = log.read_text(errors="replace")
        found.update(asyncio.run(agent_takes_a_call(api, sip_port, addr, cert, out)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        found["exit"] = proc.returncode
        found["turn_log"] = [
            line for line in log.read_text(errors="replace").splitlines() if line.startswith("turn")
        ][:40]
        shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
