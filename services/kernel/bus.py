"""NATS: connection, the SB_EVENTS stream, event publishing and command request/reply, and the one way a
service listens: `Bus.serve` (commands), `Bus.consume` (durable events) and `Bus.listen` (live views).
The machinery behind the last three is in serving.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NoStreamResponseError, NotFoundError

from .batches import BatchConsumer, BatchHandler, BusClient
from .log import get_logger
from .messages import Command, Event, Reply, decode, encode
from .serving import (
    MAX_DELIVER,
    Accept,
    CommandHandler,
    Consumer,
    EventHandler,
    Listener,
    PartitionSource,
    Server,
    call_key,
)
from .subjects import EVENTS_STREAM, EVENTS_SUBJECTS, HEALTH_BUCKET, cmd_subject, evt_subject, inbox_prefix

__all__ = ["Bus", "BusError", "CommandTimeout", "connect", "decode_event", "store"]

T = TypeVar("T", bound=msgspec.Struct)
log = get_logger()

# JetStream's duplicate window: a re-sent event with the same id inside it is stored once.
DEDUPE_WINDOW_S = 120.0
EVENTS_MAX_AGE_S = 7 * 24 * 3600.0
# How long a starting service keeps asking a slow JetStream for its streams before it gives up.
ENSURE_STREAMS_S = 60.0


class BusError(RuntimeError):
    pass


class _PubAck(msgspec.Struct):
    """What Bus.publish reads of JetStream's answer to a publish (`{"stream", "seq", ...}` or `{"error"}`)."""

    seq: int = 0
    error: dict[str, Any] | None = None


_PUB_ACK = msgspec.json.Decoder(_PubAck)
# nats-py's JetStreamContext default: a publish not acknowledged within it fails (and its step is retried).
PUBLISH_TIMEOUT_S = 5.0


class CommandTimeout(BusError):
    pass


class Bus:
    """One service's NATS connection with typed helpers."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()

    async def ensure_streams(self, replicas: int = 1, *, within_s: float = ENSURE_STREAMS_S) -> None:
        """Create (or update) the SB_EVENTS stream and the health bucket; safe to call from every service.

        Every step is idempotent, so a JetStream API request that times out (nats-py's 5 s) is asked again
        until `within_s` has passed: a server busy with a whole platform starting (or a cluster electing a
        leader) answers late, and a service that exited on the first late answer would not start at all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            try:
                await self._ensure_streams(replicas)
                return
            except NatsTimeout:
                if loop.time() >= deadline:
                    raise
                log.warning("jetstream_slow_at_start", retry_within_s=round(deadline - loop.time(), 1))

    async def _ensure_streams(self, replicas: int) -> None:
        config = StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=EVENTS_MAX_AGE_S,
            duplicate_window=DEDUPE_WINDOW_S,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
        )
        try:
            await self.js.stream_info(EVENTS_STREAM)
            await self.js.update_stream(config)
        except NotFoundError:
            await self.js.add_stream(config)
        try:
            await self.js.key_value(HEALTH_BUCKET)
        except BucketNotFoundError:
            await self.js.create_key_value(
                KeyValueConfig(bucket=HEALTH_BUCKET, ttl=15.0, history=1, replicas=replicas)
            )

    async def kv_latest(self, bucket: str, *, timeout: float = 2.0) -> list[tuple[str, bytes]]:
        """Every live key of a KV bucket with its latest value, read with a pull consumer: nothing is
        delivered before `fetch`, so the pending count is exact and every wait is bounded. nats-py's
        watcher (behind `KeyValue.keys()`) can end early under load, or wait forever for a value that
        expired after it counted it."""
        sub = await self.js.pull_subscribe(
            f"$KV.{bucket}.>",
            stream=f"KV_{bucket}",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE),
        )
        prefix = f"$KV.{bucket}."
        found: list[tuple[str, bytes]] = []
        try:
            pending = (await sub.consumer_info()).num_pending or 0
            while pending > 0:
                try:
                    msgs = await sub.fetch(min(pending, 256), timeout=timeout)
                except (TimeoutError, NatsTimeout):  # values that expired since they were counted
                    break
                pending -= len(msgs)
                for msg in msgs:
                    if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
                        continue
                    found.append((msg.subject[len(prefix) :], msg.data))
        finally:
            await sub.unsubscribe()
        return found

    async def publish(self, event: Event) -> None:
        """Persist an event in SB_EVENTS; a retry with the same event id is de-duplicated by JetStream."""
        subject = evt_subject(event.tenant_id, event.domain, event.name, event.addressee)
        await store(self.nc, subject, encode(event), msg_id=str(event.id))

    async def request(self, command: Command, *, timeout: float = 2.0) -> Reply:
        """Send a command and wait for its reply. A command for a call goes straight to the process that
        holds it (its own subject, sb.<tenant>.cmd.<service>.<name>.<call>); when nothing listens there
        (a process without per-call subjects, or the call is not set up yet) it goes to the service's
        subject, where every process that may hold the call hears it."""
        subject = cmd_subject(command.tenant_id, command.service, command.name)
        payload = encode(command)
        held_by = command.held_by
        if held_by is not None:
            try:
                msg = await self.nc.request(f"{subject}.{held_by}", payload, timeout=timeout)
                return decode(msg.data, Reply)
            except NoRespondersError:
                pass
            except (TimeoutError, NatsTimeout) as exc:
                raise CommandTimeout(f"{subject} did not answer within {timeout:.1f}s") from exc
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout)
        except NoRespondersError as exc:
            raise BusError(f"no service answers {subject}") from exc
        except (TimeoutError, NatsTimeout) as exc:
            raise CommandTimeout(f"{subject} did not answer within {timeout:.1f}s") from exc
        return decode(msg.data, Reply)

    async def serve(
        self,
        service: str,
        handlers: Mapping[type[Any], CommandHandler[Any]],
        *,
        queue: str | None = "",
        subject: str | None = None,
        accept: Accept | None = None,
        concurrent: bool = False,
    ) -> Server[Any]:
        """Answer `service`'s commands (sb.*.cmd.<service>.<name>) with `handlers`, one per command type.
        Decoding, the tenant check, the reply cache by command id and the error replies are done here
        (serving.Server). `queue` is the queue group (default: the service's name; None: every process
        gets every command, and a handler returns None where another process answers); `accept` drops what
        this process must not answer before anything is decoded. `concurrent`: each command in a task of
        its own (serving.Server says when)."""
        server: Server[Any] = Server(self, service, handlers, concurrent=concurrent)
        await server.subscribe(
            subject or f"sb.*.cmd.{service}.*", queue=service if queue == "" else queue, accept=accept
        )
        return server

    async def consume(
        self,
        event_types: Iterable[type[Event]],
        *,
        durable: str,
        handler: EventHandler,
        ack_wait: float = 5.0,
        key: Callable[[Event], Hashable] | None = call_key,
        source: PartitionSource | None = None,
        max_deliver: int = MAX_DELIVER,
    ) -> Consumer:
        """Feed every new event of these types to `handler` through the durable JetStream consumer
        `durable`: an event is acknowledged only after its handler returned, so one lost by a crash is
        delivered again (serving.Consumer). Events of one `key` (default: one call) are handled in order;
        `key=None`: each at once, in arrival order (the service orders them itself). `source`: read one
        partition's work queue (services/kernel/partitioned.py) instead of SB_EVENTS. A handler raising
        serving.Redeliver(delay) gets its event back after that delay, up to `max_deliver` deliveries."""
        consumer = Consumer(
            self,
            list(event_types),
            durable=durable,
            handler=handler,
            ack_wait=ack_wait,
            key=key,
            source=source,
            max_deliver=max_deliver,
        )
        await consumer.start()
        return consumer

    async def consume_batches(
        self,
        event_types: Iterable[type[Event]],
        *,
        durable: str,
        handler: BatchHandler,
        batch: int = 2000,
        from_start: bool = False,
        start_at: int | datetime.datetime | None = None,
        ack_wait: float = 30.0,
        unfiltered: bool = False,
    ) -> BatchConsumer:
        """Feed these events to `handler` in batches of up to `batch`, in stream order, through the durable
        JetStream consumer `durable` (from the stream's start with `from_start`, or from `start_at`, a stream
        sequence or a time, when the durable is made; an existing durable keeps its position): a batch is acknowledged
        after the handler returned and retried until it does (batches.BatchConsumer). For writers whose
        cost is per batch; the handler must be idempotent. `unfiltered`: the server delivers every event and
        the other kinds are dropped here (cheaper for a consumer of most of the stream: BatchConsumer)."""
        consumer = BatchConsumer(
            self,
            list(event_types),
            durable=durable,
            handler=handler,
            batch=batch,
            from_start=from_start,
            start_at=start_at,
            ack_wait=ack_wait,
            unfiltered=unfiltered,
        )
        await consumer.start()
        return consumer

    async def listen(
        self,
        event_types: Iterable[type[Event]],
        handler: EventHandler,
        *,
        tenant_id: Any = None,
        addressee: str | None = None,
    ) -> Listener:
        """At-most-once delivery of these events (one tenant's or every tenant's) on core NATS: for live
        views (a browser's socket, a cache to drop), never where a lost event would strand a caller. Of an
        addressed kind (a desk push), only those for `addressee` reach this process (every one's if None)."""
        listener = Listener(self, list(event_types), handler, tenant_id=tenant_id, addressee=addressee)
        await listener.start()
        return listener

    async def listen_platform(
        self, subject: str, kind: type[T], handler: Callable[[T], Awaitable[None]]
    ) -> Listener:
        """At-most-once delivery of one platform message type (sb.sys.<...>: no tenant), decoded."""
        listener = Listener(self, [], handler, platform=(subject, kind))
        await listener.start()
        return listener

    @staticmethod
    async def reply(msg: Msg, reply: Reply) -> None:
        if msg.reply:
            await msg.respond(encode(reply))

    async def close(self, timeout: float = 5.0) -> None:
        """Drain (let in-flight messages finish), but never wait forever: a stop must always complete,
        even when the server is already gone."""
        if self.nc.is_closed:
            return
        try:
            if self.nc.is_connected:
                await asyncio.wait_for(self.nc.drain(), timeout)
        except Exception:  # drain failed or timed out: close without it
            pass
        finally:
            if not self.nc.is_closed:
                # With the server gone, nats-py's close can raise (a reset while flushing) or leave its
                # reconnect loop running; neither may hold a stop back.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.nc.close(), timeout)
                task = getattr(self.nc, "_reconnection_task", None)
                if task is not None and not task.done():
                    task.cancel()


async def store(nc: NATS, subject: str, payload: bytes, *, msg_id: str | None = None) -> int:
    """Publish to a JetStream stream and wait for its ack; returns the stream sequence. JetStream's publish
    protocol by hand, with nats-py's errors (NoStreamResponseError when no stream takes the subject, the
    APIError subclass of a refusal, nats' TimeoutError): the ack is decoded by msgspec into the fields read,
    not json.loads into a PubAck of every field, about 15-25 us less per publish (a first-call call makes 30
    event publishes)."""
    headers = None if msg_id is None else {"Nats-Msg-Id": msg_id}
    try:
        msg = await nc.request(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)
    except NoRespondersError as exc:
        raise NoStreamResponseError from exc
    try:
        ack = _PUB_ACK.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BusError(f"unreadable JetStream ack for {subject}: {msg.data[:200]!r}") from exc
    if ack.error is not None:
        raise APIError.from_error(ack.error)  # raises the error's own subclass
    return ack.seq


async def connect(url: str, *, name: str, connect_timeout: float = 5.0) -> Bus:
    nc = BusClient()  # nats-py's, with the raw pulls of Bus.consume_batches (batches.py)
    await nc.connect(
        servers=[url],
        name=name,
        # Its replies and JetStream deliveries on subjects only its own user may read (docs/security.md).
        inbox_prefix=inbox_prefix(urlsplit(url).username),
        # nats-py's hints say int for both; they are seconds, and fractions work.
        connect_timeout=connect_timeout,  # type: ignore[arg-type]
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]
        allow_reconnect=True,
    )
    return Bus(nc)


def decode_event(data: bytes, kind: type[T]) -> T:
    return decode(data, kind)
