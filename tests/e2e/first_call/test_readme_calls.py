"""The README's first calls, as shipped in docs/examples/sipp/. The quick start run as written, by bash in a
fresh shell (a new config home, the installed `switchboard` on PATH): the tenant's first five minutes, then
"Take a first call" with `agent connect` and the SIPp scenario that plays a voice (Debian's g711a.pcap),
which the agent records. Only the platform's address differs from the README's (the stack's ports). Also:
the caller hears the agent's file (proved with -rtp_echo: it comes back into the recording), and presses 1
on the demo number's menu with an RFC 4733 digit (dtmf_2833_1.pcap)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tomllib
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from switchboard import AgentSession
from switchboard.agent_events import ContactOffer, Recorded

from services.runtime.demo import ensure_demo
from tests.e2e.first_call.conftest import make_tenant, next_of, tone, tone_power, wait_contact
from tests.sipp_uac import sipp_command
from tests.unit.docs.doc_commands import REPO, fenced_blocks

README = REPO / "README.md"
SCENARIOS = REPO / "docs" / "examples" / "sipp"
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
        *sipp_command(), *args, "-s", number, f"127.0.0.1:{sip_port}", "-m", "1", "-timeout", "60",
        "-timeout_error", cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 70)
    return proc.returncode or 0, out.decode(errors="replace")[-2000:]


def _samples(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def _readme_block(heading: str, containing: str) -> list[str]:
    """The first sh block after the README's `heading` that has a line with `containing`, line by line."""
    text = README.read_text().splitlines()
    start = text.index(heading) + 1
    for lang, first, lines in fenced_blocks(README):
        if lang == "sh" and first > start and any(containing in line for line in lines):
            return [line for line in lines if line.strip()]
    raise AssertionError(f"no sh block with {containing!r} after {heading!r}")


async def _bash(line: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "bash", "-c", line, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _release_numbers(api: str, profiles: Path) -> None:
    """The README's number is fixed: give it back, so that the steps can run again on the same database."""
    if not profiles.exists():
        return
    key = tomllib.loads(profiles.read_text()).get("default", {}).get("api_key")
    if not key:
        return
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for number in client.get("/v1/numbers").json()["items"]:
            assert client.delete(f"/v1/numbers/{number['id']}").status_code == 204


@pytest.mark.timeout(240)  # thirteen CLI runs (an interpreter each), then a 10 s call
async def test_the_readme_quick_start_runs_as_written(first_call_stack: Any, tmp_path: Path) -> None:
    stack = first_call_stack
    first_minutes = _readme_block("## A tenant's first five minutes", "switchboard signup")
    route, voice, connect = _readme_block("## Take a first call", "agent connect")
    (call,) = _readme_block("## Take a first call", "first-call.xml")
    call = call.replace("127.0.0.1:5060", f"127.0.0.1:{stack.sip_port}")  # the stack's SIP port
    assert call.startswith("sipp ") and "--max-calls 1" in connect
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        SB_API_URL=stack.api,  # the README's platform is on the default address; this one is not
    )
    (tmp_path / "docs").symlink_to(SCENARIOS.parents[1])  # the README runs from the repository's root
    outputs: dict[str, str] = {}
    try:
        for line in [*first_minutes, route, voice]:
            step = await _bash(line, env, tmp_path)
            out, err = await asyncio.wait_for(step.communicate(), 60)
            assert step.returncode == 0, (line, out, err)
            outputs[line.split("#")[0].strip()] = out.decode()
        # What the first five minutes printed, where the README says what a step does.
        signup = next(v for k, v in outputs.items() if k.startswith("switchboard signup"))
        assert "Signed up Acme Support" in signup and "sbk_" in signup
        for email in ("ada@acme.example", "bo@acme.example", "cy@acme.example"):
            assert email in outputs["switchboard agents list"]
        assert outputs["switchboard agents list"].count("Home agents") == 2  # Ada and Bo, put on the site
        assert "seat-hours" in outputs["switchboard usage"]
        assert "now goes straight to queue Sales" in outputs[route]
        agent = await _bash(connect, env, tmp_path)
        seen = b""
        while b"available" not in seen:  # signed in and taking calls before the phone rings
            seen += await asyncio.wait_for(agent.stdout.readline(), 30)  # type: ignore[union-attr]
        caller = await _bash(call, env, tmp_path)
        out, err = await asyncio.wait_for(caller.communicate(), 60)
        assert caller.returncode == 0, (out[-2000:], err[-2000:])
        printed, err = await asyncio.wait_for(agent.communicate(), 30)  # --max-calls 1: it exits
        printed = (seen + printed).decode()
        assert agent.returncode == 0, (printed, err)
        events = [line.split()[1] for line in printed.splitlines() if len(line.split()) > 1]
        for event in ("offer", "connected", "ended", "recorded"):
            assert event in events, printed
        assert events.index("ended") < events.index("recorded"), printed
        (recording,) = (tmp_path / "calls").glob("*.wav")
        heard, rate = _samples(str(recording))
        speech = heard[rate : 6 * rate].astype(np.float64)
        assert float(np.sqrt(np.mean(speech**2))) > 800, "the caller's voice is not in Ada's recording"
        listed = await _bash("switchboard contacts list", env, tmp_path)
        out, _ = await asyncio.wait_for(listed.communicate(), 30)
        assert b"Ada Lovelace" in out and recording.stem in out.decode(), out
    finally:
        await asyncio.to_thread(
            _release_numbers, stack.api, tmp_path / "config" / "switchboard" / "profiles.toml"
        )


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
        # With -rtp_echo the caller returns what it hears: the agent's tone comes back into the recording.
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
