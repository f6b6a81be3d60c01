"""The recording service's asyncio adapter: chunks in, sealed and indexed recordings out.

Two durable JetStream consumers, so a recording service that was down catches up on restart:
- `<durable>-ends` on SB_RECORDING_CHUNKS, the end markers: assemble the call's chunks, seal them with the
  tenant's data key, put them in the store, index them in PostgreSQL, and only then purge the call's
  chunks from the stream and acknowledge. Killed anywhere in between, the marker comes back and the
  steps run again (each is idempotent; a recording already indexed is only purged and acknowledged).
- `<durable>-calls` on SB_EVENTS: call.recording (started, paused, resumed) becomes recording.* events and
  the row that lists a recording in progress; call.ended with cause media_worker_lost closes that call's
  recording as partial with the chunks JetStream holds (the worker can no longer send its end marker).
- `<durable>-voicemails` on SB_EVENTS: call.record_finished, a caller's message, sealed and indexed as a
  recording of kind voicemail (voicemails.py).

The purge of recordings past their retention runs here too (`purge_due`, time passed in).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.serving import Consumer
from services.kernel.subjects import REC_STREAM, rec_subject

from .assemble import Frames, Plan, Survey
from .chunks import LAW_HEADER, end_msg_id, ensure_chunk_stream, iter_chunks
from .opus import OggOpusEncoder
from .records import (
    RecordingError,
    StoredCopy,
    copy_id,
    delete_recording,
    mark_available,
    mark_started,
    retention_days,
    segment_of,
)
from .store import BlobStore, recording_key
from .vault import KeyRing, Sealer
from .voicemails import VoicemailVault

__all__ = ["CONSUMER", "RecordingPipeline"]

CONSUMER = "recording"
# Sealing and storing an hour-long recording takes well under this; a longer step is redelivered and runs
# again (idempotent).
ACK_WAIT_S = 60.0
# A step that failed (its store, database or master key unreachable) is tried again this much later.
RETRY_S = 5.0
LOST_CAUSE = "media_worker_lost"
FINALISE_CONCURRENCY = 8
# A recording whose chunks add up to at most this (about a minute of call) is read from JetStream once and
# kept for the second pass; a longer one is read twice, never held.
HOLD_BYTES = 1024 * 1024


def _derived(recording_id: uuid.UUID, what: str) -> uuid.UUID:
    """A fact's event id derived from the recording, so a replay publishes nothing new (JetStream dedupes)."""
    return uuid.uuid5(recording_id, what)


class RecordingPipeline:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        keys: KeyRing,
        store: BlobStore,
        *,
        durable: str = CONSUMER,
        replicas: int = 1,
        clock: Callable[[], float] = time.time,
        voicemails: VoicemailVault | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.keys = keys
        self.store = store
        self.durable = durable
        self.replicas = replicas
        self.clock = clock
        self.log = get_logger()
        self._pumps: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._calls: Consumer | None = None
        self.voicemails = voicemails
        self.retry_s = retry_s
        self._voicemails: Consumer | None = None
        self._stopping = False
        self.finalised = 0

    async def start(self) -> None:
        js = self.bus.js
        await ensure_chunk_stream(js, self.replicas)
        # The end markers are not events (and live on their own stream): a pull consumer of our own.
        name = f"{self.durable}-ends"
        config = ConsumerConfig(
            durable_name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=1000,
            filter_subject="sb.*.rec.*.end",
        )
        try:
            await js.add_consumer(REC_STREAM, config)
        except Exception as exc:  # it exists already (same config): a restart
            self.log.info("recording_consumer_exists", consumer=name, detail=str(exc)[:120])
        ends = await js.pull_subscribe_bind(name, stream=REC_STREAM)
        self._subs = [ends]
        self._pumps = [asyncio.create_task(self._pump(ends, self._on_end))]
        self._calls = await self.bus.consume(
            [ev.CallRecording, ev.CallEnded], durable=f"{self.durable}-calls", handler=self._on_call_event
        )
        if self.voicemails is not None:
            self._voicemails = await self.bus.consume(
                [ev.CallRecordFinished],
                durable=f"{self.durable}-voicemails",
                handler=self._on_voicemail,
                ack_wait=ACK_WAIT_S,
            )

    async def stop(self) -> None:
        self._stopping = True
        for consumer in (self._calls, self._voicemails):
            if consumer is not None:
                await consumer.stop()
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for sub in self._subs:
            try:  # bounded: with NATS gone an unsubscribe can wait for a reconnect that never comes
                await asyncio.wait_for(sub.unsubscribe(), 1.0)
            except Exception:
                pass
        self._subs = []

    async def _pump(self, sub: Any, handle: Callable[[Msg], Any]) -> None:
        # One message per pull (nats-py's batched fetch waits out its timeout for the rest of a batch), but
        # up to FINALISE_CONCURRENCY recordings finalised at once: each waits on the store, PostgreSQL and
        # JetStream, and one at a time a burst of hang-ups queued for seconds.
        slots = asyncio.Semaphore(FINALISE_CONCURRENCY)
        running: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                await slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except (TimeoutError, NotFoundError):
                    slots.release()
                    continue
                except asyncio.CancelledError:
                    slots.release()
                    raise
                except Exception as exc:
                    slots.release()
                    self.log.warning("recording_fetch_failed", error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    slots.release()
                    continue
                task = asyncio.create_task(self._one(msgs[0], handle, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            if running:  # a stop lets the steps under way finish, briefly: an unacked one comes back anyway
                await asyncio.wait(running, timeout=2.0)

    async def _one(self, msg: Msg, handle: Callable[[Msg], Any], slots: asyncio.Semaphore) -> None:
        try:
            await handle(msg)
        except Exception as exc:
            # Not acknowledged: it comes back after RETRY_S (a store, database or KMS outage heals).
            self.log.error("recording_step_failed", subject=msg.subject, error=f"{type(exc).__name__}: {exc}")
            try:
                await msg.nak(delay=self.retry_s)
            except Exception:
                pass  # then after ACK_WAIT_S
            return
        finally:
            slots.release()
        try:
            await msg.ack()
        except Exception:
            pass

    # -- the end of a call's chunks ----------------------------------------------------------------

    async def _on_end(self, msg: Msg) -> None:
        try:
            end = msgspec.json.decode(msg.data, type=ev.RecordingChunksEnd)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.log.warning("recording_bad_end_marker", subject=msg.subject, error=str(exc)[:200])
            return  # acknowledged: it would never decode
        if msg.subject != rec_subject(end.tenant_id, end.call_id, "end"):
            self.log.warning("recording_end_marker_elsewhere", subject=msg.subject)
            return  # a marker must sit under its own tenant's subject
        await self.finalise(end)

    async def finalise(self, end: ev.RecordingChunksEnd) -> None:
        tenant, rid = end.tenant_id, end.call_id
        async with tenant_tx(self.pool, tenant, readonly=True) as conn:
            status = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", rid)
        if status not in ("available", "deleted"):
            # Two passes over the chunks (the WAV header says the length before any audio), each holding
            # one batch of chunks and one sealed segment at a time: an hour of call is never held whole.
            # A short recording's chunks (most calls) are kept from the first pass for the second.
            survey = Survey(end.law, declared=end.chunks, cut_short=end.partial)
            held: list[tuple[int, bytes]] | None = []
            kept = 0
            async with aclosing(iter_chunks(self.bus.js, tenant, rid)) as chunks:
                async for n, data, _law in chunks:
                    survey.push(n, data)
                    kept += len(data)
                    if held is not None and kept <= HOLD_BYTES:
                        held.append((n, data))
                    else:
                        held = None  # too long to keep: read again
                    if survey.done:
                        break
            plan = survey.plan()
            async with tenant_tx(self.pool, tenant) as conn:
                key_id, data_key = await self.keys.current(conn, tenant)
                opus_copy = await conn.fetchval(
                    "SELECT recording_opus_copy FROM tenants WHERE id = $1", tenant
                )
            frames = Frames(plan)
            sealer = Sealer(data_key, key_id, tenant, rid)
            key = recording_key(tenant, rid)
            size = await self.store.put_stream(key, self._sealed_wav(tenant, rid, frames, sealer, held))
            sha256 = frames.digest.hexdigest()
            opus = await self._store_opus(tenant, rid, plan, key_id, data_key, held) if opus_copy else None
            async with tenant_tx(self.pool, tenant) as conn:
                await mark_available(
                    conn,
                    tenant,
                    rid,
                    plan,
                    sha256,
                    storage_key=key,
                    key_id=key_id,
                    size=size,
                    started_at=end.started_at,
                    ended_at=end.ended_at,
                    retention=await retention_days(conn, tenant, rid),
                    now=self.clock(),
                    opus=opus,
                )
            await self.bus.publish(
                ev.RecordingAvailable(
                    id=_derived(rid, "available"),
                    tenant_id=tenant,
                    recording_id=rid,
                    duration=plan.duration_s,
                    partial=plan.partial,
                    sha256=sha256,
                )
            )
            self.finalised += 1
            self.log.info(
                "recording_available",
                recording=str(rid),
                seconds=round(plan.duration_s, 2),
                partial=plan.partial,
            )
        # Stored and indexed: the stream's copy can go.
        await self.bus.js.purge_stream(REC_STREAM, subject=rec_subject(tenant, rid, "*"))

    async def _again(
        self, tenant: uuid.UUID, rid: uuid.UUID, held: list[tuple[int, bytes]] | None
    ) -> AsyncGenerator[tuple[int, bytes, str | None], None]:
        """The chunks once more: those the first pass kept, or from the stream."""
        if held is not None:
            for n, data in held:
                yield n, data, None
            return
        async with aclosing(iter_chunks(self.bus.js, tenant, rid)) as chunks:
            async for item in chunks:
                yield item

    async def _sealed_wav(
        self,
        tenant: uuid.UUID,
        rid: uuid.UUID,
        frames: Frames,
        sealer: Sealer,
        held: list[tuple[int, bytes]] | None,
    ) -> AsyncIterator[bytes]:
        yield sealer.update(frames.header())
        async with aclosing(self._again(tenant, rid, held)) as chunks:
            async for n, data, _law in chunks:
                piece = sealer.update(frames.push(n, data))
                if piece:
                    yield piece
                if frames.done:
                    break
        for silence in frames.finish():
            yield sealer.update(silence)
        yield sealer.finish()

    async def _store_opus(
        self,
        tenant: uuid.UUID,
        rid: uuid.UUID,
        plan: Plan,
        key_id: uuid.UUID,
        data_key: bytes,
        held: list[tuple[int, bytes]] | None,
    ) -> StoredCopy:
        """The Opus-in-Ogg copy: a third pass over the chunks, encoded on a worker thread (libopus), sealed
        under the copy's own id (a copy swapped for its master does not open) and stored beside it."""
        frames = Frames(plan)
        encoder = OggOpusEncoder(plan.law)
        sealer = Sealer(data_key, key_id, tenant, copy_id(rid, "opus"))
        digest = hashlib.sha256()

        async def pieces() -> AsyncIterator[bytes]:
            async with aclosing(self._again(tenant, rid, held)) as chunks:
                async for n, data, _law in chunks:
                    ogg = await asyncio.to_thread(encoder.push, frames.push(n, data))
                    digest.update(ogg)
                    if piece := sealer.update(ogg):
                        yield piece
                    if frames.done:
                        break
            tail = b"".join(frames.finish())
            ogg = await asyncio.to_thread(lambda: encoder.push(tail) + encoder.finish())
            digest.update(ogg)
            yield sealer.update(ogg) + sealer.finish()

        key = recording_key(tenant, rid, "opus")
        size = await self.store.put_stream(key, pieces())
        return StoredCopy(key, digest.hexdigest(), size)

    async def _on_voicemail(self, event: Event) -> None:
        if isinstance(event, ev.CallRecordFinished) and self.voicemails is not None:
            await self.voicemails.on_finished(event)

    # -- call facts --------------------------------------------------------------------------------

    async def _on_call_event(self, event: Event) -> None:
        if isinstance(event, ev.CallRecording):
            await self._recording_fact(event)
        elif isinstance(event, ev.CallEnded) and event.cause == LOST_CAUSE:
            await self._worker_lost(event.tenant_id, event.call_id)

    async def _recording_fact(self, fact: ev.CallRecording) -> None:
        rid = fact.recording_id or fact.call_id
        if fact.state == "started":
            async with tenant_tx(self.pool, fact.tenant_id) as conn:
                await mark_started(conn, fact.tenant_id, rid, fact.ts, segment_of(fact), call_id=fact.call_id)
            event: Event = ev.RecordingStarted(
                id=_derived(fact.id, "started"), tenant_id=fact.tenant_id, recording_id=rid
            )
        elif fact.state == "paused":
            event = ev.RecordingPaused(
                id=_derived(fact.id, "paused"), tenant_id=fact.tenant_id, recording_id=rid
            )
        elif fact.state == "resumed":
            event = ev.RecordingResumed(
                id=_derived(fact.id, "resumed"), tenant_id=fact.tenant_id, recording_id=rid
            )
        else:
            return  # stopped: the end marker on the chunk stream carries it
        await self.bus.publish(event)

    async def _worker_lost(self, tenant: uuid.UUID, call_id: uuid.UUID) -> None:
        """The worker cannot send its end marker: write it, partial, from what the stream holds."""
        # The recordings still arriving that were made on this call (a callback's is on the customer's call,
        # not the contact's id), or that are its own or its contact's segments (a transfer's next agent, a
        # consultation; and rows from before call_id was kept).
        async with tenant_tx(self.pool, tenant, readonly=True) as conn:
            rows = await conn.fetch(
                """SELECT id, started_at FROM recordings
                   WHERE (call_id = $1 OR id = $1 OR contact_id = $1) AND status = 'recording'""",
                call_id,
            )
        for row in rows:
            await self._cut_short(tenant, row["id"], row["started_at"].timestamp())

    async def _cut_short(self, tenant: uuid.UUID, call_id: uuid.UUID, started_at: float) -> None:
        law, count = None, 0
        async with aclosing(iter_chunks(self.bus.js, tenant, call_id)) as chunks:
            async for n, _data, chunk_law in chunks:
                law, count = law or chunk_law, max(count, n + 1)
        end = ev.RecordingChunksEnd(
            tenant_id=tenant,
            call_id=call_id,
            law="PCMA" if law == "PCMA" else "PCMU",
            chunks=count,
            started_at=started_at,
            ended_at=self.clock(),
            partial=True,
            reason=LOST_CAUSE,
        )
        # The same message id as the worker's own marker: if that one did arrive, JetStream keeps one.
        await self.bus.js.publish(
            rec_subject(tenant, call_id, "end"),
            msgspec.json.encode(end),
            stream=REC_STREAM,
            headers={"Nats-Msg-Id": end_msg_id(call_id), LAW_HEADER: end.law},
        )

    # -- retention ---------------------------------------------------------------------------------

    async def purge_due(self, now: float, *, limit: int = 500) -> list[uuid.UUID]:
        """Delete every recording past its retention (not under hold) as of `now`; the ones that went."""
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SELECT set_config('app.recording_purge_scan', 'on', true)")
            due = await conn.fetch(
                """SELECT recording_id, tenant_id FROM recording_purge_schedule WHERE purge_after <= $1
                   ORDER BY purge_after LIMIT $2""",
                datetime.fromtimestamp(now, UTC),
                limit,
            )
        purged: list[uuid.UUID] = []
        for row in due:
            tenant, rid = row["tenant_id"], row["recording_id"]
            try:
                async with tenant_tx(self.pool, tenant) as conn:
                    deleted = await delete_recording(
                        conn, self.store, tenant, rid, reason="retention", now=now, actor_role="system"
                    )
            except RecordingError as exc:
                self.log.warning("recording_purge_skipped", recording=str(rid), reason=exc.code)
                async with tenant_tx(self.pool, tenant) as conn:
                    await conn.execute("DELETE FROM recording_purge_schedule WHERE recording_id = $1", rid)
                continue
            if deleted:
                purged.append(rid)
                await self.bus.publish(
                    ev.RecordingDeleted(
                        id=_derived(rid, "deleted"), tenant_id=tenant, recording_id=rid, reason="retention"
                    )
                )
        return purged

    async def next_purge_at(self) -> float | None:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SELECT set_config('app.recording_purge_scan', 'on', true)")
            due = await conn.fetchval("SELECT min(purge_after) FROM recording_purge_schedule")
        return None if due is None else due.timestamp()
