"""The recordings index in PostgreSQL and the operations on a stored recording (read and verify, delete,
hold), shared by the recording service and the API. Every call takes a tenant-scoped connection
(`tenant_tx`): row-level security decides what exists."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from services.kernel.ids import new_id

from .policy import purge_after
from .store import BlobNotFound, BlobStore
from .vault import KeyRing, Opener, VaultError, blob_key_id

if TYPE_CHECKING:
    from .assemble import Plan

__all__ = [
    "RECORDING_COLUMNS",
    "RecordingError",
    "Segment",
    "StoredCopy",
    "Voicemail",
    "audit",
    "copy_id",
    "delete_recording",
    "mark_available",
    "mark_started",
    "mark_voicemail_available",
    "open_audio",
    "read_audio",
    "retention_days",
    "segment_of",
    "set_hold",
]

VOICEMAIL_RATE = 8000
# What media writes for a message (services/media/voicemail.py): the standard 44-byte PCM header.
VOICEMAIL_HEADER_BYTES = 44

RECORDING_COLUMNS = (
    "r.id, r.status, r.partial, r.law, r.duration_s, r.pauses, r.started_at, r.ended_at, r.available_at,"
    " r.sha256, r.size_bytes, r.retention_days, r.purge_after, r.legal_hold, r.deleted_at, r.deleted_reason"
)


class RecordingError(Exception):
    """`code`: not_found, not_available, held, corrupt, no_copy."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def audit(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    action: str,
    recording_id: uuid.UUID,
    *,
    actor_key_id: uuid.UUID | None = None,
    actor_role: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One line of the tenant's audit log (GET /v1/audit) per access or change of a recording."""
    await conn.execute(
        """INSERT INTO audit_log (id, tenant_id, actor_key_id, actor_role, action, target_type, target_id, detail)
           VALUES ($1, $2, $3, $4, $5, 'recording', $6, $7::jsonb)""",
        new_id(),
        tenant_id,
        actor_key_id,
        actor_role,
        action,
        str(recording_id),
        json.dumps(detail or {}),
    )


@dataclass(frozen=True)
class Segment:
    """Where a recording sits in its contact's conversation (segment 0 of a contact is the contact's id)."""

    contact_id: uuid.UUID | None = None
    number: int = 0
    kind: str = "talk"
    agent_id: uuid.UUID | None = None
    consulted_agent_id: uuid.UUID | None = None


def _agent(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def segment_of(fact: Any) -> Segment:
    """The segment labels a `call.recording` carries (from the coordinator's record_start)."""
    return Segment(
        contact_id=fact.contact_id,
        number=fact.segment,
        kind=fact.kind,
        agent_id=_agent(fact.agent_id),
        consulted_agent_id=_agent(fact.consulted_agent_id),
    )


async def mark_started(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    started_at: float,
    segment: Segment | None = None,
    *,
    call_id: uuid.UUID | None = None,
) -> bool:
    """The recording exists from its first moment (listed as `recording`), with its place in its contact's
    conversation (labels only, should it have been finalised first: the two consumers are independent) and
    the media call it is made on (`call_id`: how a lost worker's call.ended finds it); False when it existed
    already."""
    seg = segment or Segment()
    status = await conn.fetchval(
        """INSERT INTO recordings (id, tenant_id, status, started_at, contact_id, segment, segment_kind, agent_id,
               consulted_agent_id, call_id)
           VALUES ($1, $2, 'recording', $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (id) DO UPDATE SET contact_id = EXCLUDED.contact_id, segment = EXCLUDED.segment,
               segment_kind = EXCLUDED.segment_kind, agent_id = EXCLUDED.agent_id,
               consulted_agent_id = EXCLUDED.consulted_agent_id, call_id = EXCLUDED.call_id
           RETURNING (xmax = 0)""",
        recording_id,
        tenant_id,
        _utc(started_at),
        seg.contact_id,
        seg.number,
        seg.kind,
        seg.agent_id,
        seg.consulted_agent_id,
        call_id,
    )
    return bool(status)


async def retention_days(conn: asyncpg.Connection, tenant_id: uuid.UUID, contact_id: uuid.UUID) -> int | None:
    """The queue's retention if it has one, else the tenant's (None: kept until deleted)."""
    days: int | None = await conn.fetchval(
        """SELECT COALESCE(q.recording_retention_days, t.recording_retention_days)
           FROM tenants t
           LEFT JOIN contacts c ON c.id = COALESCE((SELECT contact_id FROM recordings WHERE id = $2), $2)
           LEFT JOIN queues q ON q.id = c.queue_id
           WHERE t.id = $1""",
        tenant_id,
        contact_id,
    )
    return days


@dataclass(frozen=True)
class StoredCopy:
    """A copy of a recording in another format (Opus in Ogg), sealed and stored beside the master."""

    key: str
    sha256: str
    size: int


def copy_id(recording_id: uuid.UUID, copy: str) -> uuid.UUID:
    """The id a copy is sealed under: bound to its recording and its format, so neither opens as the other."""
    return uuid.uuid5(recording_id, f"copy:{copy}")


async def mark_available(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    plan: Plan,
    sha256: str,
    *,
    started_at: float,
    ended_at: float,
    storage_key: str,
    key_id: uuid.UUID,
    size: int,
    retention: int | None,
    now: float,
    opus: StoredCopy | None = None,
) -> None:
    ended = _utc(ended_at)
    due = purge_after(ended, retention)
    await conn.execute(
        """INSERT INTO recordings (id, tenant_id, status, partial, law, duration_s, pauses, started_at, ended_at,
               available_at, storage_key, key_id, sha256, size_bytes, retention_days, purge_after,
               opus_key, opus_sha256, opus_size_bytes)
           VALUES ($1, $2, 'available', $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15,
               $16, $17, $18)
           ON CONFLICT (id) DO UPDATE SET status = 'available', partial = $3, law = $4, duration_s = $5,
               pauses = $6::jsonb, ended_at = $8, available_at = $9, storage_key = $10, key_id = $11,
               sha256 = $12, size_bytes = $13, retention_days = $14, purge_after = $15, opus_key = $16,
               opus_sha256 = $17, opus_size_bytes = $18""",
        recording_id,
        tenant_id,
        plan.partial,
        plan.law.name,
        plan.duration_s,
        json.dumps([[round(a, 3), round(b, 3)] for a, b in plan.pauses]),
        _utc(started_at),
        ended,
        _utc(now),
        storage_key,
        key_id,
        sha256,
        size,
        retention,
        due,
        opus.key if opus else None,
        opus.sha256 if opus else None,
        opus.size if opus else None,
    )
    await _schedule_purge(conn, tenant_id, recording_id, due)


async def _schedule_purge(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, recording_id: uuid.UUID, due: datetime | None
) -> None:
    if due is not None:
        await conn.execute(
            """INSERT INTO recording_purge_schedule (recording_id, tenant_id, purge_after) VALUES ($1, $2, $3)
               ON CONFLICT (recording_id) DO UPDATE SET purge_after = $3""",
            recording_id,
            tenant_id,
            due,
        )


@dataclass(frozen=True)
class Voicemail:
    """A message a caller left, sealed and stored: what the index keeps of it."""

    id: uuid.UUID
    left_on: uuid.UUID  # the caller's call (and contact)
    samples: int  # 8 kHz, one channel of 16-bit linear PCM
    sha256: str
    storage_key: str
    key_id: uuid.UUID
    size: int
    started_at: float
    ended_at: float


async def mark_voicemail_available(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, vm: Voicemail, *, now: float
) -> None:
    """Index a voicemail as an available recording of kind `voicemail`, under the tenant's retention (it is
    stored before routing queues its task, so no queue's retention can be known yet)."""
    retention: int | None = await conn.fetchval(
        "SELECT recording_retention_days FROM tenants WHERE id = $1", tenant_id
    )
    ended = _utc(vm.ended_at)
    due = purge_after(ended, retention)
    await conn.execute(
        """INSERT INTO recordings (id, tenant_id, status, law, duration_s, started_at, ended_at, available_at,
               storage_key, key_id, sha256, size_bytes, retention_days, purge_after, segment_kind, left_on,
               call_id)
           VALUES ($1, $2, 'available', 'L16', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'voicemail', $13, $13)
           ON CONFLICT (id) DO NOTHING""",
        vm.id,
        tenant_id,
        vm.samples / VOICEMAIL_RATE,
        _utc(vm.started_at),
        ended,
        _utc(now),
        vm.storage_key,
        vm.key_id,
        vm.sha256,
        vm.size,
        retention,
        due,
        vm.left_on,
    )
    await _schedule_purge(conn, tenant_id, vm.id, due)


@dataclass(frozen=True)
class Audio:
    wav: bytes
    sha256: str


@dataclass
class AudioStream:
    """A recording being read: `pieces` yields the WAV, every piece authenticated before it is yielded, and
    fails (RecordingError corrupt) at the first segment that does not open or, at the end, when the whole
    does not match the SHA-256 recorded. Everything short enough to fit in the first reads of the store is
    verified whole before `open_audio` returns, so its errors come before any byte is sent."""

    sha256: str
    size: int
    pieces: AsyncIterator[bytes]


async def open_audio(
    conn: asyncpg.Connection,
    keys: KeyRing,
    store: BlobStore,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    *,
    copy: str = "",
) -> AudioStream:
    """The WAV master, or with `copy="opus"` its Opus-in-Ogg copy (size 0: not known before the end)."""
    row = await conn.fetchrow(
        """SELECT status, storage_key, key_id, sha256, duration_s, opus_key, opus_sha256, law
           FROM recordings WHERE id = $1""",
        recording_id,
    )
    if row is None:
        raise RecordingError("not_found", "no such recording")
    if row["status"] != "available":
        raise RecordingError("not_available", f"the recording is {row['status']}")
    storage_key, sha256, sealed_as = row["storage_key"], row["sha256"], recording_id
    if copy == "opus":
        if row["opus_key"] is None:
            raise RecordingError(
                "no_copy",
                "this recording has no Opus copy (the tenant's opus_copy was off when it was stored)",
            )
        storage_key, sha256, sealed_as = row["opus_key"], row["opus_sha256"], copy_id(recording_id, "opus")
    elif copy:
        raise RecordingError("no_copy", f"no {copy!r} copy exists; formats: wav, opus")
    try:
        sealed = await store.open_stream(storage_key)
    except BlobNotFound:
        raise RecordingError("corrupt", "the recording's file is missing from the store") from None
    reader = _Verified(sealed, sha256)
    try:
        head = await reader.head(lambda key_id: _data_key(conn, keys, tenant_id, row["key_id"], key_id))
        opener = Opener(head, tenant_id, sealed_as)
        first = await reader.first(opener)
    except BaseException:
        await sealed.aclose()
        raise
    samples = round(row["duration_s"] * 8000)
    if row["law"] == "L16":  # a voicemail: one channel of 16-bit PCM as media wrote it
        return AudioStream(sha256, VOICEMAIL_HEADER_BYTES + 2 * samples, reader.rest(first))
    # Imported here: the G.711 tables load numpy, which the API needs for nothing else (half a second of
    # every API process's start-up).
    from services.media.rtp.g711 import G711
    from services.media.spool import wav_header

    size = 0 if copy else len(wav_header(G711.PCMU, samples)) + 2 * samples
    return AudioStream(sha256, size, reader.rest(first))


async def _data_key(
    conn: asyncpg.Connection, keys: KeyRing, tenant_id: uuid.UUID, indexed: uuid.UUID, named: uuid.UUID
) -> bytes:
    if named != indexed:
        raise RecordingError("corrupt", "the recording's file was sealed with another key")
    try:
        return await keys.get(conn, tenant_id, indexed)
    except VaultError as exc:
        raise RecordingError("corrupt", str(exc)) from None


class _Verified:
    """The store's pieces through an `Opener` and a running SHA-256."""

    def __init__(self, sealed: AsyncGenerator[bytes, None], sha256: str) -> None:
        self.sealed = sealed
        self.expected = sha256
        self.digest = hashlib.sha256()
        self.buffer = b""
        self.opener: Opener | None = None
        self.ended = False

    async def head(self, key_for: Any) -> bytes:
        while len(self.buffer) < 20:
            piece = await anext(self.sealed, None)
            if piece is None:
                raise RecordingError("corrupt", "not a sealed recording (bad header)")
            self.buffer += piece
        try:
            key_id = blob_key_id(self.buffer)
        except VaultError as exc:
            raise RecordingError("corrupt", str(exc)) from None
        data_key: bytes = await key_for(key_id)
        return data_key

    async def first(self, opener: Opener) -> bytes:
        """Pieces until some plaintext is authentic, or the whole file when it ends first (then verified)."""
        self.opener = opener
        out = self._feed(self.buffer)
        self.buffer = b""
        while not out and not self.ended:
            piece = await anext(self.sealed, None)
            if piece is None:
                out = self._end()
            else:
                out = self._feed(piece)
        return out

    async def rest(self, first: bytes) -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            while not self.ended:
                piece = await anext(self.sealed, None)
                out = self._end() if piece is None else self._feed(piece)
                if out:
                    yield out
        finally:
            await self.sealed.aclose()

    def _feed(self, sealed: bytes) -> bytes:
        assert self.opener is not None
        try:
            out = self.opener.feed(sealed)
        except VaultError as exc:
            raise RecordingError("corrupt", str(exc)) from None
        self.digest.update(out)
        return out

    def _end(self) -> bytes:
        assert self.opener is not None
        self.ended = True
        try:
            out = self.opener.finish()
        except VaultError as exc:
            raise RecordingError("corrupt", str(exc)) from None
        self.digest.update(out)
        if self.digest.hexdigest() != self.expected:
            raise RecordingError("corrupt", "the recording's SHA-256 does not match the one recorded")
        return out


async def read_audio(
    conn: asyncpg.Connection, keys: KeyRing, store: BlobStore, tenant_id: uuid.UUID, recording_id: uuid.UUID
) -> Audio:
    """The decrypted WAV whole, its SHA-256 checked against the index (short recordings, tests)."""
    audio = await open_audio(conn, keys, store, tenant_id, recording_id)
    wav = b"".join([piece async for piece in audio.pieces])
    return Audio(wav, audio.sha256)


async def delete_recording(
    conn: asyncpg.Connection,
    store: BlobStore,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    *,
    reason: str,
    now: float,
    actor_key_id: uuid.UUID | None = None,
    actor_role: str | None = None,
) -> bool:
    """Delete the audio (the row stays, marked deleted) with an audit entry; False when already deleted.
    A legal hold refuses it, for a request and for the purge alike."""
    row = await conn.fetchrow(
        "SELECT status, legal_hold, storage_key, opus_key FROM recordings WHERE id = $1 FOR UPDATE",
        recording_id,
    )
    if row is None:
        raise RecordingError("not_found", "no such recording")
    if row["legal_hold"]:
        raise RecordingError("held", "the recording is under legal hold; release the hold first")
    if row["status"] == "deleted":
        return False
    for key in (row["storage_key"], row["opus_key"]):
        if key:
            await store.delete(key)
    await conn.execute(
        """UPDATE recordings SET status = 'deleted', deleted_at = $2, deleted_reason = $3, storage_key = NULL,
               opus_key = NULL WHERE id = $1""",
        recording_id,
        _utc(now),
        reason,
    )
    await conn.execute("DELETE FROM recording_purge_schedule WHERE recording_id = $1", recording_id)
    action = "recording.purged" if reason == "retention" else "recording.deleted"
    await audit(conn, tenant_id, action, recording_id, actor_key_id=actor_key_id, actor_role=actor_role)
    return True


async def set_hold(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    hold: bool,
    *,
    actor_key_id: uuid.UUID | None = None,
    actor_role: str | None = None,
) -> None:
    """A held recording leaves the purge schedule; released, it goes back with its due date."""
    row = await conn.fetchrow(
        "UPDATE recordings SET legal_hold = $2 WHERE id = $1 RETURNING status, purge_after",
        recording_id,
        hold,
    )
    if row is None:
        raise RecordingError("not_found", "no such recording")
    if hold or row["purge_after"] is None or row["status"] == "deleted":
        await conn.execute("DELETE FROM recording_purge_schedule WHERE recording_id = $1", recording_id)
    else:
        await conn.execute(
            """INSERT INTO recording_purge_schedule (recording_id, tenant_id, purge_after) VALUES ($1, $2, $3)
               ON CONFLICT (recording_id) DO UPDATE SET purge_after = $3""",
            recording_id,
            tenant_id,
            row["purge_after"],
        )
    await audit(
        conn,
        tenant_id,
        "recording.hold" if hold else "recording.release",
        recording_id,
        actor_key_id=actor_key_id,
        actor_role=actor_role,
    )
