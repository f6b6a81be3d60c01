"""The README's first calls, as shipped in docs/examples/sipp/: SIPp plays a voice (Debian's g711a.pcap)
that the agent records, hears the agent's file (proved with -rtp_echo: it comes back into the recording),
and presses 1 on the demo number's menu with an RFC 4733 digit (dtmf_2833_1.pcap)."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactConnected, ContactOffer, Recorded

from services.runtime.demo import ensure_demo
from services.runtime.embedded import free_port
from tests.e2e.first_call.conftest import make_tenant, next_of, tone, tone_power, wait_contact

SCENARIOS = Path(__file__).resolve().parents[3] / "docs" / "examples" / "sipp"
PCAPS = Path("/usr/share/sip-tester")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("sipp") is None or not (PCAPS / "g711a.pcap").exists(),
        reason="sipp and its pcaps (Debian sip-tester) are not installed",
    ),
]
AGENT_HZ = 1000.0


async def _sipp(cwd: Path, number: str, sip_port: int, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp", *args, "-s", number, f"127.0.0.1:{sip_port}", "-m", "1", "-nostdin", "-i", "127.0.0.1",
        "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()), "-timeout", "60",
        "-timeout_error", cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 70)
    return proc.returncode or 0, out.decode(errors="replace")[-2000:]


def _samples(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


async def test_the_first_call_is_heard_both_ways(first_call_stack: Any, tmp_path: Path) -> None:
    stack = first_call_stack
    t = make_tenant(stack.api)
    agent_file = tmp_path / "agent.wav"
    with wave.open(str(agent_file), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(AGENT_HZ, 1.0).tobytes())
    async with AgentSession(
        stack.api,
        t.token("agent0@example.com"),
        auto_answer=True,
        play=agent_file,
        play_loop=True,
        record=tmp_path / "{contact_id}.wav",
    ) as agent:
        await agent.login(state="available")
        # 1. The shipped scenario as the README runs it: the caller's recorded voice reaches the agent.
        calling = asyncio.ensure_future(
            _sipp(tmp_path, t.number, stack.sip_port, "-sf", str(SCENARIOS / "first-call.xml"))
        )
        offer = await next_of(agent, ContactOffer)
        await next_of(agent, ContactConnected, lambda e: e.contact_id == offer.contact_id)
        code, out = await calling
        assert code == 0, out
        recorded = await next_of(agent, Recorded, lambda e: e.contact_id == offer.contact_id)
        voice, rate = _samples(recorded.path)
        speech = voice[rate : 6 * rate].astype(np.float64)
        assert float(np.sqrt(np.mean(speech**2))) > 800, "the caller's voice is not in the recording"
        assert tone_power(voice[rate : 6 * rate], AGENT_HZ, rate) < 0.2  # a voice, not the agent's tone
        await agent.wrap_up(offer.contact_id, "resolved")
        # 2. With -rtp_echo the caller returns what it hears: the agent's tone comes back into the recording.
        calling = asyncio.ensure_future(
            _sipp(tmp_path, t.number, stack.sip_port, "-sn", "uac", "-rtp_echo", "-d", "3000")
        )
        offer = await next_of(agent, ContactOffer)
        code, out = await calling
        assert code == 0, out
        recorded = await next_of(agent, Recorded, lambda e: e.contact_id == offer.contact_id)
        echo, rate = _samples(recorded.path)
        assert tone_power(echo[rate // 2 : int(2.5 * rate)], AGENT_HZ, rate) > 0.3, (
            "the caller did not hear the agent"
        )


async def test_pressing_1_on_the_demo_menu_reaches_support(first_call_stack: Any, tmp_path: Path) -> None:
    stack = first_call_stack
    demo = await ensure_demo(stack.api, tmp_path)
    code, out = await _sipp(tmp_path, demo.number, stack.sip_port, "-sf", str(SCENARIOS / "demo-press-1.xml"))
    assert code == 0, out

    auth = {"Authorization": f"Bearer {demo.api_key}"}
    tenant = SimpleNamespace(client=lambda: httpx.Client(base_url=stack.api, headers=auth, timeout=10))
    with tenant.client() as client:
        (latest, *_) = client.get("/v1/contacts", params={"limit": 1}).json()["items"]
    done = await wait_contact(tenant, latest["id"], "abandoned")
    assert done["dialled"] == demo.number and done["ivr_digits"] == "1"
    assert done["ivr_path"] == ["welcome", "menu", "support"] and done["queue_name"] == "Support"
    assert done["outcome"] == "abandoned_in_queue"
