"""Item 1 of issue 23 end to end: an agent on another machine reaches `switchboard up --public-url` over
HTTPS and WSS, gets the microphone (a secure origin), and talks both ways with a SIP caller over ICE on a
non-loopback address, with coturn handing out relays for the desk's short-lived credentials.

The whole scenario (tests/e2e/browser/home_agent.py) runs in a network namespace of its own whose only
non-loopback interface is a veth made for it: the machine's real interfaces are never used, nothing can
leave the namespace, and the address is one the runtime finds the way it finds any machine's address."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.browser import chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium"),
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
        reason="needs root, unshare and ip for a network namespace of its own",
    ),
]

REPO = Path(__file__).resolve().parents[3]
ADDRESS = "10.77.0.1"  # inside the namespace only
NAMESPACE = (
    "ip link set lo up && ip link add sb-home type veth peer name sb-peer && "
    f"ip addr add {ADDRESS}/24 dev sb-home && ip link set sb-home up && ip link set sb-peer up && "
    'exec "$0" -m tests.e2e.browser.home_agent "$1"'
)


@pytest.mark.timeout(360)
def test_an_agent_at_home_takes_a_call_over_https(tmp_path: Path) -> None:
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", NAMESPACE, sys.executable, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=330,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    banner = found.pop("banner")
    # The runtime found the namespace's only non-loopback address and served the public URL there.
    assert found["addresses"] == [ADDRESS]
    assert found["healthz"] == 200  # verified against the self-signed certificate: it names the address
    assert found["origin"].startswith(f"https://{ADDRESS}:") and found["secure_context"] is True
    assert "Self-signed certificate" in banner and "SSL_CERT_FILE" in banner
    # The call's media flows between host candidates on that address, not loopback.
    assert found["pair"]["local"] == ADDRESS and found["pair"]["remote"] == ADDRESS, found["pair"]
    assert abs(found["heard"]["peak_hz"] - 600) < 15 and found["heard"]["peak_db"] > -60, found["heard"]
    assert found["caller_frames"] > 50 and found["caller_loudest_rms"] > 300, found
    assert found["page_errors"] == []
    if shutil.which("turnserver"):
        (server,) = found["ice_servers"]
        assert server["urls"][0].startswith(f"turn:{ADDRESS}:")
        expires = int(server["username"].split(":")[0])
        assert 0 < expires - found["started_at"] <= 900  # short-lived: SB_TURN_TTL_S, 600 s by default
        assert found["relay_candidates"], found["turn_log"]
    else:
        assert found["ice_servers"] == []  # no TURN without coturn: `make test-peers` installs it
    assert found["exit"] == 0
