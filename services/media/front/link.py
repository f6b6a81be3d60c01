"""A media worker behind the SIP front (docs/media.md, "Sharding"): its link to the front and its
registration in the KV bucket `sb_media_workers`.

`LinkedTransport` replaces the worker's own SIP sockets: it listens on a loopback TCP port (the link), the
front connects to it and sends every message for this worker in a frame naming the caller's real address
(so responses, symmetric RTP and trunk allow-lists work as in single-process mode), and everything the
worker sends (responses, BYE, re-INVITE, originate's INVITE over UDP or TCP) goes back through the front's
socket, so callers and trunks see one SIP address. RTP does not pass the front: each worker's SDP names
its own RTP port. The front notices at once when the link's socket dies (the worker was killed).

`Registrar` puts the worker's registration (site, link address, capacity, calls) into the bucket every
second and within 0.2 s of a change in its calls.
"""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Literal

import msgspec
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.events import MediaWorkerCall, MediaWorkerLost, MediaWorkerRegistration
from services.kernel.log import get_logger
from services.kernel.serving import Listener
from services.media import sip
from services.media.front.dispatch import LOST_BYE_CSEQ, FrameReader, LinkError, encode_frame
from services.media.ua.ratelimit import SourceLimiter, Verdict
from services.media.ua.transport import OnMessage, Peer, SipTransport

__all__ = [
    "WORKERS_BUCKET",
    "LinkedTransport",
    "Registrar",
    "follow_registrations",
    "standalone_id",
    "workers_bucket",
]

log = get_logger()

WORKERS_BUCKET = "sb_media_workers"
# A dead worker's key disappears by itself after this; the front declares it lost much sooner.
BUCKET_TTL_S = 30.0
REGISTER_EVERY_S = 1.0
LOST_SUBJECT = "sb.sys.media.worker_lost"  # MediaWorkerLost, published by the front
FENCED_EXIT_CODE = 70
# After a put, changes are gathered this long before the next one (a burst of calls is one put).
CHANGE_CHECK_S = 0.2


async def workers_bucket(bus: Bus, replicas: int = 1) -> KeyValue:
    try:
        return await bus.js.key_value(WORKERS_BUCKET)
    except BucketNotFoundError:
        return await bus.js.create_key_value(
            KeyValueConfig(bucket=WORKERS_BUCKET, ttl=BUCKET_TTL_S, history=1, replicas=replicas)
        )


async def follow_registrations(bus: Bus, on_entry: Callable[[str, bytes | None, str | None], None]) -> None:
    """Every put and delete in the bucket, for ever, as (key, value, operation): the initial values first.
    A watch that fails is opened again a second later (the bus reconnects by itself meanwhile)."""
    while True:
        try:
            kv = await workers_bucket(bus)
            watcher = await kv.watchall()
            while True:
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]  # nats-py: untyped
                except Exception:  # nats' TimeoutError: nothing new
                    continue
                if entry is not None:  # None: the end of the initial values
                    on_entry(entry.key, entry.value, entry.operation)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("worker_watch_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(1.0)


def _exit_fenced() -> None:
    os._exit(FENCED_EXIT_CODE)  # no clean stop: that would end (again) the calls the front ended


class _Link(asyncio.Protocol):
    def __init__(self, owner: LinkedTransport) -> None:
        self.owner = owner
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner._links.append(self)
        log.info("front_linked", peer=str(transport.get_extra_info("peername")))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except LinkError as exc:
            log.warning("front_link_broken", error=str(exc))
            assert self.transport is not None
            self.transport.close()
            return
        for kind, peer, payload in frames:
            if kind == "m" and peer is not None:
                self.owner.on_front_message(payload, peer)
            elif kind == "a" and peer is not None:
                # The front's public SIP address: callers and trunks reach us there, not at our own host.
                self.owner.public = (peer[1], peer[2])
                log.info("front_address", host=peer[1], port=peer[2])

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.owner._links:
            self.owner._links.remove(self)
        log.info("front_unlinked")


class LinkedTransport(SipTransport):
    """SipTransport's interface over the link to the front (`host`/`port`: the public SIP address the
    front serves, which goes into Via and Contact; `link_host`/`link_port`: where the front connects)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        limiter: SourceLimiter,
        on_message: OnMessage,
        link_host: str = "127.0.0.1",
        link_port: int = 0,
    ) -> None:
        super().__init__(host, port, limiter=limiter, on_message=on_message)
        self.link_host = link_host
        self.link_port = link_port
        self._links: list[_Link] = []
        self._link_server: asyncio.Server | None = None
        self.stats["no_front"] = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._link_server = await loop.create_server(lambda: _Link(self), self.link_host, self.link_port)
        self.link_port = self._link_server.sockets[0].getsockname()[1]
        log.info("front_link_listening", host=self.link_host, port=self.link_port)

    def close(self) -> None:
        for link in list(self._links):
            if link.transport is not None:
                link.transport.write(encode_frame("bye"))  # a clean stop: not a lost worker
                link.transport.close()
        if self._link_server is not None:
            self._link_server.close()

    def on_front_message(self, data: bytes, peer: Peer) -> None:
        """One message from a caller or trunk, as the front received it (UDP datagram or TCP-framed)."""
        try:
            self.stats["received"] += 1
            if sip.is_keepalive(data):
                return
            verdict = self.limiter.check(peer[1], asyncio.get_running_loop().time())
            if verdict is Verdict.IGNORE:
                self.stats["dropped"] += 1
                return
            try:
                message = sip.parse_datagram(data)
            except sip.SipParseError as err:
                self._parse_error(err, peer)
                return
            self._deliver(message, peer, verdict)
        except Exception:
            self.stats["bad"] += 1
            log.exception("sip_front_message_failed", peer=f"{peer[1]}:{peer[2]}")

    async def connect_tcp(self, host: str, port: int, timeout: float = 5.0) -> Peer:
        # The front opens the connection when the first message for this address leaves through it.
        return ("tcp", host, port)

    def send(self, message: sip.SipMessage, peer: object) -> None:
        if not isinstance(peer, tuple) or len(peer) != 3:
            return
        link = self._links[-1] if self._links else None
        if link is None or link.transport is None or link.transport.is_closing():
            self.stats["no_front"] += 1
            return
        try:
            link.transport.write(encode_frame("m", peer, bytes(message)))
        except Exception as exc:
            log.warning("sip_send_failed", error=str(exc))


class Registrar:
    """Keeps this worker's registration in the bucket: every second, and soon after its calls change."""

    def __init__(
        self,
        bus: Bus,
        *,
        worker_id: str,
        site: str,
        link_host: str,
        link_port: int,
        capacity: int,
        calls: Callable[[], list[MediaWorkerCall]],
        replicas: int = 1,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self.bus = bus
        self.worker_id = worker_id
        self.site = site
        self.link_host = link_host
        self.link_port = link_port
        self.capacity = capacity
        self.calls = calls
        self.replicas = replicas
        self.state: Literal["up", "stopping"] = "up"
        self.started_at = time.time()
        self.puts = 0
        self.on_fenced = on_fenced or _exit_fenced
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost: Listener | None = None
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """A call arrived, was answered or ended: the front's copy must follow soon."""
        self._changed.set()

    def registration(self) -> MediaWorkerRegistration:
        calls = self.calls()
        return MediaWorkerRegistration(
            worker_id=self.worker_id,
            site=self.site,
            link_host=self.link_host,
            link_port=self.link_port,
            capacity=self.capacity,
            active_calls=len(calls),
            calls=calls,
            state=self.state,
            pid=os.getpid(),
            started_at=self.started_at,
            ts=time.time(),
        )

    async def start(self) -> None:
        self._kv = await workers_bucket(self.bus, self.replicas)
        self._lost = await self.bus.listen_platform(LOST_SUBJECT, MediaWorkerLost, self._on_lost)
        await self._put()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _put(self) -> None:
        assert self._kv is not None
        await self._kv.put(self.worker_id, msgspec.json.encode(self.registration()))
        self.puts += 1

    async def _run(self) -> None:
        last_calls: set[tuple[uuid.UUID, bool]] = set()
        last_put = time.monotonic()
        while True:
            # Woken by a change of calls (`changed`), else when the registration is due again: it is also
            # the worker's heartbeat. No polling of the calls in between.
            due = REGISTER_EVERY_S - (time.monotonic() - last_put)
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, due))
            except TimeoutError:
                pass
            self._changed.clear()
            # Nothing may end this loop: a worker that stops registering is declared lost (and fenced).
            try:
                current = {(c.call_id, c.answered_at is not None) for c in self.calls()}
                if current == last_calls and time.monotonic() - last_put < REGISTER_EVERY_S:
                    continue
                await self._put()
                last_calls, last_put = current, time.monotonic()
            except Exception as exc:  # the bus reconnects by itself; the next round tries again
                log.warning("media_registration_failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(CHANGE_CHECK_S)

    async def stopping(self) -> None:
        """Take no new calls (the front stops dispatching to us) while the calls are being ended."""
        self.state = "stopping"
        try:
            await asyncio.wait_for(self._put(), 1.0)
        except Exception as exc:
            log.warning("media_registration_failed", error=type(exc).__name__)

    async def _on_lost(self, lost: MediaWorkerLost) -> None:
        if lost.worker_id == self.worker_id and lost.pid == os.getpid():
            # The front declared us lost (we were hung, or cut off from NATS) and has ended our calls
            # for us: carrying on would leave calls nobody else believes in. Stop; the supervisor
            # starts a fresh incarnation, which the front takes as a new worker.
            log.error("media_worker_fenced", reason=lost.reason, calls=lost.calls_ended)
            self.on_fenced()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._lost is not None:
            await self._lost.stop()  # bounded
        if self._kv is not None:
            try:
                await asyncio.wait_for(self._kv.delete(self.worker_id), 1.0)
            except Exception as exc:
                log.warning("media_unregister_failed", error=type(exc).__name__)


# --- wiring a worker (app.main) ----------------------------------------------------------------------


def standalone_id(sip_port: int) -> str:
    """A media process without a front: named by its host and SIP port, so that its restart is known as a
    new incarnation of the same process (KV keys: letters, digits, '-' and '_')."""
    host = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:48] or "host"
    return f"alone-{host}-{sip_port}"


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A worker behind the front: SB_MEDIA_WORKER_ID, SB_SITE, SB_MEDIA_LINK_PORT (kernel Settings)."""

    worker_id: str
    site: str = "default"
    link_host: str = "127.0.0.1"
    link_port: int = 0  # 0: any free port (the registration names it)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerSettings | None:
        """None without SB_MEDIA_WORKER_ID: a single media process binds the SIP port itself."""
        if not settings.media_worker_id.strip():
            return None
        return cls(
            worker_id=settings.media_worker_id.strip(),
            site=settings.site.strip() or "default",
            link_host=settings.bind_host,
            link_port=settings.media_link_port,
        )

    def transport_factory(
        self, host: str, port: int, *, limiter: SourceLimiter, on_message: OnMessage
    ) -> LinkedTransport:
        return LinkedTransport(
            host,
            port,
            limiter=limiter,
            on_message=on_message,
            link_host=self.link_host,
            link_port=self.link_port,
        )


def _lost_bye(dialog: sip.Dialog) -> str:
    """The BYE that will end this dialog if this process dies (a copy's: the live dialog's CSeq is not used),
    numbered far above any request of ours in the dialog, as the front's own (dispatch.lost_bye)."""
    ending = copy.copy(dialog)
    ending.local_seq = max(ending.local_seq, LOST_BYE_CSEQ)
    try:
        bye = ending.create_request("BYE", headers=[("Reason", 'SIP;cause=500;text="media worker lost"')])
    except sip.DialogError:
        return ""
    return bytes(bye).decode("utf-8", errors="replace")


def live_calls(edge: object, webrtc: object, *, with_byes: bool = False) -> list[MediaWorkerCall]:
    """The worker's calls as the front needs them (SIP legs and WebRTC legs); `with_byes` (a process
    without a front) adds the BYE that ends each answered SIP dialog, for whoever notices its death."""
    loop_now, wall_now = asyncio.get_running_loop().time(), time.time()
    out: list[MediaWorkerCall] = []
    for leg in list(getattr(edge, "legs", {}).values()):
        call = leg.call
        if leg.dialog is not None:
            sip_call_id = leg.dialog.id.call_id
        elif leg.core.invite is not None:
            sip_call_id = leg.core.invite.headers.get("Call-ID") or ""
        else:
            sip_call_id = leg.core.target.call_id if leg.core.target is not None else ""
        answered = wall_now - (loop_now - call.answered_at) if call.answered_at is not None else None
        bye = _lost_bye(leg.dialog) if with_byes and leg.dialog is not None and answered is not None else ""
        out.append(
            MediaWorkerCall(
                tenant_id=call.tenant_id,
                call_id=call.call_id,
                sip_call_id=sip_call_id,
                answered_at=answered,
                lost_bye=bye,
                lost_bye_to=tuple(leg.peer) if bye else None,
            )
        )
    for session in list(getattr(webrtc, "sessions", {}).values()):
        call = session.call
        answered = wall_now - (loop_now - call.answered_at) if call.answered_at is not None else None
        out.append(MediaWorkerCall(tenant_id=call.tenant_id, call_id=call.call_id, answered_at=answered))
    return out
