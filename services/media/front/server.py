"""The SIP front (python -m services.media.front runs __main__.py): owns the public SIP port and shares
calls among media workers (docs/media.md, "Sharding").

The asyncio adapter around `dispatch.Dispatcher`: UDP and TCP sockets on SB_BIND_HOST:SB_SIP_PORT, one
TCP link per worker of this site (SB_SITE) found in the KV bucket `sb_media_workers`, and the loss of a
worker: `call.ended` (cause `media_worker_lost`) for each of its calls and `MediaWorkerLost` on
sb.sys.media.worker_lost. Every decision is the dispatcher's; this file only moves bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine

import msgspec

from services.kernel.bus import Bus
from services.kernel.config import Settings, advertised_host, machine_ipv4
from services.kernel.events import MediaWorkerRegistration
from services.kernel.log import get_logger
from services.kernel.service import until_stopped
from services.kernel.subjects import sys_subject
from services.media import sip
from services.media.front import link as frontlink
from services.media.front import loss
from services.media.front.dispatch import (
    Action,
    Connect,
    Disconnect,
    Dispatcher,
    Drop,
    Forward,
    FrameReader,
    LinkError,
    Peer,
    Reply,
    StreamFramer,
    WorkerLost,
    encode_frame,
)
from services.media.ua.ratelimit import SourceLimiter

__all__ = ["SipFront", "main"]

log = get_logger()

LOST_SUBJECT = sys_subject("media", "worker_lost")
assert LOST_SUBJECT == frontlink.LOST_SUBJECT == loss.LOST_SUBJECT
TICK_S = 0.25


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, front: SipFront) -> None:
        self.front = front

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if sip.is_keepalive(data):
            return
        self.front.inbound(data, ("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for a peer that went away


class _Caller(asyncio.Protocol):
    """One TCP connection with a caller or trunk (accepted, or opened for a worker's request)."""

    def __init__(self, front: SipFront, key: tuple[str, int] | None = None) -> None:
        self.front = front
        self.framer = StreamFramer()
        self.key = key  # the address the worker named (outbound) or the remote address (inbound)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.key is None:
            addr = transport.get_extra_info("peername")
            self.key = (addr[0], addr[1])
        self.front.tcp[self.key] = self

    def data_received(self, data: bytes) -> None:
        assert self.key is not None and self.transport is not None
        for message in self.framer.feed(data):
            self.front.inbound(message, ("tcp", self.key[0], self.key[1]))
        if self.framer.broken:
            self.front.stats["tcp_unframed"] += 1
            self.transport.close()  # framing is lost: nothing later on this stream can be trusted

    def connection_lost(self, exc: Exception | None) -> None:
        if self.key is not None and self.front.tcp.get(self.key) is self:
            del self.front.tcp[self.key]


class _WorkerLink(asyncio.Protocol):
    def __init__(self, front: SipFront, worker_id: str) -> None:
        self.front = front
        self.worker_id = worker_id
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.said_bye = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Our public address first: the worker names it in Via and Contact (it may run on another host).
        dispatcher = self.front.dispatcher
        transport.write(encode_frame("a", ("udp", dispatcher.host, dispatcher.port)))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except LinkError as exc:
            log.warning("worker_link_broken", worker=self.worker_id, error=str(exc))
            assert self.transport is not None
            self.transport.close()
            return
        for kind, peer, payload in frames:
            if kind == "bye":
                self.said_bye = True
            elif kind == "m" and peer is not None:
                self.front.outbound(self.worker_id, payload, peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.link_closed(self, clean=self.said_bye)


class SipFront:
    def __init__(self, host: str, port: int, dispatcher: Dispatcher, bus: Bus | None) -> None:
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        self.bus = bus
        self.tcp: dict[tuple[str, int], _Caller] = {}
        self.links: dict[str, _WorkerLink] = {}
        self._connecting: set[str] = set()
        self._pending_tcp: dict[tuple[str, int], list[bytes]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"forwarded": 0, "answered": 0, "dropped": 0, "sent": 0, "tcp_unframed": 0}
        self.lost: list[WorkerLost] = []

    # --- life cycle ---

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self.host, self.port)
        )
        self._server = await loop.create_server(lambda: _Caller(self), self.host, self.port)
        self._spawn(self._ticker())
        if self.bus is not None:
            self._spawn(self._watch_registrations())
        log.info("sip_front_listening", host=self.host, port=self.port, site=self.dispatcher.site)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for conn in list(self.tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        for link in list(self.links.values()):
            if link.transport is not None:
                link.transport.close()
        self.links.clear()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # --- messages ---

    def inbound(self, data: bytes, peer: Peer) -> None:
        try:
            action = self.dispatcher.inbound(data, peer, self.now())
            if isinstance(action, Forward):
                link = self.links.get(action.worker_id)
                if link is None or link.transport is None or link.transport.is_closing():
                    self.stats["dropped"] += 1
                    return
                link.transport.write(encode_frame("m", action.peer, action.data))
                self.stats["forwarded"] += 1
            elif isinstance(action, Reply):
                self.send(action.peer, action.data)
                self.stats["answered"] += 1
            elif isinstance(action, Drop):
                self.stats["dropped"] += 1
        except Exception:
            log.exception("sip_front_inbound_failed", peer=f"{peer[1]}:{peer[2]}")

    def outbound(self, worker_id: str, data: bytes, peer: Peer) -> None:
        try:
            self.dispatcher.outbound(worker_id, data, self.now(), peer)
            self.send(peer, data)
        except Exception:
            log.exception("sip_front_outbound_failed")

    def send(self, peer: Peer, data: bytes) -> None:
        kind, host, port = peer
        try:
            if kind == "tcp":
                conn = self.tcp.get((host, port))
                if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.write(data)
                elif (host, port) in self._pending_tcp:
                    self._pending_tcp[(host, port)].append(data)
                else:
                    # A worker's request to a TCP trunk: the front opens the connection (then keeps it).
                    self._pending_tcp[(host, port)] = [data]
                    self._spawn(self._open_tcp(host, port))
                    return
            elif self._udp is not None:
                self._udp.sendto(data, (host, port))
            self.stats["sent"] += 1
        except Exception as exc:
            log.warning("sip_front_send_failed", error=str(exc))

    async def _open_tcp(self, host: str, port: int) -> None:
        key = (host, port)
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.create_connection(lambda: _Caller(self, key), host, port), 5.0)
        except (OSError, TimeoutError) as exc:
            log.warning("sip_front_tcp_connect_failed", host=host, port=port, error=str(exc))
            self._pending_tcp.pop(key, None)  # the worker's transaction times out (408)
            return
        conn = self.tcp.get(key)
        for data in self._pending_tcp.pop(key, []):
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)

    # --- workers ---

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Connect):
                if action.worker_id not in self._connecting and action.worker_id not in self.links:
                    self._connecting.add(action.worker_id)
                    self._spawn(self._connect(action))
            elif isinstance(action, Disconnect):
                link = self.links.pop(action.worker_id, None)
                if link is not None and link.transport is not None:
                    link.transport.close()
            elif isinstance(action, WorkerLost):
                self._lost(action)

    async def _connect(self, action: Connect) -> None:
        try:
            loop = asyncio.get_running_loop()
            _, link = await asyncio.wait_for(
                loop.create_connection(lambda: _WorkerLink(self, action.worker_id), action.host, action.port),
                2.0,
            )
        except (OSError, TimeoutError) as exc:
            log.warning("worker_link_failed", worker=action.worker_id, error=str(exc))
            self.dispatcher.link_failed(action.worker_id)
            return
        finally:
            self._connecting.discard(action.worker_id)
        if action.worker_id not in self.dispatcher.workers:
            if link.transport is not None:
                link.transport.close()  # lost or stopped while we connected
            return
        self.links[action.worker_id] = link
        self.dispatcher.link_up(action.worker_id)
        log.info("worker_linked", worker=action.worker_id, port=action.port)

    def link_closed(self, link: _WorkerLink, *, clean: bool) -> None:
        if self.links.get(link.worker_id) is not link:
            return  # a link we closed ourselves, or one replaced by a newer incarnation's
        del self.links[link.worker_id]
        log.info("worker_link_closed", worker=link.worker_id, clean=clean)
        self.apply(self.dispatcher.link_down(link.worker_id, self.now(), clean=clean))

    def _lost(self, lost: WorkerLost) -> None:
        log.warning(
            "media_worker_lost", worker=lost.worker_id, reason=lost.reason.value, calls=len(lost.calls)
        )
        self.lost.append(lost)
        for bye in lost.byes:
            self.send(bye.peer, bye.data)
        if self.bus is not None:
            self._spawn(self._publish_lost(lost))

    async def _publish_lost(self, lost: WorkerLost) -> None:
        assert self.bus is not None
        await loss.publish_lost(self.bus, lost)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                feed_ok = self.bus is None or self.bus.nc.is_connected
                self.apply(self.dispatcher.tick(self.now(), feed_ok=feed_ok))
            except Exception:
                log.exception("sip_front_tick_failed")

    async def _watch_registrations(self) -> None:
        assert self.bus is not None
        await frontlink.follow_registrations(self.bus, self._registration)

    def _registration(self, key: str, value: bytes | None, operation: str | None) -> None:
        now = self.now()
        if operation in ("DEL", "PURGE") or not value:
            self.apply(self.dispatcher.unregistered(key, now))
            return
        try:
            reg = msgspec.json.decode(value, type=MediaWorkerRegistration)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("bad_worker_registration", key=key)
            return
        self.apply(self.dispatcher.registered(reg, now, age=time.time() - reg.ts))


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    site, stale = settings.site.strip() or "default", settings.media_worker_stale_s
    limiter = SourceLimiter(
        rate=settings.sip_rate,
        burst=settings.sip_burst,
        ban_after=settings.sip_ban_after,
        ban_seconds=settings.sip_ban_seconds,
    )
    dispatcher = Dispatcher(
        site,
        stale_after=stale,
        limiter=limiter,
        host=advertised_host(settings, machine_ipv4()),
        port=settings.sip_port,
    )
    front = SipFront(settings.bind_host, settings.sip_port, dispatcher, bus)
    await front.start()

    try:
        await until_stopped(stop)
    finally:
        await front.stop()
