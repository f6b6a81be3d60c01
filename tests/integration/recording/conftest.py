"""A recording pipeline in the test's process against the session's real PostgreSQL and NATS, and a
`Media` that records calls the way a media worker does (SpoolWriter + ChunkShipper, real JetStream)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from services.kernel import events as ev
from services.kernel.bus import Bus, connect
from services.kernel.db import create_pool, tenant_tx
from services.kernel.ids import new_id
from services.media.rtp.g711 import G711
from services.media.spool import SpoolWriter
from services.media.spool.ship import ChunkShipper
from services.recording.pipeline import RecordingPipeline
from services.recording.store import LocalStore
from services.recording.vault import KeyRing, LocalMasterKey
from services.recording.voicemails import VoicemailVault

CALLER_HZ, AGENT_HZ = 600.0, 1000.0


def tone(freq: float, n: int, start: int) -> np.ndarray:
    return 6000 * np.sin(2 * np.pi * freq * (np.arange(n) + start) / 8000)


@dataclass
class Stack:
    bus: Bus
    pool: asyncpg.Pool
    owner: asyncpg.Pool
    keys: KeyRing
    store: LocalStore
    spool_dir: Path
    durable: str
    key_path: Path
    pipeline: RecordingPipeline | None = None

    @property
    def data_dir(self) -> Path:
        """Where media writes voicemails (`voicemail/<call>.wav`)."""
        return self.spool_dir.parent / "data"

    def voicemail_vault(self) -> VoicemailVault:
        return VoicemailVault(self.bus, self.pool, self.keys, self.store, self.data_dir)

    async def start_pipeline(self) -> RecordingPipeline:
        self.pipeline = RecordingPipeline(
            self.bus,
            self.pool,
            self.keys,
            self.store,
            durable=self.durable,
            voicemails=self.voicemail_vault(),
            retry_s=1.0,  # a failed step (an outage a test makes) comes back within the test's patience
        )
        await self.pipeline.start()
        return self.pipeline

    async def stop_pipeline(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.stop()
            self.pipeline = None

    async def tenant(self) -> uuid.UUID:
        tenant = uuid.uuid4()
        await self.owner.execute(
            "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'rec', 'rec@example.com')", tenant
        )
        return tenant

    async def record_call(
        self,
        tenant: uuid.UUID,
        seconds: float,
        *,
        pause: tuple[float, float] | None = None,
        finish: bool = True,
        shipper: ChunkShipper | None = None,
        call_id: uuid.UUID | None = None,
        segment: dict[str, Any] | None = None,
        media_call: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """A call recorded as media does it: call.recording started, frames into the spool, chunks shipped
        as they are synced (flush every 0.5 s of call time), the end marker after close. `call_id` is the
        recording's id; `media_call` the call media records on, when it is another (a callback's customer
        call)."""
        call_id = call_id or new_id()
        shipper = shipper or ChunkShipper(self.bus.js)
        writer = SpoolWriter(self.spool_dir, str(call_id), G711.PCMU, flush_seconds=0.5)
        shipper.attach(writer, tenant, call_id)
        await self.bus.publish(
            ev.CallRecording(
                tenant_id=tenant,
                call_id=media_call or call_id,
                state="started",
                spool=str(call_id),
                **({"recording_id": call_id} if media_call else {}),
                **(segment or {}),
            )
        )
        for i in range(round(seconds / 0.02)):
            now = i * 0.02
            if pause and abs(now - pause[0]) < 1e-9:
                writer.pause(now)
            if pause and abs(now - pause[1]) < 1e-9:
                writer.resume(now)
            start = writer.position
            writer.write(
                G711.PCMU.encode(tone(CALLER_HZ, 160, start)),
                G711.PCMU.encode(tone(AGENT_HZ, 160, start)),
                now,
            )
        if finish:
            writer.close()
            shipper.finish(call_id)
            await shipper.stop(10.0)
        else:
            writer.flush(seconds)
            await asyncio.wait_for(shipper.sent(call_id), 10)
            await shipper.stop(0.1)  # the worker dies: its shipping task with it
        return call_id

    async def wait_status(self, tenant: uuid.UUID, rid: uuid.UUID, status: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            async with tenant_tx(self.pool, tenant, readonly=True) as conn:
                row = await conn.fetchrow("SELECT * FROM recordings WHERE id = $1", rid)
            if row is not None and row["status"] == status:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"recording {rid} is {row and row['status']}, not {status}, after {timeout} s"
                )
            await asyncio.sleep(0.05)


@pytest.fixture
async def stack(infra: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    bus = await connect(infra.nats_url, name="recording-test")
    await bus.ensure_streams()
    pool = await create_pool(infra.app_url, min_size=1, max_size=5)
    owner = await create_pool(infra.owner_url, min_size=1, max_size=2)
    key_path = tmp_path / "keys" / "master.key"
    keys = KeyRing(LocalMasterKey.load_or_create(key_path))
    s = Stack(
        bus,
        pool,
        owner,
        keys,
        LocalStore(tmp_path / "store"),
        tmp_path / "spool",
        f"rectest-{uuid.uuid4().hex[:8]}",
        key_path,
    )
    try:
        yield s
    finally:
        await s.stop_pipeline()
        for name in (f"{s.durable}-ends", f"{s.durable}-calls", f"{s.durable}-voicemails"):
            for stream in ("SB_RECORDING_CHUNKS", "SB_EVENTS"):
                try:
                    await bus.js.delete_consumer(stream, name)
                except Exception:
                    pass
        await asyncio.wait_for(pool.close(), 5)
        await asyncio.wait_for(owner.close(), 5)
        await bus.close()
