"""Voicemails as recordings: a message a caller left (the IVR's voicemail node; media writes it as a plain
WAV, `<data dir>/voicemail/<call>.wav`, then reports call.record_finished) is sealed with the tenant's data
key, stored, indexed as a recording of kind `voicemail` and only then deleted in plain.

The recording service consumes call.record_finished durably (a service that was down catches up); each
step is idempotent, so a message redelivered after a crash is stored once, and its plain file removed. At
start the service also sweeps the directory for messages written before voicemails were sealed, or whose
event it missed (`sweep`): the message's tenant is found through its task's contact, whose id is derived
from the call's (`voicemail_id`), under a policy that shows that one contact to whoever knows its id
(migration 0035).

The recording service must see media's data directory (one host, or a shared volume): the plain file is
read from there.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.ids import voicemail_id
from services.kernel.log import get_logger

from .records import VOICEMAIL_RATE, Voicemail, mark_voicemail_available
from .store import BlobStore, recording_key
from .vault import KeyRing, Sealer

__all__ = ["DIRECTORY", "VoicemailVault", "plain_file"]

DIRECTORY = "voicemail"
# Exactly what the IVR names a message (services/ivr/interpreter.py): nothing else is read or deleted.
_NAME = re.compile(r"^voicemail/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wav$")
READ_BYTES = 64 * 1024


def plain_file(name: str) -> uuid.UUID | None:
    """The call a message file (as call.record_finished names it) was left on, or None if it is not one."""
    match = _NAME.match(name)
    return uuid.UUID(match.group(1)) if match else None


class VoicemailError(Exception):
    pass


def _samples(path: Path) -> int:
    """The message's length, refusing anything but what media writes (8 kHz mono 16-bit PCM)."""
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            frames = w.getnframes()
    except (wave.Error, EOFError) as exc:
        raise VoicemailError(f"not a WAV file: {exc}") from None
    if shape != (1, 2, VOICEMAIL_RATE):
        raise VoicemailError(f"not 8 kHz mono 16-bit PCM: {shape}")
    return frames


class VoicemailVault:
    """Seals, stores and indexes the messages under `root` (the data directory)."""

    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        keys: KeyRing,
        store: BlobStore,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus, self.pool, self.keys, self.store = bus, pool, keys, store
        self.root = root
        self.clock = clock
        self.log = get_logger()

    async def on_finished(self, event: ev.CallRecordFinished) -> None:
        """call.record_finished: the message is in its file; seal it (a failed recording left nothing)."""
        if event.error is not None or not event.file:
            return
        call = plain_file(event.file)
        if call is None or call != event.call_id:
            self.log.warning("voicemail_file_refused", file=event.file[:200], call=str(event.call_id))
            return
        await self.seal(event.tenant_id, call, ended_at=event.ts)

    async def seal(self, tenant: uuid.UUID, call: uuid.UUID, *, ended_at: float) -> bool:
        """Store the message left on `call` as a recording; False when there was nothing (left) to store."""
        rid = voicemail_id(call)
        path = self.root / DIRECTORY / f"{call}.wav"
        async with tenant_tx(self.pool, tenant, readonly=True) as conn:
            stored = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", rid)
        if stored is None:
            if not path.exists():
                self.log.warning("voicemail_file_missing", recording=str(rid), file=str(path))
                return False
            try:
                samples = await asyncio.to_thread(_samples, path)
            except (VoicemailError, OSError) as exc:
                # Kept in place for an operator to look at: a message is never deleted unsealed.
                self.log.error("voicemail_unreadable", recording=str(rid), error=str(exc)[:200])
                return False
            async with tenant_tx(self.pool, tenant) as conn:
                key_id, data_key = await self.keys.current(conn, tenant)
            digest = hashlib.sha256()
            sealer = Sealer(data_key, key_id, tenant, rid)
            key = recording_key(tenant, rid)
            size = await self.store.put_stream(key, _sealed(path, sealer, digest))
            vm = Voicemail(
                id=rid,
                left_on=call,
                samples=samples,
                sha256=digest.hexdigest(),
                storage_key=key,
                key_id=key_id,
                size=size,
                started_at=ended_at - samples / VOICEMAIL_RATE,
                ended_at=ended_at,
            )
            async with tenant_tx(self.pool, tenant) as conn:
                await mark_voicemail_available(conn, tenant, vm, now=self.clock())
            await self.bus.publish(
                ev.RecordingAvailable(
                    id=uuid.uuid5(rid, "available"),
                    tenant_id=tenant,
                    recording_id=rid,
                    duration=samples / VOICEMAIL_RATE,
                    partial=False,
                    sha256=vm.sha256,
                    kind="voicemail",
                )
            )
            self.log.info("voicemail_sealed", recording=str(rid), seconds=round(samples / VOICEMAIL_RATE, 2))
        # Sealed and indexed (now or by an earlier delivery): the plain copy goes.
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return stored is None

    async def sweep(self) -> int:
        """Seal the plain messages still in the directory (written before voicemails were sealed, or whose
        event was missed): each one's tenant is its task contact's. Messages no contact claims stay."""
        folder = self.root / DIRECTORY
        names = await asyncio.to_thread(lambda: sorted(p.name for p in folder.glob("*.wav")))
        sealed = 0
        for name in names:
            call = plain_file(f"{DIRECTORY}/{name}")
            if call is None:
                continue
            rid = voicemail_id(call)
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
                await conn.execute("SELECT set_config('app.voicemail_contact', $1, true)", str(rid))
                row = await conn.fetchrow(
                    "SELECT tenant_id, attributes->>'file' AS file FROM contacts WHERE id = $1", rid
                )
            if row is None or row["file"] != f"{DIRECTORY}/{name}":
                self.log.warning("voicemail_unclaimed", file=name)
                continue
            mtime = await asyncio.to_thread(lambda n=name: (folder / n).stat().st_mtime)  # type: ignore[misc]
            if await self.seal(row["tenant_id"], call, ended_at=mtime):
                sealed += 1
        return sealed


async def _sealed(path: Path, sealer: Sealer, digest: Any) -> AsyncIterator[bytes]:
    """The file sealed piece by piece (a message is never held whole), its SHA-256 taken on the way."""
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while block := await asyncio.to_thread(f.read, READ_BYTES):
            digest.update(block)
            if piece := sealer.update(block):
                yield piece
    finally:
        f.close()
    yield sealer.finish()
