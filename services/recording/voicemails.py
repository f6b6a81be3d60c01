"""Voicemails as recordings: a message a caller left (the IVR's voicemail node; media writes it as a plain
WAV, `<data dir>/voicemail/<call>.wav`, stores its bytes in the JetStream bucket `sb_voicemails` as
`<tenant>/<call>.wav` (voicemail_bucket.py), removes its file and reports call.record_finished) is read
from the bucket, sealed with the tenant's data key, stored, indexed as a recording of kind `voicemail` and
only then removed from the bucket. Media and the recording service need no shared disk.

The recording service consumes call.record_finished durably (a service that was down catches up; the
bucket keeps the message meanwhile); each step is idempotent, so a message redelivered after a crash is
stored once, and its bucket object removed. A message not in the bucket (media could not reach JetStream,
or wrote it before voicemails were shipped) is read from the local file when this service shares media's
data directory. At start the service also sweeps that directory for such messages, or ones whose event it
missed (`sweep`): the message's tenant is found through its task's contact, whose id is derived from the
call's (`voicemail_id`), under a policy that shows that one contact to whoever knows its id (migration
0035).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
from nats.js.errors import ObjectDeletedError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.ids import voicemail_id
from services.kernel.log import get_logger
from services.kernel.waits import within

from .records import VOICEMAIL_RATE, Voicemail, mark_voicemail_available
from .store import BlobStore, recording_key
from .vault import KeyRing, Sealer
from .voicemail_bucket import open_voicemail_bucket, voicemail_object

__all__ = ["DIRECTORY", "VoicemailVault", "plain_file"]

DIRECTORY = "voicemail"
# Exactly what the IVR names a message (services/ivr/interpreter.py): nothing else is read or deleted.
_NAME = re.compile(r"^voicemail/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wav$")
READ_BYTES = 64 * 1024
# An hour-long message (57.6 MB) read from the bucket on loopback takes well under this.
FETCH_S = 60.0


def plain_file(name: str) -> uuid.UUID | None:
    """The call a message file (as call.record_finished names it) was left on, or None if it is not one."""
    match = _NAME.match(name)
    return uuid.UUID(match.group(1)) if match else None


class VoicemailError(Exception):
    pass


Opener = Callable[[], BinaryIO]


def _samples(open_: Opener) -> int:
    """The message's length, refusing anything but what media writes (8 kHz mono 16-bit PCM)."""
    try:
        with open_() as f, wave.open(f, "rb") as w:
            shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            frames = w.getnframes()
    except (wave.Error, EOFError) as exc:
        raise VoicemailError(f"not a WAV file: {exc}") from None
    if shape != (1, 2, VOICEMAIL_RATE):
        raise VoicemailError(f"not 8 kHz mono 16-bit PCM: {shape}")
    return frames


class VoicemailVault:
    """Seals, stores and indexes the messages in the bucket (or under `root`, the data directory)."""

    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        keys: KeyRing,
        store: BlobStore,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        replicas: int = 1,
    ) -> None:
        self.bus, self.pool, self.keys, self.store = bus, pool, keys, store
        self.root = root
        self.replicas = replicas
        self._bucket: ObjectStore | None = None
        self.clock = clock
        self.log = get_logger()

    async def on_finished(self, event: ev.CallRecordFinished) -> None:
        """call.record_finished: the message is in the bucket (or its file); seal it (a failed recording left
        nothing)."""
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
        name = voicemail_object(tenant, call)
        async with tenant_tx(self.pool, tenant, readonly=True) as conn:
            stored = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", rid)
        if stored is None:
            shipped = await self._fetch(name)
            if shipped is not None:
                open_: Opener = partial(io.BytesIO, shipped)
            elif await asyncio.to_thread(path.exists):
                open_ = partial(_read, path)
            else:
                self.log.warning("voicemail_missing", recording=str(rid), object=name, file=str(path))
                return False
            try:
                samples = await asyncio.to_thread(_samples, open_)
            except (VoicemailError, OSError) as exc:
                # Kept in place for an operator to look at: a message is never deleted unsealed.
                self.log.error("voicemail_unreadable", recording=str(rid), error=str(exc)[:200])
                return False
            async with tenant_tx(self.pool, tenant) as conn:
                key_id, data_key = await self.keys.current(conn, tenant)
            digest = hashlib.sha256()
            sealer = Sealer(data_key, key_id, tenant, rid)
            key = recording_key(tenant, rid)
            size = await self.store.put_stream(key, _sealed(open_, sealer, digest))
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
        # Sealed and indexed (now or by an earlier delivery): the plain copies go.
        await self._remove(name)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return stored is None

    async def bucket(self) -> ObjectStore:
        if self._bucket is None:
            self._bucket = await open_voicemail_bucket(self.bus.js, self.replicas)
        return self._bucket

    async def _fetch(self, name: str) -> bytes | None:
        """The message's bytes from the bucket (its SHA-256 checked on the way), or None if not there."""
        bucket = await self.bucket()
        buffer = io.BytesIO()  # written into: the library's own result grows by concatenation
        try:
            await within(FETCH_S, f"voicemail {name} from the bucket", bucket.get(name, writeinto=buffer))
        except (ObjectNotFoundError, ObjectDeletedError):
            return None
        return buffer.getvalue()

    async def _remove(self, name: str) -> None:
        bucket = await self.bucket()
        try:
            await within(FETCH_S, f"voicemail {name} to be removed", bucket.delete(name))
        except (ObjectNotFoundError, ObjectDeletedError):
            pass

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
            mtime = (await asyncio.to_thread((folder / name).stat)).st_mtime
            if await self.seal(row["tenant_id"], call, ended_at=mtime):
                sealed += 1
        return sealed


def _read(path: Path) -> BinaryIO:
    return path.open("rb")


async def _sealed(open_: Opener, sealer: Sealer, digest: Any) -> AsyncIterator[bytes]:
    """The message sealed piece by piece, its SHA-256 taken on the way."""
    f = await asyncio.to_thread(open_)
    try:
        while block := await asyncio.to_thread(f.read, READ_BYTES):
            digest.update(block)
            if piece := sealer.update(block):
                yield piece
    finally:
        f.close()
    yield sealer.finish()
