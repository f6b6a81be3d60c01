"""A recorded call through the whole platform: a SIPp caller (its audio from this test's socket, 600 Hz)
reaches a headless agent (`switchboard agent connect --play`, 1 kHz) through a queue that records every
call; the recording service (its own process) stores it. Checked on the stored, encrypted recording,
downloaded through a signed URL: the caller's tone on the left channel, the agent's on the right, and no
audio at all in the span paused through the API. Then kill -9 of the recording service during a call: once
it is back, the recording is complete (not partial), nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import numpy as np
import pytest

from services.media.rtp.g711 import G711
from services.runtime.embedded import free_port
from tests.e2e.first_call.conftest import make_tenant, tone_power
from tests.e2e.first_call.test_agent_connect import SWITCHBOARD, CallerRtp, _scenario, _tone_wav
from tests.service_procs import service_env
from tests.sipp_uac import sipp_command

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

CALLER_HZ, AGENT_HZ = 600.0, 1000.0


def with_recording_service(stack: Any, infra: Any) -> Iterator[Any]:
    """`stack` plus the recording service (same data dir as the API: one master key, one store), with
    durable consumers of its own."""
    durable = f"rec-{stack.sip_port}"
    name = "recording"
    stack.envs[name] = service_env(infra, SB_SERVICE_NAME=name, SB_RECORDING_DURABLE=durable)
    stack.modules[name] = "services.recording"
    stack.logs[name] = infra.data_dir / f"recording-{durable}.log"
    stack.logs[name].touch()
    stack.start(name)
    try:
        yield stack
    finally:
        proc = stack.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        asyncio.run(_drop(infra.nats_url, durable))


@pytest.fixture(scope="module")
def recording_stack(first_call_stack: Any, infra: Any) -> Iterator[Any]:
    yield from with_recording_service(first_call_stack, infra)


async def _drop(nats_url: str, durable: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        for stream, name in (("SB_EVENTS", f"{durable}-calls"), ("SB_RECORDING_CHUNKS", f"{durable}-ends")):
            try:
                await asyncio.wait_for(nc.jetstream().delete_consumer(stream, name), 5.0)
            except Exception:
                pass
    finally:
        await nc.close()


async def _call(
    stack: Any, tenant: Any, tmp_path: Path, *, during: Any = None, callers: list[Any] | None = None
) -> str:
    """One call answered by `agent connect`; `during(contact_id)` runs once it is connected; the caller's
    RTP (what it heard) is appended to `callers`. The contact id."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SB_API_URL": stack.api,
        "SB_API_KEY": tenant.key,
    }
    env.pop("SB_PROFILE", None)
    _tone_wav(tmp_path / "tone.wav", AGENT_HZ, 12.0)
    agent = await asyncio.create_subprocess_exec(
        str(SWITCHBOARD), "agent", "connect", "--email", "agent0@example.com", "--auto-answer",
        "--play", str(tmp_path / "tone.wav"), "--max-calls", "1", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert agent.stdout is not None

    async def until(event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(agent.stdout.readline(), max(0.01, deadline - time.monotonic()))
            if not raw:
                raise AssertionError(f"agent connect exited before {event}")
            line = json.loads(raw)
            if line["event"] == event:
                return line

    caller = sipp = None
    try:
        await until("signed_in", 20)
        rtp_port = free_port()
        _, caller = await asyncio.get_running_loop().create_datagram_endpoint(
            CallerRtp, local_addr=("127.0.0.1", rtp_port)
        )
        if callers is not None:
            callers.append(caller)
        (tmp_path / "caller.xml").write_text(_scenario(rtp_port))
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", "caller.xml", "-s", tenant.number,
            f"127.0.0.1:{stack.sip_port}", "-m", "1", "-timeout", "40", "-timeout_error",
            cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        contact_id = str((await until("connected", 30))["contact_id"])
        if during is not None:
            await during(contact_id)
        await until("ended", 25)
        await asyncio.wait_for(sipp.wait(), 20)
        return contact_id
    finally:
        for proc in (agent, sipp):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        if caller is not None:
            caller.close()


def available(api: str, key: str, rid: str, timeout: float = 30.0) -> dict[str, Any]:
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        deadline = time.monotonic() + timeout
        while True:
            r = client.get(f"/v1/recordings/{rid}")
            if r.status_code == 200 and r.json()["status"] == "available":
                return dict(r.json())
            if time.monotonic() > deadline:
                raise AssertionError(f"recording {rid} not available: {r.status_code} {r.text[:300]}")
            time.sleep(0.2)


def download(api: str, key: str, rid: str) -> bytes:
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        url = client.get(f"/v1/recordings/{rid}/url").json()["url"]
        audio = httpx.get(url, timeout=10)  # the signed URL alone, no key
        assert audio.status_code == 200, audio.text
        return audio.content


def _channels(wav: bytes) -> tuple[np.ndarray, np.ndarray]:
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[20:22], "little") == 7  # G.711 mu-law
    octets = np.frombuffer(wav[wav.index(b"data") + 8 :], dtype=np.uint8)
    return (
        G711.PCMU.decode(octets[0::2].tobytes()).astype(np.float64),
        G711.PCMU.decode(octets[1::2].tobytes()).astype(np.float64),
    )


def recording_tenant(api: str, agents: int = 1) -> Any:
    tenant = make_tenant(api, agents=agents)
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=10) as client:
        r = client.patch(f"/v1/queues/{tenant.queue_id}", json={"recording_percent": 100})
        assert r.status_code == 200, r.text
    return tenant


async def test_recorded_call_has_each_party_on_its_channel_and_nothing_of_the_pause(
    recording_stack: Any, tmp_path: Path
) -> None:
    stack = recording_stack
    tenant = await asyncio.to_thread(recording_tenant, stack.api)
    headers = {"Authorization": f"Bearer {tenant.key}"}

    async def pause_for_a_while(contact_id: str) -> None:
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(base_url=stack.api, headers=headers, timeout=10) as client:
            for _ in range(50):  # the recording row appears once the recording service saw it start
                r = await client.post(f"/v1/recordings/{contact_id}/pause")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200, r.text
            await asyncio.sleep(2.0)
            assert (await client.post(f"/v1/recordings/{contact_id}/resume")).status_code == 200

    rid = await _call(stack, tenant, tmp_path, during=pause_for_a_while)
    meta = await asyncio.to_thread(available, stack.api, tenant.key, rid)
    assert not meta["partial"] and meta["duration_s"] > 4.0 and len(meta["pauses"]) == 1
    start, end = meta["pauses"][0]
    assert 1.5 <= end - start <= 2.6
    caller, agent = _channels(await asyncio.to_thread(download, stack.api, tenant.key, rid))

    def span(channel: np.ndarray, a: float, b: float) -> np.ndarray:
        return channel[int(a * 8000) : int(b * 8000)]

    # Before the pause and after it: each party on its own channel, not the other's.
    before = (0.3, start - 0.1)
    after = (end + 0.2, meta["duration_s"] - 0.3)
    for a, b in (before, after):
        assert (
            tone_power(span(caller, a, b), CALLER_HZ) > 0.3
            and tone_power(span(caller, a, b), AGENT_HZ) < 0.05
        )
        assert (
            tone_power(span(agent, a, b), AGENT_HZ) > 0.3 and tone_power(span(agent, a, b), CALLER_HZ) < 0.05
        )
    # The paused span: no audio at all on either channel (not quiet: absent, G.711 silence).
    for channel in (caller, agent):
        assert not np.any(span(channel, start + 0.03, end - 0.03))


async def test_recording_service_killed_during_a_call_loses_nothing(
    recording_stack: Any, tmp_path: Path
) -> None:
    stack = recording_stack
    tenant = await asyncio.to_thread(recording_tenant, stack.api)

    async def crash(contact_id: str) -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.kill, "recording")

    rid = await _call(stack, tenant, tmp_path, during=crash)
    await asyncio.sleep(1.0)  # the call is over and shipped while nobody records
    await asyncio.to_thread(stack.start, "recording")
    meta = await asyncio.to_thread(available, stack.api, tenant.key, rid)
    assert not meta["partial"] and meta["duration_s"] > 4.0
    caller, agent = _channels(await asyncio.to_thread(download, stack.api, tenant.key, rid))
    assert tone_power(caller[8000:32000], CALLER_HZ) > 0.3
    assert tone_power(agent[8000:32000], AGENT_HZ) > 0.3


NOTICE = "This call may be recorded for quality and training."


async def test_caller_hears_the_recording_announcement_before_the_agent_and_the_recording(
    recording_stack: Any, tmp_path: Path
) -> None:
    """The tenant's announcement, rendered by this test with the platform's own text-to-speech, is found in
    what the SIPp caller heard (normalised cross-correlation); the agent's tone reaches the caller only
    after it, and the recording starts only once it has been heard to its end."""
    from services.kernel.announcements import voice_of
    from services.media.prompts import PromptStore

    stack = recording_stack
    tenant = await asyncio.to_thread(recording_tenant, stack.api)
    headers = {"Authorization": f"Bearer {tenant.key}"}
    async with httpx.AsyncClient(base_url=stack.api, headers=headers, timeout=10) as client:
        policy = {"recording_percent": 0, "retention_days": None, "opus_copy": False, "announcement": NOTICE}
        r = await client.put("/v1/recording-settings", json=policy)  # the queue's 100 % wins
        assert r.status_code == 200, r.text
    wall = time.time() - time.monotonic()
    callers: list[Any] = []
    rid = await _call(stack, tenant, tmp_path, callers=callers)
    meta = await asyncio.to_thread(available, stack.api, tenant.key, rid)
    reference = (await PromptStore(tmp_path / "prompts").text(NOTICE, voice=voice_of("en"))).astype(
        np.float64
    )

    received = callers[0].received
    heard = np.concatenate([G711.PCMU.decode(p).astype(np.float64) for _, p in received])
    times = np.concatenate([t + np.arange(len(p)) / 8000 for t, p in received])
    # Where the announcement lies in what the caller heard, and how alike (1.0: identical).
    n = len(heard) + len(reference)
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(reference, n)), n)[: len(heard)]
    windows = np.sqrt(np.convolve(heard**2, np.ones(len(reference)), "full")[len(reference) - 1 :])
    score = corr / (np.linalg.norm(reference) * np.maximum(windows, 1e-9))
    at = int(np.argmax(score[: len(heard) - len(reference)]))
    assert score[at] > 0.8, f"the announcement is not in what the caller heard (best match {score[at]:.2f})"
    notice_end = times[at + len(reference) - 1]
    # The agent's tone reaches the caller only after the announcement.
    frames = [(t, G711.PCMU.decode(p)) for t, p in received]
    agent_from = next(t for t, f in frames if len(f) == 160 and tone_power(f, AGENT_HZ) > 0.5)
    assert agent_from > notice_end
    async with httpx.AsyncClient(base_url=stack.api, headers=headers, timeout=10) as client:
        contact = (await client.get(f"/v1/contacts/{rid}")).json()
    timeline = {e["event"]: e["at"] for e in contact["timeline"]}
    assert "recording_notice_heard" in timeline
    from datetime import datetime

    heard_at = datetime.fromisoformat(timeline["recording_notice_heard"]).timestamp()
    started = datetime.fromisoformat(meta["started_at"]).timestamp()
    assert notice_end + wall - 0.5 <= heard_at <= started  # the recording began after the caller heard it
