"""The IVR's voicemail and transfer nodes against real media: SIPp callers through the media and ivr
services (subprocesses, this folder's conftest), flows deployed through the real API.

Voicemail: the caller streams a 700 Hz tone (SIPp rtp_stream); the flow's voicemail node records it after
the beep into <data dir>/voicemail/<call>.wav, ships it to JetStream (sb_voicemails) and hands it to
routing as a RoutingTask, answered here as routing would. Transfer: the flow's transfer node to an outside number goes out through the tenant's trunk
to a SIPp `uas -rtp_echo`; media bridges the legs, the IVR reports the call transferred, and the caller's
audio crosses the bridge (the outside leg receives the echo of it)."""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import numpy as np
import pytest

from services.kernel.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallQuality,
    CallRecordFinished,
    IvrCompleted,
    IvrNodeEntered,
    RoutingTask,
)
from services.kernel.ids import new_id
from services.kernel.messages import Reply, encode
from services.kernel.waits import flushed
from services.media.rtp.g711 import ulaw_encode
from services.recording.voicemail_bucket import open_voicemail_bucket, voicemail_object
from services.routing.partitions import tenant_commands_subject
from services.runtime.embedded import free_port
from tests.sipp_uac import sipp_command, stream, uac_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]
TONE_HZ = 700.0
OUTSIDE = "+15550199"

VOICEMAIL_FLOW = """\
name: e2e-voicemail
start: vm
fallback: bye
nodes:
  vm: {type: voicemail, queue: Support, prompt: {say: "Please leave a message."}, max_seconds: 2, next: bye}
  bye: {type: hangup, prompt: {say: "Goodbye."}}
"""
TRANSFER_FLOW = f"""\
name: e2e-transfer
start: out
fallback: bye
nodes:
  out: {{type: transfer, to: number, target: "{OUTSIDE}", on_fail: bye}}
  bye: {{type: hangup, prompt: {{say: "Goodbye."}}}}
"""
_EVENTS: dict[str, type[Any]] = {
    "call.arrived": CallArrived,
    "call.answered": CallAnswered,
    "call.ended": CallEnded,
    "call.quality": CallQuality,
    "call.record_finished": CallRecordFinished,
    "ivr.node_entered": IvrNodeEntered,
    "ivr.completed": IvrCompleted,
}


@dataclass(frozen=True)
class _Tenant:
    tenant_id: str
    queue_id: str
    voicemail_number: str
    transfer_number: str
    uas_port: int


@dataclass
class _Seen:
    events: list[Any] = field(default_factory=list)
    tasks: list[RoutingTask] = field(default_factory=list)

    def of(self, kind: type[Any], call_id: uuid.UUID | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (call_id is None or e.call_id == call_id)]


@pytest.fixture(scope="module")
def tenant(api_server: str, infra) -> _Tenant:  # type: ignore[no-untyped-def]
    """Made through the API: a Support queue, both flows, a number for each; the trunk row (an operator's
    job, with its outbound host on SIPp's port) goes in directly, before any call caches the tenant's trunks."""
    uas_port = free_port()
    with httpx.Client(base_url=api_server, timeout=10) as client:
        r = client.post(
            "/v1/signup", json={"company": f"VM e2e {uuid.uuid4().hex[:6]}", "email": "vm@example.com"}
        )
        assert r.status_code == 201, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['api_key']['key']}"
        tenant_id = r.json()["tenant"]["id"]
        queue = client.post("/v1/queues", json={"name": "Support", "skills": {"support": 1}})
        assert queue.status_code == 201, queue.text
        numbers = []
        for flow, name in ((VOICEMAIL_FLOW, "e2e-voicemail"), (TRANSFER_FLOW, "e2e-transfer")):
            assert client.post("/v1/flows", json={"definition": flow}).status_code == 201
            number = "+1555" + str(uuid.uuid4().int)[:8]
            assert client.post("/v1/numbers", json={"e164": number}).status_code == 201
            assert client.post(f"/v1/numbers/{number}/route", json={"flow": name}).status_code == 200
            numbers.append(number)

    async def trunk() -> None:
        conn = await asyncpg.connect(infra.owner_url)
        try:
            await conn.execute(
                """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, outbound_host, outbound_port)
                   VALUES ($1, $2, 'carrier', '{127.0.0.0/8}', '127.0.0.1', $3)""",
                new_id(),
                uuid.UUID(tenant_id),
                uas_port,
            )
        finally:
            await conn.close()

    asyncio.run(trunk())
    return _Tenant(tenant_id, queue.json()["id"], numbers[0], numbers[1], uas_port)


def _scenario(stream_file: str, *, hangup_after_ms: int | None) -> str:
    """INVITE (PCMU, SIPp's own media port), ACK, stream the tone file; then wait for the platform's BYE or
    hang up after a while."""
    return uac_scenario(
        during=stream(stream_file), hangup_after_ms=hangup_after_ms, name="ivr caller with audio"
    )


async def _call(infra, ivr_stack, tenant: _Tenant, number: str, tmp_path: Path, hangup_after_ms: int | None):  # type: ignore[no-untyped-def]
    """One SIPp call streaming 8 s of tone; returns (sipp exit code, its output, what the bus saw)."""
    t = np.arange(8 * 8000) / 8000
    (tmp_path / "tone.ulaw").write_bytes(
        ulaw_encode((np.sin(2 * np.pi * TONE_HZ * t) * 8000).astype(np.int16))
    )
    scenario = tmp_path / "caller.xml"
    scenario.write_text(_scenario("tone.ulaw", hangup_after_ms=hangup_after_ms))
    seen = _Seen()
    nc = await nats.connect(infra.nats_url)

    async def on_event(msg: Any) -> None:
        kind = _EVENTS.get(".".join(msg.subject.split(".")[3:5]))
        if kind is not None:
            seen.events.append(msgspec.json.decode(msg.data, type=kind))

    async def on_routing(msg: Any) -> None:
        # Routing's side: a voicemail task is accepted into its queue.
        if msg.subject.rsplit(".", 1)[-1] == "task":
            seen.tasks.append(msgspec.json.decode(msg.data, type=RoutingTask))
        await msg.respond(encode(Reply(ok=True)))

    await nc.subscribe(f"sb.{tenant.tenant_id}.evt.>", cb=on_event)
    await nc.subscribe(tenant_commands_subject(tenant.tenant_id), cb=on_routing)
    await flushed(nc)
    try:
        sipp = await asyncio.create_subprocess_exec(
            *sipp_command(),
            "-sf", str(scenario), "-s", number,
            f"127.0.0.1:{ivr_stack.sip_port}", "-m", "1", "-timeout", "30", "-timeout_error",
            "-trace_err", cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sipp.communicate(), 35)
        for _ in range(60):  # the last events trail the SIP exchange a little
            if seen.of(IvrCompleted) and len(seen.of(CallEnded)) >= (1 if hangup_after_ms is None else 2):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        errors = _sipp_errors(tmp_path)
        return sipp.returncode, out.decode(errors="replace")[-2000:] + errors[-2000:], seen
    finally:
        await nc.close()


def _sipp_errors(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.glob("*_errors.log"))


def _diagnose(ivr_stack: Any) -> str:
    return (
        f"\n--- ivr log ---\n{ivr_stack.ivr_log.read_text(errors='replace')[-3000:]}"
        f"\n--- contacts log ---\n{ivr_stack.contacts_log.read_text(errors='replace')[-3000:]}"
        f"\n--- media log ---\n{ivr_stack.media_log.read_text(errors='replace')[-3000:]}"
    )


def _power(samples: np.ndarray, frequency: float) -> float:
    x = samples.astype(np.float64)
    n = np.arange(len(x))
    bin_ = np.abs(np.sum(x * np.exp(-2j * np.pi * frequency * n / 8000))) ** 2
    return float(bin_ / ((np.sum(x * x) * len(x) / 2) or 1.0))


async def test_voicemail_records_the_caller_and_hands_routing_a_task(
    infra, ivr_stack, tenant: _Tenant, tmp_path: Path
) -> None:
    code, output, seen = await _call(infra, ivr_stack, tenant, tenant.voicemail_number, tmp_path, None)
    assert code == 0, output + _diagnose(ivr_stack)
    (arrived,) = seen.of(CallArrived)
    call_id = arrived.call_id
    (finished,) = seen.of(CallRecordFinished, call_id)
    assert finished.error is None and finished.file == f"voicemail/{call_id}.wav"
    assert finished.seconds == 2.0  # the node's max_seconds: the caller kept talking
    # Media shipped the message to the JetStream bucket the recording service seals it from, and only
    # then removed its own file and reported it (services/media/features/voicemail_ship.py).
    assert not (infra.data_dir / finished.file).exists()
    nc = await nats.connect(infra.nats_url)
    try:
        buffer = io.BytesIO()
        bucket = await open_voicemail_bucket(nc.jetstream())
        await bucket.get(voicemail_object(finished.tenant_id, call_id), writeinto=buffer)
    finally:
        await nc.close()
    buffer.seek(0)
    with wave.open(buffer, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 16000)
        audio = np.frombuffer(w.readframes(16000), dtype="<i2")
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 2000, "the caller's tone is in the message"
    assert _power(audio, TONE_HZ) > 0.5
    (task,) = seen.tasks
    # A task of its own for the desk, naming the call it came from.
    assert task.call_id == uuid.uuid5(call_id, "voicemail") and task.attributes["voicemail_of"] == str(
        call_id
    )
    assert task.kind == "voicemail" and task.file == finished.file
    assert task.queue == "Support" and str(task.queue_id) == tenant.queue_id and task.seconds == 2.0
    assert task.attributes["ivr.path"].startswith("vm") and task.attributes["caller"] == "+15550142"
    (completed,) = seen.of(IvrCompleted, call_id)
    assert completed.outcome == "self_served" and completed.attributes["voicemail"] == finished.file
    (ended,) = seen.of(CallEnded, call_id)
    assert ended.cause == "normal_clearing"  # the platform thanked the caller and hung up


async def test_transfer_to_an_outside_number_reaches_the_sipp_uas(
    infra, ivr_stack, tenant: _Tenant, tmp_path: Path
) -> None:
    uas = await asyncio.create_subprocess_exec(
        *sipp_command(tenant.uas_port),
        *["-sn", "uas", "-rtp_echo", "-m", "1", "-timeout", "30"],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        code, output, seen = await _call(infra, ivr_stack, tenant, tenant.transfer_number, tmp_path, 5000)
        assert code == 0, output + _diagnose(ivr_stack)
        uas_code = await asyncio.wait_for(uas.wait(), 10)
        assert uas_code == 0, "the outside party's call completed (INVITE answered, BYE received)"
    finally:
        if uas.returncode is None:
            uas.terminate()
            await asyncio.wait_for(uas.wait(), 5)
    inbound = next(e for e in seen.of(CallArrived) if e.direction == "inbound")
    outbound = next(e for e in seen.of(CallArrived) if e.direction == "outbound")
    assert outbound.to_e164 == OUTSIDE
    assert seen.of(CallAnswered, outbound.call_id), "the outside number answered"
    (completed,) = seen.of(IvrCompleted, inbound.call_id)
    assert completed.outcome == "transferred" and completed.attributes["transfer"] == f"number:{OUTSIDE}"
    # The caller hung up: the outside leg was released with it.
    assert seen.of(CallEnded, inbound.call_id)[0].cause == "remote_bye"
    assert seen.of(CallEnded, outbound.call_id)[0].cause == "normal_clearing"
    # The caller's audio crossed the bridge: the echo came back on the outside leg.
    final = next(iter(seen.of(CallQuality, outbound.call_id)))
    assert final.packets_received > 100, final
