"""The SIP edge's outgoing events: the cores' events queued, then published in batches.

Everything queued is sent at once, one chain per call (order kept within a call, calls concurrent),
instead of awaiting each JetStream ack in turn. The cores stamp events with the media clock they are
driven by (monotonic, for their timers); the bus carries wall-clock time, stamped here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec

from services.kernel.log import get_logger
from services.kernel.messages import Event

__all__ = ["EventPublisher"]

log = get_logger()


class EventPublisher:
    def __init__(self, publish: Callable[[Event], Awaitable[None]]) -> None:
        self._publish = publish
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def emit(self, events: list[Event]) -> None:
        wall = time.time()
        for event in events:
            self._queue.put_nowait(msgspec.structs.replace(event, ts=wall))

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            chains: dict[object, list[Event]] = {}
            for event in batch:
                chains.setdefault(getattr(event, "call_id", None) or event.id, []).append(event)
            try:
                await asyncio.gather(*(self._chain(chain) for chain in chains.values()))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until everything queued has been published."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("events_not_published", pending=self._queue.qsize())

    async def _chain(self, chain: list[Event]) -> None:
        for event in chain:
            try:
                await self._publish(event)
            except Exception as exc:
                log.warning("publish_failed", kind=type(event).__name__, error=str(exc))
