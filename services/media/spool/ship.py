"""Ships recorded calls' spool chunks to the recording service over JetStream (SB_RECORDING_CHUNKS).

Each call has one queue and one task, so its chunks are published in order and its end marker only after
every chunk is stored by JetStream. The local spool stays on disk until that end marker is acknowledged:
then the stream holds the whole recording and the spool goes. NATS away: the task retries (the spool keeps
the audio meanwhile); the worker killed: what JetStream already has is kept, and the recording service
closes the recording as partial when it sees the worker lost (services/recording/pipeline.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.js import JetStreamContext

from services.kernel.events import ChunkLaw, RecordingChunksEnd
from services.kernel.log import get_logger
from services.kernel.subjects import REC_STREAM, rec_subject
from services.media.rtp.g711 import G711
from services.recording.chunks import LAW_HEADER, chunk_msg_id, end_msg_id, read_chunks

from .spool import MANIFEST, RECORDS, SpoolWriter

__all__ = ["ChunkShipper", "reship_leftovers"]

log = get_logger()
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0


@dataclass
class _Shipment:
    tenant_id: uuid.UUID
    call_id: uuid.UUID
    writer: SpoolWriter
    started_at: float
    queue: asyncio.Queue[tuple[str, bytes, str, str] | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class ChunkShipper:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._shipments: dict[uuid.UUID, _Shipment] = {}

    def attach(self, writer: SpoolWriter, tenant_id: uuid.UUID, call_id: uuid.UUID) -> None:
        """From now on every chunk `writer` syncs is published (called on the event loop's thread)."""
        shipment = _Shipment(tenant_id, call_id, writer, started_at=time.time())
        subject = rec_subject(tenant_id, call_id, "chunk")
        law = writer.law.name

        def on_chunk(n: int, data: bytes) -> None:
            shipment.queue.put_nowait((subject, data, chunk_msg_id(call_id, n), law))

        writer.on_chunk = on_chunk
        shipment.task = asyncio.create_task(self._run(shipment))
        self._shipments[call_id] = shipment

    def finish(self, call_id: uuid.UUID) -> None:
        """The writer is closed: publish the end marker after its last chunk, then drop the spool."""
        shipment = self._shipments.get(call_id)
        if shipment is None:
            return
        writer = shipment.writer
        writer.on_chunk = None
        end = RecordingChunksEnd(
            tenant_id=shipment.tenant_id,
            call_id=call_id,
            law=_law_name(writer.law),
            chunks=writer.chunks,
            started_at=shipment.started_at,
            ended_at=time.time(),
        )
        shipment.queue.put_nowait(
            (
                rec_subject(shipment.tenant_id, call_id, "end"),
                msgspec.json.encode(end),
                end_msg_id(call_id),
                writer.law.name,
            )
        )
        shipment.queue.put_nowait(None)

    async def _run(self, shipment: _Shipment) -> None:
        ended = False
        while True:
            item = await shipment.queue.get()
            if item is None:
                shipment.queue.task_done()
                break
            subject, data, msg_id, law = item
            await _publish(self.js, subject, data, {"Nats-Msg-Id": msg_id, LAW_HEADER: law})
            ended = subject.endswith(".end")
            shipment.queue.task_done()
        self._shipments.pop(shipment.call_id, None)
        if ended:
            # JetStream holds the whole recording now; the local copy has done its job.
            shutil.rmtree(shipment.writer.directory, ignore_errors=True)

    async def sent(self, call_id: uuid.UUID) -> None:
        """Until every chunk queued so far for `call_id` is stored by JetStream."""
        shipment = self._shipments.get(call_id)
        if shipment is not None:
            await shipment.queue.join()

    async def stop(self, timeout: float = 5.0) -> None:
        """Let pending chunks go out for a while, then give up (the local spool still has them)."""
        tasks = [s.task for s in self._shipments.values() if s.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._shipments)


async def _publish(js: JetStreamContext, subject: str, data: bytes, headers: dict[str, str]) -> None:
    wait = RETRY_MIN_S
    while True:
        try:
            await js.publish(subject, data, stream=REC_STREAM, headers=headers, timeout=5.0)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS away or the stream full: the spool keeps the audio meanwhile
            log.warning(
                "recording_chunk_publish_failed", subject=subject, error=f"{type(exc).__name__}: {exc}"
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)


def _law_name(law: G711) -> ChunkLaw:
    return "PCMA" if law is G711.PCMA else "PCMU"


@dataclass(frozen=True)
class _Leftover:
    directory: Path
    tenant_id: uuid.UUID
    call_id: uuid.UUID
    law: G711
    started_at: float
    data: bytes


def _leftovers(spool_dir: Path) -> list[_Leftover]:
    """Spools no writer holds (their lock is free: the process that wrote them is gone)."""
    found: list[_Leftover] = []
    for directory in sorted(p for p in Path(spool_dir).glob("*") if p.is_dir()):
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            tenant_id, call_id = uuid.UUID(manifest["tenant_id"]), uuid.UUID(manifest["call_id"])
            with open(directory / RECORDS, "rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live call of this worker or of another one sharing the data dir
                data = f.read()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "spool_leftover_unreadable", spool=str(directory), error=f"{type(exc).__name__}: {exc}"
            )
            continue
        found.append(
            _Leftover(
                directory,
                tenant_id,
                call_id,
                G711[manifest["law"]],  # KeyError: unreadable, as for a missing field
                float(manifest.get("started_at") or 0),
                data,
            )
        )
    return found


async def reship_leftovers(js: JetStreamContext, spool_dir: Path) -> int:
    """Ship the spools a dead worker left. JetStream already has chunks 0..k-1, which are the file's first
    bytes in order (each chunk is exactly one synced append); the rest of the file goes out as chunk k, then
    an end marker, partial (the call was cut). Each spool is removed once both are stored."""
    shipped = 0
    for left in await asyncio.to_thread(_leftovers, spool_dir):
        chunks = (await read_chunks(js, left.tenant_id, left.call_id)).by_number
        count = sent = 0
        while count in chunks and left.data[sent : sent + len(chunks[count])] == chunks[count]:
            sent += len(chunks[count])
            count += 1
        headers = {LAW_HEADER: left.law.name}
        if sent < len(left.data):
            subject = rec_subject(left.tenant_id, left.call_id, "chunk")
            await _publish(
                js, subject, left.data[sent:], {**headers, "Nats-Msg-Id": chunk_msg_id(left.call_id, count)}
            )
            count += 1
        end = RecordingChunksEnd(
            tenant_id=left.tenant_id,
            call_id=left.call_id,
            law=_law_name(left.law),
            chunks=count,
            started_at=left.started_at,
            ended_at=time.time(),
            partial=True,
            reason="reshipped",
        )
        subject = rec_subject(left.tenant_id, left.call_id, "end")
        await _publish(
            js, subject, msgspec.json.encode(end), {**headers, "Nats-Msg-Id": end_msg_id(left.call_id)}
        )
        await asyncio.to_thread(shutil.rmtree, left.directory, True)
        shipped += 1
        log.info("spool_reshipped", call_id=str(left.call_id), chunks=count)
    return shipped
