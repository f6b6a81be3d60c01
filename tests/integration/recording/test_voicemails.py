"""Voicemails are recordings: a caller's message, written in plain by media, is sealed with the tenant's
data key, indexed (kind voicemail, linked to the call it was left on), verified on read, under retention,
hold and deletion like any recording, and its plain file removed. Plain messages from before (or whose event
was missed) are sealed by the start-up sweep under the tenant of their task's contact. Media ships each
message through JetStream, so the recording service needs no access to media's data directory."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
import wave
from pathlib import Path

import msgspec
import numpy as np
import pytest
from nats.js.errors import NotFoundError

from services.kernel import events as ev
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id, voicemail_id
from services.kernel.messages import Event
from services.media.features.voicemail import Recording
from services.media.features.voicemail_ship import VoicemailShipper
from services.recording.records import RecordingError, delete_recording, read_audio, set_hold
from services.recording.voicemail_bucket import open_voicemail_bucket, voicemail_object

from .conftest import Stack


def write_message(data_dir: Path, call: uuid.UUID, seconds: float, hz: float = 700.0) -> bytes:
    """A message as media writes it (8 kHz mono 16-bit PCM); its bytes."""
    path = data_dir / "voicemail" / f"{call}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * 8000)
    pcm = (np.sin(2 * np.pi * hz * np.arange(n) / 8000) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm.tobytes())
    return path.read_bytes()


async def test_a_voicemail_is_sealed_indexed_verified_and_its_plain_file_removed(stack: Stack) -> None:
    await stack.start_pipeline()
    tenant, other = await stack.tenant(), await stack.tenant()
    await stack.owner.execute("UPDATE tenants SET recording_retention_days = 30 WHERE id = $1", tenant)
    call = new_id()
    plain = write_message(stack.data_dir, call, 1.5)
    finished = ev.CallRecordFinished(
        tenant_id=tenant, call_id=call, file=f"voicemail/{call}.wav", seconds=1.5, ts=time.time()
    )
    await stack.bus.publish(finished)
    rid = voicemail_id(call)
    row = await stack.wait_status(tenant, rid, "available")
    assert (row["segment_kind"], row["law"], row["left_on"], row["call_id"]) == (
        "voicemail",
        "L16",
        call,
        call,
    )
    assert row["duration_s"] == pytest.approx(1.5) and row["sha256"] == hashlib.sha256(plain).hexdigest()
    assert row["retention_days"] == 30 and row["purge_after"] is not None  # under the tenant's retention
    plain_path = stack.data_dir / "voicemail" / f"{call}.wav"
    for _ in range(100):  # removed just after the row is marked available (sealed and indexed first)
        if not plain_path.exists():
            break
        await asyncio.sleep(0.05)
    assert not plain_path.exists()  # no plain copy left
    sealed = (stack.store.root / row["storage_key"]).read_bytes()
    assert b"RIFF" not in sealed and plain[100:200] not in sealed
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        assert (await read_audio(conn, stack.keys, stack.store, tenant, rid)).wav == plain
    # Redelivered (a crash before the acknowledgement): stored once, nothing changes.
    await stack.bus.publish(msgspec.structs.replace(finished, id=new_id()))
    await stack.bus.publish(
        ev.CallRecordFinished(tenant_id=tenant, call_id=new_id(), file="voicemail/../../etc/passwd", ts=1.0)
    )
    again = await stack.wait_status(tenant, rid, "available")
    assert again["storage_key"] == row["storage_key"] and again["available_at"] == row["available_at"]
    # Another tenant sees nothing; a flipped byte in the store is detected on read.
    async with tenant_tx(stack.pool, other, readonly=True) as conn:
        assert await conn.fetchval("SELECT count(*) FROM recordings WHERE id = $1", rid) == 0
        with pytest.raises(RecordingError) as refused:
            await read_audio(conn, stack.keys, stack.store, other, rid)
    assert refused.value.code == "not_found"
    (stack.store.root / row["storage_key"]).write_bytes(
        sealed[:-40] + bytes([sealed[-40] ^ 1]) + sealed[-39:]
    )
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        with pytest.raises(RecordingError) as corrupt:
            await read_audio(conn, stack.keys, stack.store, tenant, rid)
    assert corrupt.value.code == "corrupt"
    # Held, it cannot be deleted; released, deletion removes the audio and is audited.
    async with tenant_tx(stack.pool, tenant) as conn:
        await set_hold(conn, tenant, rid, True)
        with pytest.raises(RecordingError) as held:
            await delete_recording(conn, stack.store, tenant, rid, reason="request", now=time.time())
        assert held.value.code == "held"
        await set_hold(conn, tenant, rid, False)
        assert await delete_recording(conn, stack.store, tenant, rid, reason="request", now=time.time())
        audited = await conn.fetch("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY at", str(rid))
    assert not (stack.store.root / row["storage_key"]).exists()
    assert [a["action"] for a in audited][-1] == "recording.deleted"


async def test_the_start_up_sweep_seals_plain_messages_under_their_contact_tenant(stack: Stack) -> None:
    tenant = await stack.tenant()
    claimed, unclaimed = new_id(), new_id()
    plain = write_message(stack.data_dir, claimed, 1.0)
    write_message(stack.data_dir, unclaimed, 1.0)
    # The voicemail task's contact, as the coordinator saved it before voicemails were sealed.
    await stack.owner.execute(
        """INSERT INTO contacts (id, tenant_id, state, arrived_at, attributes)
           VALUES ($1, $2, 'ended', now(), $3::jsonb)""",
        voicemail_id(claimed),
        tenant,
        msgspec.json.encode({"kind": "voicemail", "file": f"voicemail/{claimed}.wav"}).decode(),
    )
    vault = stack.voicemail_vault()
    assert await vault.sweep() == 1
    row = await stack.wait_status(tenant, voicemail_id(claimed), "available")
    assert row["segment_kind"] == "voicemail" and row["sha256"] == hashlib.sha256(plain).hexdigest()
    assert not (stack.data_dir / "voicemail" / f"{claimed}.wav").exists()
    # No contact claims it: its tenant is unknown, so it stays where it is (never deleted unsealed).
    assert (stack.data_dir / "voicemail" / f"{unclaimed}.wav").exists()
    assert await vault.sweep() == 0


async def test_a_voicemail_reaches_a_recording_service_that_does_not_share_media_data_dir(
    stack: Stack, tmp_path: Path
) -> None:
    """Media (its own data dir, as a Kubernetes pod's emptyDir) ships the message through JetStream while
    the recording service is down; started later, the service seals it from there and removes it."""
    await stack.start_pipeline()
    await stack.stop_pipeline()  # its durable consumers stay: the outage a restart catches up on
    tenant, call = await stack.tenant(), new_id()
    media_dir = tmp_path / "media-data"
    assert media_dir != stack.data_dir
    published: list[ev.CallRecordFinished] = []

    async def publish(event: Event) -> None:
        assert isinstance(event, ev.CallRecordFinished)
        # Shipped before it is reported: the bucket has the bytes, media's file is gone.
        info = await (await open_voicemail_bucket(stack.bus.js)).get_info(voicemail_object(tenant, call))
        assert info.size > 0 and not (media_dir / "voicemail" / f"{call}.wav").exists()
        published.append(event)
        await stack.bus.publish(event)

    recording = Recording(
        tenant_id=tenant,
        call_id=call,
        record_id=new_id(),
        file=f"voicemail/{call}.wav",
        path=media_dir / "voicemail" / f"{call}.wav",
        max_seconds=1.0,
    )
    tone = (np.sin(2 * np.pi * 700.0 * np.arange(160) / 8000) * 8000).astype(np.int16)
    events = []
    for n in range(50):  # 1 s of 20 ms frames: max_seconds ends it
        events += recording.heard(tone, n * 0.02)
    (finished,) = events
    plain = (media_dir / "voicemail" / f"{call}.wav").read_bytes()
    shipper = VoicemailShipper(stack.bus.js, media_dir, publish)
    await shipper.publish(finished)
    assert published == [finished]
    await stack.start_pipeline()
    rid = voicemail_id(call)
    row = await stack.wait_status(tenant, rid, "available")
    assert row["duration_s"] == pytest.approx(1.0) and row["sha256"] == hashlib.sha256(plain).hexdigest()
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        assert (await read_audio(conn, stack.keys, stack.store, tenant, rid)).wav == plain
    bucket = await open_voicemail_bucket(stack.bus.js)
    for _ in range(100):  # removed from JetStream just after the row is marked available
        try:
            await bucket.get_info(voicemail_object(tenant, call))
        except NotFoundError:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(NotFoundError):
        await bucket.get_info(voicemail_object(tenant, call))
    assert not (stack.data_dir / "voicemail" / f"{call}.wav").exists()
    # Redelivered: stored once, and nothing is left to ship a second time.
    await stack.bus.publish(msgspec.structs.replace(finished, id=new_id(), ts=time.time()))
    again = await stack.wait_status(tenant, rid, "available")
    assert again["storage_key"] == row["storage_key"] and again["available_at"] == row["available_at"]
    assert await shipper.ship(finished) is False
