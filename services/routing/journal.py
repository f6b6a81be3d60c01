"""Durability of the routing engines: an input journal in JetStream and snapshots in the object store.

- Stream SB_ROUTING, subjects sb.sys.routing.journal.<tenant>: every input applied to a tenant's engine (a
  command with its `now`, or a timer tick with its `now`), appended and acknowledged before it is applied.
- Object store bucket sb_routing_snapshots, object <tenant>: the engine's snapshot (can be MBs; the object
  store chunks it), prefixed with the journal sequence it covers (8 bytes, big endian).
- Recovery: restore the snapshot, then re-apply the journal entries after its sequence. The core is
  deterministic, so this rebuilds the same state and the same outputs (same seq, so publishes are
  de-duplicated by JetStream).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from .core import AnyCommand

__all__ = ["JOURNAL_STREAM", "Entry", "Journal", "journal_subject"]

JOURNAL_STREAM = "SB_ROUTING"
JOURNAL_PREFIX = "sb.sys.routing.journal"
SNAPSHOT_BUCKET = "sb_routing_snapshots"
_HEADER = struct.Struct(">Q")


class Entry(msgspec.Struct, kw_only=True):
    now: float
    cmd: AnyCommand | None = None  # None: a timer tick


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def journal_subject(tenant_id: uuid.UUID | str) -> str:
    return f"{JOURNAL_PREFIX}.{uuid.UUID(str(tenant_id))}"


class Journal:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._store: ObjectStore | None = None

    async def ensure(self, replicas: int = 1) -> None:
        config = StreamConfig(
            name=JOURNAL_STREAM,
            subjects=[f"{JOURNAL_PREFIX}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            # Large Configure inputs (thousands of agents) must fit in one entry.
            max_msg_size=-1,
        )
        try:
            await self.js.stream_info(JOURNAL_STREAM)
        except NotFoundError:
            await self.js.add_stream(config)
        try:
            self._store = await self.js.object_store(SNAPSHOT_BUCKET)
        except NotFoundError:
            self._store = await self.js.create_object_store(SNAPSHOT_BUCKET)

    async def append(self, tenant_id: uuid.UUID, entry: Entry) -> int:
        ack = await self.js.publish(journal_subject(tenant_id), _encoder.encode(entry))
        return int(ack.seq)

    async def save_snapshot(self, tenant_id: uuid.UUID, journal_seq: int, data: bytes) -> None:
        assert self._store is not None
        await self._store.put(str(tenant_id), _HEADER.pack(journal_seq) + data)
        # Entries the snapshot covers are not needed any more.
        await self.js.purge_stream(JOURNAL_STREAM, subject=journal_subject(tenant_id), seq=journal_seq + 1)

    async def load_snapshot(self, tenant_id: uuid.UUID) -> tuple[int, bytes] | None:
        assert self._store is not None
        try:
            result = await self._store.get(str(tenant_id))
        except (ObjectNotFoundError, NotFoundError):
            return None
        data = result.data or b""
        if len(data) < _HEADER.size:
            return None
        (seq,) = _HEADER.unpack_from(data)
        return seq, data[_HEADER.size :]

    async def last_seq(self, tenant_id: uuid.UUID) -> int:
        try:
            msg = await self.js.get_last_msg(JOURNAL_STREAM, journal_subject(tenant_id))
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def replay(self, tenant_id: uuid.UUID, after_seq: int) -> AsyncIterator[tuple[int, Entry]]:
        """The tenant's entries after `after_seq`, in order, up to the last one stored now."""
        last = await self.last_seq(tenant_id)
        if last <= after_seq:
            return
        sub = await self.js.subscribe(
            journal_subject(tenant_id),
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1
            ),
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=5.0)
                seq = int(msg.metadata.sequence.stream)
                yield seq, _decoder.decode(msg.data)
                if seq >= last:
                    return
        finally:
            await sub.unsubscribe()

    async def tenants(self) -> set[uuid.UUID]:
        """Tenants with a journal or a snapshot: the ones to recover at start."""
        found: set[uuid.UUID] = set()
        info = await self.js.stream_info(JOURNAL_STREAM, subjects_filter=f"{JOURNAL_PREFIX}.*")
        for subject in (info.state.subjects or {}).keys():
            found.add(uuid.UUID(subject.rsplit(".", 1)[1]))
        assert self._store is not None
        try:
            # Bounded: nats-py lists an object store with a watcher, which can wait for ever (as KeyValue.keys).
            for obj in await asyncio.wait_for(self._store.list(), 5.0):
                if not obj.deleted:
                    found.add(uuid.UUID(obj.name))
        except (TimeoutError, NotFoundError, Exception):  # nats-py raises on an empty bucket
            pass
        return found
