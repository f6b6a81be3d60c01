"""The recording pipeline with real NATS (JetStream) and PostgreSQL: media's chunks become a sealed,
indexed, verifiable recording; the stream's copy goes only after that; a recording service that was down
catches up; a lost media worker leaves a partial recording; tenants never see each other's."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.kernel.subjects import REC_STREAM, rec_subject
from services.media.rtp.g711 import G711
from services.recording.chunks import read_chunks
from services.recording.records import RecordingError, read_audio

from .conftest import AGENT_HZ, CALLER_HZ, Stack


def peak(wav: bytes, channel: int, lo: float, hi: float) -> float:
    octets = np.frombuffer(wav[wav.index(b"data") + 8 :], dtype=np.uint8)[channel::2][
        int(lo * 8000) : int(hi * 8000)
    ]
    pcm = G711.PCMU.decode(octets.tobytes()).astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum[1:])) + 1])


async def test_chunks_become_a_sealed_indexed_recording_and_leave_the_stream(stack: Stack) -> None:
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 2.0)
    row = await stack.wait_status(tenant, rid, "available")
    assert not row["partial"] and row["duration_s"] == pytest.approx(2.0)
    sealed = (stack.store.root / row["storage_key"]).read_bytes()
    assert b"RIFF" not in sealed  # encrypted at rest
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        audio = await read_audio(conn, stack.keys, stack.store, tenant, rid)
    assert hashlib.sha256(audio.wav).hexdigest() == row["sha256"]
    assert peak(audio.wav, 0, 0.1, 1.9) == pytest.approx(CALLER_HZ, abs=5)
    assert peak(audio.wav, 1, 0.1, 1.9) == pytest.approx(AGENT_HZ, abs=5)
    # Only once stored and indexed: the stream's copy is purged and the media spool is gone.
    assert (await read_chunks(stack.bus.js, tenant, rid)).by_number == {}
    assert not (stack.spool_dir / str(rid)).exists()


async def test_recording_service_down_loses_nothing_and_catches_up(stack: Stack) -> None:
    tenant = await stack.tenant()
    await stack.start_pipeline()  # creates the durable consumers
    await stack.stop_pipeline()
    rids = [await stack.record_call(tenant, 1.0) for _ in range(3)]
    for rid in rids:  # nobody finalises: every chunk waits in JetStream
        assert len((await read_chunks(stack.bus.js, tenant, rid)).by_number) >= 2
    await stack.start_pipeline()
    for rid in rids:
        row = await stack.wait_status(tenant, rid, "available")
        assert row["duration_s"] == pytest.approx(1.0) and not row["partial"]


async def test_lost_media_worker_leaves_a_partial_recording_up_to_the_last_chunk(stack: Stack) -> None:
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 2.0, finish=False)  # no end marker: the worker died
    await stack.wait_status(tenant, rid, "recording")
    await stack.bus.publish(
        ev.CallEnded(tenant_id=tenant, call_id=rid, cause="media_worker_lost", duration=2.0)
    )
    row = await stack.wait_status(tenant, rid, "available")
    assert row["partial"] and 1.5 <= row["duration_s"] <= 2.0
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        audio = await read_audio(conn, stack.keys, stack.store, tenant, rid)
    assert peak(audio.wav, 0, 0.1, 1.4) == pytest.approx(CALLER_HZ, abs=5)


async def test_lost_media_worker_during_a_callback_closes_its_recording_as_partial(stack: Stack) -> None:
    """A callback's recording is the contact's (its id), made on the customer's call that was dialled out
    (another id): the lost worker's call.ended names that call, and the recording is found by it."""
    await stack.start_pipeline()
    tenant = await stack.tenant()
    contact, customer_call = new_id(), new_id()
    rid = await stack.record_call(
        tenant, 2.0, finish=False, call_id=contact, media_call=customer_call, segment={"contact_id": contact}
    )
    assert rid == contact
    await stack.wait_status(tenant, rid, "recording")
    await stack.bus.publish(
        ev.CallEnded(tenant_id=tenant, call_id=customer_call, cause="media_worker_lost", duration=2.0)
    )
    row = await stack.wait_status(tenant, rid, "available", timeout=10)
    assert row["partial"] and row["call_id"] == customer_call and 1.5 <= row["duration_s"] <= 2.0


async def test_paused_span_is_absent_and_marked(stack: Stack) -> None:
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 3.0, pause=(1.0, 2.0))
    row = await stack.wait_status(tenant, rid, "available")
    assert [tuple(p) for p in __import__("json").loads(row["pauses"])] == [(1.0, 2.0)]
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        audio = await read_audio(conn, stack.keys, stack.store, tenant, rid)
    data = np.frombuffer(audio.wav[audio.wav.index(b"data") + 8 :], dtype=np.uint8)
    assert set(data[2 * 8000 + 80 : 2 * 16000 - 80].tolist()) == {G711.PCMU.silence}
    assert peak(audio.wav, 1, 2.1, 2.9) == pytest.approx(AGENT_HZ, abs=5)


async def test_corrupted_file_is_detected_on_read(stack: Stack) -> None:
    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 1.0)
    row = await stack.wait_status(tenant, rid, "available")
    path = stack.store.root / row["storage_key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        with pytest.raises(RecordingError) as caught:
            await read_audio(conn, stack.keys, stack.store, tenant, rid)
    assert caught.value.code == "corrupt"


async def test_tenant_b_cannot_see_read_or_decrypt_tenant_a_recordings(stack: Stack) -> None:
    await stack.start_pipeline()
    a, b = await stack.tenant(), await stack.tenant()
    rid = await stack.record_call(a, 1.0)
    row = await stack.wait_status(a, rid, "available")
    async with tenant_tx(stack.pool, b, readonly=True) as conn:
        assert await conn.fetchval("SELECT count(*) FROM recordings") == 0
        assert await conn.fetchval("SELECT count(*) FROM recording_keys") == 0
        with pytest.raises(RecordingError) as caught:
            await read_audio(conn, stack.keys, stack.store, b, rid)
        assert caught.value.code == "not_found"
    async with tenant_tx(stack.pool, b) as conn:
        key_b, _ = await stack.keys.current(conn, b)
        assert key_b != row["key_id"]
        with pytest.raises(Exception, match="not this tenant"):
            await stack.keys.get(conn, b, row["key_id"])


async def test_end_marker_under_another_tenant_subject_is_refused(stack: Stack) -> None:
    import msgspec

    await stack.start_pipeline()
    a, b = await stack.tenant(), await stack.tenant()
    rid = await stack.record_call(a, 1.0, finish=False)
    forged = ev.RecordingChunksEnd(tenant_id=a, call_id=rid, law="PCMU", chunks=2, started_at=0, ended_at=1)
    await stack.bus.js.publish(rec_subject(b, rid, "end"), msgspec.json.encode(forged), stream=REC_STREAM)
    await asyncio.sleep(1.0)
    await stack.wait_status(a, rid, "recording")  # not finalised from B's subject
    assert len((await read_chunks(stack.bus.js, a, rid)).by_number) >= 1
    _: Any = uuid


async def test_restarted_worker_ships_what_its_dead_predecessor_spooled_and_skips_live_spools(
    stack: Stack,
) -> None:
    from services.media.spool import SpoolWriter, wait_written
    from services.media.spool.ship import ChunkShipper, reship_leftovers

    from .conftest import tone

    await stack.start_pipeline()
    tenant = await stack.tenant()
    dead, live = new_id(), new_id()
    shipper = ChunkShipper(stack.bus.js)
    writers = {}
    for call in (dead, live):
        w = SpoolWriter(stack.spool_dir, str(call), G711.PCMU, flush_seconds=0.5, tenant_id=str(tenant))
        shipper.attach(w, tenant, call)
        writers[call] = w
        await stack.bus.publish(
            ev.CallRecording(tenant_id=tenant, call_id=call, state="started", spool=str(call))
        )
    w = writers[dead]
    for i in range(150):  # 3 s; only the first 2 s reach JetStream before the worker "dies"
        if i == 100:
            await asyncio.wait_for(shipper.sent(dead), 10)
            w.on_chunk = None
        w.write(
            G711.PCMU.encode(tone(CALLER_HZ, 160, w.position)),
            G711.PCMU.encode(tone(AGENT_HZ, 160, w.position)),
            i * 0.02,
        )
    w.flush(3.0)
    assert wait_written()
    w._file.close()  # the process is gone: its lock with it, no end marker
    await shipper.stop(0.1)

    assert await reship_leftovers(stack.bus.js, stack.spool_dir) == 1  # the live spool is left alone
    row = await stack.wait_status(tenant, dead, "available")
    assert row["partial"] and row["duration_s"] == pytest.approx(3.0)  # every spooled second, shipped or not
    assert (stack.spool_dir / str(live)).exists() and not (stack.spool_dir / str(dead)).exists()
    writers[live].close()


async def test_a_long_recording_is_sealed_and_read_back_in_bounded_memory(stack: Stack) -> None:
    """Ten minutes of call (9.6 MB of WAV): finalising and reading it back each hold a small, fixed part of
    it (a batch of chunks, a segment), measured with tracemalloc; an hour would hold no more."""
    import tracemalloc

    from services.media.spool import SpoolWriter
    from services.media.spool.ship import ChunkShipper
    from services.recording.chunks import ensure_chunk_stream
    from services.recording.pipeline import RecordingPipeline
    from services.recording.records import open_audio

    from .conftest import tone

    await ensure_chunk_stream(stack.bus.js)
    tenant, rid, seconds = await stack.tenant(), new_id(), 600
    shipper = ChunkShipper(stack.bus.js)
    writer = SpoolWriter(stack.spool_dir, str(rid), G711.PCMU, flush_seconds=1.0)
    shipper.attach(writer, tenant, rid)
    caller, agent = G711.PCMU.encode(tone(CALLER_HZ, 8000, 0)), G711.PCMU.encode(tone(AGENT_HZ, 8000, 0))
    for i in range(seconds + 1):
        writer.write(caller, agent, float(i))  # a second at a time: one chunk per second of call
    writer.close()
    shipper.finish(rid)
    await shipper.stop(30.0)
    end = ev.RecordingChunksEnd(
        tenant_id=tenant, call_id=rid, law="PCMU", chunks=writer.chunks, started_at=0.0, ended_at=601.0
    )
    pipeline = RecordingPipeline(stack.bus, stack.pool, stack.keys, stack.store, durable=stack.durable)
    tracemalloc.start()
    try:
        await pipeline.finalise(end)
        _, sealing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, size = hashlib.sha256(), 0
        async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
            audio = await open_audio(conn, stack.keys, stack.store, tenant, rid)
            async for piece in audio.pieces:
                digest.update(piece)
                size += len(piece)
        _, reading_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    row = await stack.wait_status(tenant, rid, "available")
    wav_size = 2 * 8000 * (seconds + 1) + 58
    assert row["duration_s"] == pytest.approx(seconds + 1) and size == audio.size == wav_size
    assert digest.hexdigest() == row["sha256"]
    print(
        f"\nWAV {wav_size / 1e6:.1f} MB; peak while sealing {sealing_peak / 1e6:.2f} MB, reading {reading_peak / 1e6:.2f} MB"
    )
    # A minute of chunks kept for the second pass at most (HOLD_BYTES), a batch, a segment: never the 9.6 MB.
    assert sealing_peak < 3_000_000 and reading_peak < 2_000_000


async def test_rewrap_under_a_new_master_key_keeps_old_recordings_readable(
    stack: Stack, infra: Any, tmp_path: Any
) -> None:
    import json

    from click.testing import CliRunner
    from switchboard_cli.main import cli

    from services.recording.vault import KeyRing, LocalMasterKey

    await stack.start_pipeline()
    tenant = await stack.tenant()
    rid = await stack.record_call(tenant, 1.0)
    row = await stack.wait_status(tenant, rid, "available")
    old = LocalMasterKey.load(stack.key_path)
    new_path = tmp_path / "keys" / "new-master.key"
    new = LocalMasterKey.load_or_create(new_path)

    async def play(keys: KeyRing) -> bytes:
        async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
            return (await read_audio(conn, keys, stack.store, tenant, rid)).wav

    before = await play(stack.keys)
    assert await play(KeyRing(new, [old])) == before  # during the rotation: the old master still unwraps
    with pytest.raises(RecordingError, match="not configured"):
        await play(KeyRing(new))  # the new master alone cannot, yet

    def rewrap(*more: str) -> Any:  # on a thread: the command runs its own event loop
        args = ["recordings", "rewrap", "--database-url", infra.app_url, "--key-file", str(new_path)]
        return asyncio.to_thread(CliRunner().invoke, cli, [*args, "--tenant", str(tenant), *more])

    refused = await rewrap()
    assert refused.exit_code == 1 and "not configured" in refused.stderr  # the old master not given
    done = await rewrap("--old-key-file", str(stack.key_path), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"master_key_id": new.key_id, "keys": 1, "tenants": {str(tenant): 1}}
    async with tenant_tx(stack.pool, tenant, readonly=True) as conn:
        assert (
            await conn.fetchval("SELECT master_key_id FROM recording_keys WHERE id = $1", row["key_id"])
            == new.key_id
        )
    assert await play(KeyRing(new)) == before  # the same data key, now under the new master only
    with pytest.raises(RecordingError, match="not configured"):
        await play(KeyRing(old))
    again = await rewrap("--json")
    assert json.loads(again.stdout)["keys"] == 0  # nothing left under the old master
