"""The chunk stream between media and the recording service: its configuration and its reading.

Media publishes each synced batch of spool records of a recorded call as one message on
sb.<tenant>.rec.<call>.chunk (Nats-Msg-Id "<call>:<n>", so a re-sent chunk is stored once) and closes the
call with one `RecordingChunksEnd` on sb.<tenant>.rec.<call>.end. The recording service purges a call's
subjects only once the recording is stored and indexed: until then the stream is the recording's copy.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import msgspec
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from services.kernel.events import RecordingChunksEnd
from services.kernel.subjects import REC_STREAM, REC_SUBJECTS, rec_subject
from services.media.rtp.g711 import G711
from services.media.spool.spool import SpoolContents, parse_records

__all__ = [
    "CHUNK_MAX_AGE_S",
    "LAW_HEADER",
    "Chunks",
    "chunk_msg_id",
    "end_msg_id",
    "ensure_chunk_stream",
    "iter_chunks",
    "read_chunks",
]

# A safety net, not the normal path (the recording service purges each call when it has stored it): chunks
# of a recording nobody finalised for two weeks are dropped.
CHUNK_MAX_AGE_S = 14 * 24 * 3600.0
DEDUPE_WINDOW_S = 600.0
# Each chunk says its G.711 law, so a recording whose end marker never came (its worker was lost) can still
# be assembled from its chunks alone.
LAW_HEADER = "Sb-Law"


@dataclass
class Chunks:
    by_number: dict[int, bytes] = field(default_factory=dict)
    law: str | None = None


def chunk_msg_id(call_id: uuid.UUID | str, n: int) -> str:
    return f"{call_id}:{n}"


def end_msg_id(call_id: uuid.UUID | str) -> str:
    return f"{call_id}:end"


async def ensure_chunk_stream(js: JetStreamContext, replicas: int = 1) -> None:
    config = StreamConfig(
        name=REC_STREAM,
        subjects=[REC_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=CHUNK_MAX_AGE_S,
        duplicate_window=DEDUPE_WINDOW_S,
        # A full stream refuses new chunks (media keeps them in its spool and retries) rather than
        # dropping old ones: dropping would lose recordings silently.
        discard=DiscardPolicy.NEW,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(REC_STREAM)
        await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


async def iter_chunks(
    js: JetStreamContext, tenant_id: uuid.UUID, call_id: uuid.UUID, *, batch: int = 16, timeout: float = 5.0
) -> AsyncGenerator[tuple[int, bytes, str | None], None]:
    """A call's chunks in stream order, (number, data, law): an ephemeral pull consumer that acks nothing,
    so the count is exact and every wait is bounded; `batch` at a time (16 is 256 KB of call), so a long
    recording is never held whole."""
    sub = await js.pull_subscribe(
        rec_subject(tenant_id, call_id, "chunk"),
        stream=REC_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        while pending > 0:
            try:
                msgs = await sub.fetch(min(pending, batch), timeout=timeout)
            except (TimeoutError, NatsTimeout):
                break
            pending -= len(msgs)
            for msg in msgs:
                headers = msg.headers or {}
                _, _, n = headers.get("Nats-Msg-Id", "").rpartition(":")
                if n.isdigit():
                    yield int(n), msg.data, headers.get(LAW_HEADER)
    finally:
        await sub.unsubscribe()


async def read_chunks(
    js: JetStreamContext, tenant_id: uuid.UUID, call_id: uuid.UUID, *, timeout: float = 5.0
) -> Chunks:
    """Every chunk of a call in the stream, by number, in memory (short recordings, tests)."""
    found = Chunks()
    async for n, data, law in iter_chunks(js, tenant_id, call_id, batch=256, timeout=timeout):
        found.by_number[n] = data
        found.law = found.law or law
    return found


async def shipped_spool(
    js: JetStreamContext, tenant_id: uuid.UUID, call_id: uuid.UUID, *, timeout: float = 10.0
) -> SpoolContents:
    """A call's recording as media shipped it (its end marker and chunks, before the recording service
    takes them): for tests and for looking into a stuck recording."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            end_msg = await js.get_last_msg(REC_STREAM, rec_subject(tenant_id, call_id, "end"))
            break
        except NotFoundError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no end marker for {call_id} within {timeout} s") from None
            await asyncio.sleep(0.05)
    end = msgspec.json.decode(end_msg.data or b"", type=RecordingChunksEnd)
    chunks = await read_chunks(js, tenant_id, call_id)
    data = b"".join(chunks.by_number[n] for n in range(end.chunks) if n in chunks.by_number)
    return parse_records(data, G711[end.law], str(call_id))
