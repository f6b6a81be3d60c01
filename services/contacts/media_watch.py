"""The coordinator watches media processes that have no SIP front (services/media/front/loss.py decides): when one
dies (kill -9, a crash, a hang), its calls are ended within seconds (`call.ended`, cause media_worker_lost),
so their records, routing and limits are freed without waiting for anyone to restart.

This adapter only feeds the KV bucket `sb_media_workers` and a clock into `StandaloneWatch` and publishes
what it decides."""

from __future__ import annotations

import asyncio
import socket
import time

import msgspec

from services.kernel.bus import Bus
from services.kernel.events import MediaWorkerRegistration
from services.kernel.log import get_logger
from services.media.front.dispatch import Reply, WorkerLost
from services.media.front.link import follow_registrations
from services.media.front.loss import StandaloneWatch, publish_lost

__all__ = ["MediaWatch", "send_byes"]

log = get_logger()

TICK_S = 0.5
# A BYE over UDP is sent again after T1 and 2*T1 (RFC 3261 §17.1.2.2), as its own transaction would: the
# caller answers a repeat like the first; nobody is left to take the answers.
BYE_REPEATS_S = (0.0, 0.5, 1.0)


async def send_byes(byes: tuple[Reply, ...]) -> None:
    """End the SIP callers of a dead process (the BYEs it left in its registration), from a port of our own:
    the caller matches a request to its dialog by Call-ID and tags, not by where it came from."""
    if not byes:
        return
    loop = asyncio.get_running_loop()
    transports = []
    try:
        for bye in byes:
            _, host, port = bye.peer
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, family=family)
            transports.append((transport, bye.data, (host, port)))
        for delay in BYE_REPEATS_S:
            await asyncio.sleep(delay)
            for transport, data, address in transports:
                transport.sendto(data, address)
        log.info("media_lost_byes_sent", byes=len(byes))
    except OSError as exc:
        log.warning("media_lost_byes_failed", error=str(exc))
    finally:
        for transport, _, _ in transports:
            transport.close()


class MediaWatch:
    def __init__(self, bus: Bus, watch: StandaloneWatch | None = None) -> None:
        self.bus = bus
        self.watch = watch or StandaloneWatch()
        self._tasks: list[asyncio.Task[None]] = []
        self._publishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._registrations()), loop.create_task(self._ticker())]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._publishing]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._publishing, return_exceptions=True)

    def _lost(self, lost: list[WorkerLost]) -> None:
        for one in lost:
            log.warning(
                "media_process_lost", worker=one.worker_id, reason=one.reason.value, calls=len(one.calls)
            )
            for job in (publish_lost(self.bus, one), send_byes(one.byes)):
                task = asyncio.get_running_loop().create_task(job)
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._lost(self.watch.tick(time.monotonic(), feed_ok=self.bus.nc.is_connected))
            except Exception:
                log.exception("media_watch_tick_failed")

    async def _registrations(self) -> None:
        await follow_registrations(self.bus, self._entry)

    def _entry(self, key: str, value: bytes | None, operation: str | None) -> None:
        now = time.monotonic()
        if operation in ("DEL", "PURGE") or not value:
            self.watch.unregistered(key, now)
            return
        try:
            reg = msgspec.json.decode(value, type=MediaWorkerRegistration)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        self._lost(self.watch.registered(reg, now, age=time.time() - reg.ts))
