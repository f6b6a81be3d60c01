"""What is behind Bus.serve, Bus.consume and Bus.listen: subject parsing, decoding through the one type
registry, the tenant check, the reply cache by command id, one set of error codes, and stops that are
bounded and say what they were waiting for. Services write handlers; they never touch a Msg.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from .diag import await_chain
from .log import get_logger
from .messages import Command, Event, Reply, ReplyCode, decode, encode
from .metrics import figure_counter, figure_gauge, figure_histogram
from .registry import parse_subject
from .subjects import EVENTS_STREAM, addressee_token
from .waits import flushed

if TYPE_CHECKING:
    from .batches import RawMsg, RawPull
    from .bus import Bus

__all__ = [
    "REPLY_MEMORY",
    "STOP_STEP_S",
    "Accept",
    "CommandHandler",
    "Consumer",
    "EventHandler",
    "Later",
    "Listener",
    "PartitionSource",
    "Redeliver",
    "Server",
    "call_key",
]

C = TypeVar("C", bound=Command)

# How many replies a server remembers: a retry of any of the last REPLY_MEMORY commands gets the first
# answer instead of a second run.
REPLY_MEMORY = 10_000
# The longest any one step of a stop waits (an unsubscribe, the handlers in flight).
STOP_STEP_S = 1.0
LISTEN_FLUSH_S = 2  # how long a new listener waits for the server to confirm its subscriptions
# A crashed handler's event comes back after this long (nak with delay), at most MAX_DELIVER times.
REDELIVER_DELAY_S = 0.5
MAX_DELIVER = 5
FETCH_WAIT_S = 1.0
# What one pull of a per-event consumer takes of the messages waiting. Several processes may share a durable
# (replicas of reporting on `webhooks`, of recording): a small bound leaves the rest of a backlog to the next
# pull, whoever sends it, and stays far below max_ack_pending.
PULL_BATCH = 64
# After a failed or refused pull (the bus away, the consumer deleted): the next one waits this long.
PULL_PAUSE_S = 0.5

log = get_logger()

# Each process's own figures (kernel/metrics.py): shipped in its heartbeat, scraped through the API.
COMMANDS = figure_counter(
    "bus_commands",
    "Commands answered, by command (`unknown` for names the process does not serve) and reply code "
    "(`ok` when done)",
    ("command", "code"),
)
COMMAND_SECONDS = figure_histogram(
    "bus_command_seconds",
    "Time from a command's arrival to its reply",
    ("command",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENTS = figure_counter(
    "bus_events",
    "Events a durable consumer took, by outcome: ok (acknowledged), redelivered (asked back later), "
    "failed (the handler raised), unreadable (dropped)",
    ("consumer", "outcome"),
)
EVENT_DELAY = figure_gauge(
    "bus_event_delay_seconds",
    "For the newest event a consumer handled: from its publication to the end of its handling (a consumer "
    "falling behind shows it growing)",
    ("consumer",),
)
EVENT_SECONDS = figure_histogram(
    "bus_event_seconds",
    "Time a consumer's handler took for one event (a batch, for a batch consumer)",
    ("consumer",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class Later:
    """A reply that comes when `work` is done (an outside number ringing): the server goes on serving
    other commands meanwhile, and a retry of the same command waits for the same reply."""

    __slots__ = ("work",)

    def __init__(self, work: Awaitable[Reply]) -> None:
        self.work = work


class Redeliver(Exception):
    """Raised by an event handler that is not done with its event (a webhook receiver that keeps failing):
    the event comes back after `delay_s` (nak with delay), counted in the consumer's deliveries. The
    schedule lives in JetStream, so it survives a restart without a table to scan."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"again in {delay_s} s")
        self.delay_s = delay_s


CommandHandler = Callable[[C], Awaitable["Reply | Later | None"]]
EventHandler = Callable[[Any], Awaitable[None]]
# The subject's tenant and command name, or None when the subject is not one this server parses.
SubjectParser = Callable[[str], "tuple[uuid.UUID | None, str] | None"]
Accept = Callable[[str, bytes], bool]


def _refuse(code: ReplyCode, error: str) -> Reply:
    return Reply(ok=False, code=code, error=error)


def _tenant_command(subject: str) -> tuple[uuid.UUID | None, str] | None:
    parsed = parse_subject(subject)
    if parsed is None or parsed.kind != "cmd":
        return None
    return parsed.tenant_id, parsed.name


async def _bounded(
    what: str,
    wait: Awaitable[Any],
    late: list[str],
    timeout: float = STOP_STEP_S,
    watch: Iterable[asyncio.Task[Any]] = (),
) -> None:
    """Wait for a step of a stop; one that does not finish in time is named in `late` and logged with what
    it was waiting on (the await chains of `watch`, else of the step itself), then cancelled. Its outcome is
    always retrieved: a cancelled gather would otherwise be logged as 'exception was never retrieved'."""
    step = asyncio.ensure_future(wait)
    step.add_done_callback(_retrieve)
    try:
        await asyncio.wait([step], timeout=timeout)
    except asyncio.CancelledError:
        step.cancel()
        raise
    if not step.done():
        tasks = list(watch) or ([step] if isinstance(step, asyncio.Task) else [])
        chains = [line for task in tasks if not task.done() for line in await_chain(task.get_coro())]
        waiting = "\n".join(chains) or "nothing named"
        late.append(f"{what}, waiting on:\n{waiting}")
        log.warning("bus_stop_late", waited_for=what, timeout_s=timeout, waiting_on=waiting)
        step.cancel()
        await asyncio.wait([step], timeout=timeout)
        return
    if not step.cancelled() and step.exception() is not None:
        # The connection closed under us: nothing left to wait for.
        log.info("bus_stop_step_failed", step=what, error=type(step.exception()).__name__)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Server(Generic[C]):
    """One service's command handlers on the bus (Bus.serve).

    nats-py hands a subscription's messages to its callback one at a time, so by default a handler that
    awaits holds every later command of the subject behind it. `concurrent`: each command's handler runs in
    a task of its own, started in arrival order (as if every handler returned `Later`), for a service
    whose handlers wait on other services: the coordinator's desk commands wait for routing, media and a
    save, and served one at a time a few ms more per command at 20 calls/s (60 desk commands a second)
    made the line grow without end until every command timed out (docs/media.md, "The full path")."""

    def __init__(
        self,
        bus: Bus,
        service: str,
        handlers: Mapping[type[C], CommandHandler[C]],
        *,
        concurrent: bool = False,
    ) -> None:
        self.bus = bus
        self.service = service
        self.concurrent = concurrent
        self._handlers: dict[str, tuple[type[C], CommandHandler[C]]] = {}
        for kind, handler in handlers.items():
            if getattr(kind, "service", None) != service:
                raise ValueError(f"{kind.__name__} is not a {service} command")
            self._handlers[kind.name] = (kind, handler)
        self._replies: OrderedDict[uuid.UUID, Reply | asyncio.Task[Reply | None]] = OrderedDict()
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def subscribe(
        self,
        subject: str,
        *,
        queue: str | None,
        accept: Accept | None = None,
        parse: SubjectParser = _tenant_command,
    ) -> Subscription:
        """One more subject for the same handlers: `accept` drops what this process must not answer (a
        call it does not hold) before anything is decoded or replied; `parse` reads a mapped subject."""

        async def on_msg(msg: Msg) -> None:
            if accept is not None and not accept(msg.subject, msg.data):
                return
            reply = await self.answer(msg.subject, msg.data, parse, msg)
            if reply is not None:
                await self._respond(msg, reply)

        sub = await self.bus.nc.subscribe(subject, queue=queue or "", cb=on_msg)
        self._subs.append(sub)
        # Answering once this returns (a partition just gained, a call's own subject): the server has the
        # subscription, so a command sent next finds a responder (waits.flushed says why plain flush won't).
        with contextlib.suppress(Exception):  # the bus is away: it subscribes again when it reconnects
            await flushed(self.bus.nc, LISTEN_FLUSH_S)
        return sub

    async def unsubscribe(self, sub: Subscription) -> list[str]:
        """Stop one subject (bounded); the others keep serving."""
        late: list[str] = []
        if sub in self._subs:
            self._subs.remove(sub)
            await _bounded(f"unsubscribe {sub.subject}", sub.unsubscribe(), late)
        return late

    async def answer(
        self, subject: str, data: bytes, parse: SubjectParser = _tenant_command, msg: Msg | None = None
    ) -> Reply | None:
        """The reply to one command message (None: not ours to answer, or it comes later to `msg`)."""
        started = time.perf_counter()
        reply = await self._answer(subject, data, parse, msg, started)
        if reply is not None:
            self._count(parse(subject), reply, started)
        return reply

    def _count(self, target: tuple[uuid.UUID | None, str] | None, reply: Reply, started: float) -> None:
        name = target[1] if target is not None and target[1] in self._handlers else "unknown"
        COMMANDS.labels(name, "ok" if reply.ok else (reply.code or "error")).inc()
        COMMAND_SECONDS.labels(name).observe(time.perf_counter() - started)

    async def _answer(
        self, subject: str, data: bytes, parse: SubjectParser, msg: Msg | None, started: float
    ) -> Reply | None:
        target = parse(subject)
        if target is None:
            return _refuse(ReplyCode.BAD_MESSAGE, f"{subject!r} is not a {self.service} command subject")
        tenant_id, name = target
        entry = self._handlers.get(name)
        if entry is None:
            known = ", ".join(sorted(self._handlers))
            return _refuse(
                ReplyCode.UNKNOWN_COMMAND, f"unknown {self.service} command {name!r}; known: {known}"
            )
        kind, handler = entry
        try:
            command = decode(data, kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _refuse(ReplyCode.BAD_MESSAGE, f"invalid {name} command: {exc}")
        if tenant_id is None or command.tenant_id != tenant_id:
            return _refuse(ReplyCode.WRONG_TENANT, "the subject's tenant and the command's tenant_id differ")
        known_reply = self._replies.get(command.id)
        if isinstance(known_reply, Reply):
            return known_reply
        if known_reply is not None:  # the first run is still working: its reply goes to this one too
            self._spawn(self._reply_when_done(msg, known_reply))
            return None
        if self.concurrent:
            # The handler has not started yet: it runs (and may fail) in its own task, in arrival order.
            self._later(command.id, subject, handler(command), msg, (target, started))
            return None
        try:
            result = await handler(command)
        except Exception as exc:
            log.exception("bus_command_failed", subject=subject)
            # Not remembered: a retry runs again.
            return _refuse(ReplyCode.INTERNAL, f"internal error: {type(exc).__name__}")
        if isinstance(result, Later):
            self._later(command.id, subject, result.work, msg, (target, started))
            return None
        if result is not None:
            self._remember(command.id, result)
        return result

    def _later(
        self,
        command_id: uuid.UUID,
        subject: str,
        work: Awaitable[Reply | Later | None],
        msg: Msg | None,
        counted: tuple[tuple[uuid.UUID | None, str] | None, float],
    ) -> None:
        """The reply comes to `msg` when `work` is done; a retry meanwhile waits for the same one."""
        task = asyncio.get_running_loop().create_task(self._finish(command_id, subject, work, counted))
        self._remember(command_id, task)
        self._spawn(self._reply_when_done(msg, task))

    async def _finish(
        self,
        command_id: uuid.UUID,
        subject: str,
        work: Awaitable[Reply | Later | None],
        counted: tuple[tuple[uuid.UUID | None, str] | None, float],
    ) -> Reply | None:
        target, started = counted
        try:
            reply = await work
            if isinstance(reply, Later):  # a concurrent server's handler that defers its reply itself
                reply = await reply.work
        except Exception as exc:
            log.exception("bus_command_failed", subject=subject)
            self._replies.pop(command_id, None)
            reply = _refuse(ReplyCode.INTERNAL, f"internal error: {type(exc).__name__}")
            self._count(target, reply, started)
            return reply
        if reply is None:  # not this process's to answer (a concurrent handler's None)
            self._replies.pop(command_id, None)
            return None
        if command_id in self._replies:
            self._replies[command_id] = reply
        self._count(target, reply, started)
        return reply

    async def _reply_when_done(self, msg: Msg | None, task: asyncio.Task[Reply | None]) -> None:
        reply = await asyncio.shield(task)
        if msg is not None and reply is not None:
            await self._respond(msg, reply)

    def _remember(self, command_id: uuid.UUID, reply: Reply | asyncio.Task[Reply | None]) -> None:
        self._replies[command_id] = reply
        while len(self._replies) > REPLY_MEMORY:
            self._replies.popitem(last=False)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _respond(msg: Msg, reply: Reply) -> None:
        if not msg.reply:
            return
        try:
            await msg.respond(encode(reply))
        except Exception as exc:  # the connection closed meanwhile: the requester times out
            log.warning("bus_reply_lost", subject=msg.subject, error=type(exc).__name__)

    async def stop(self) -> list[str]:
        """Unsubscribe and end the replies still being worked on; returns what did not stop in time."""
        late: list[str] = []
        for sub in self._subs:
            await _bounded(f"unsubscribe {sub.subject}", sub.unsubscribe(), late)
        self._subs = []
        pending = [t for t in self._replies.values() if isinstance(t, asyncio.Task)]
        for task in [*pending, *self._tasks]:
            task.cancel()
        if pending or self._tasks:
            await _bounded(
                f"{len(pending)} {self.service} replies in flight",
                asyncio.gather(*pending, *self._tasks, return_exceptions=True),
                late,
                watch=[*pending, *self._tasks],
            )
        await _bounded("flush", flushed(self.bus.nc), late)
        return late


def _event_filters(
    event_types: list[type[Event]], tenant: str = "*", addressee: str | None = None
) -> dict[str, type[Event]]:
    """The subjects of these events; an addressed kind's are those of `addressee` only (every reader's
    when None)."""
    filters: dict[str, type[Event]] = {}
    for kind in event_types:
        subject = f"sb.{tenant}.evt.{kind.domain}.{kind.name}"
        if kind.addressed:
            subject += "." + ("*" if addressee is None else addressee_token(addressee))
        filters[subject] = kind
    return filters


def _decode_event(subject: str, data: bytes, kinds: dict[tuple[str, str], type[Event]]) -> Event | str:
    """The event, or why it cannot be handled (which redelivery would not change)."""
    parsed = parse_subject(subject)
    if parsed is None or parsed.kind != "evt":
        return "not an event subject"
    kind = kinds.get((parsed.owner, parsed.name))
    if kind is None:
        return "not an event this consumer handles"
    try:
        event = decode(data, kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return f"undecodable: {exc}"[:200]
    if parsed.tenant_id is None or event.tenant_id != parsed.tenant_id:
        return "the subject's tenant and the event's tenant_id differ"
    addressee = event.addressee
    if (None if addressee is None else addressee_token(addressee)) != parsed.addressee:
        return "the subject's addressee and the event's differ"
    return event


def call_key(event: Event) -> Hashable:
    """Events of one call are handled in order; other events in order per tenant."""
    return getattr(event, "call_id", None) or event.tenant_id


class PartitionSource(msgspec.Struct, frozen=True):
    """Where a partition's events are read from instead of SB_EVENTS (services/kernel/partitioned.py): a
    work-queue stream that sources SB_EVENTS with each subject prefixed `<prefix>.` (`sbp.<name>.<k>`)."""

    stream: str
    prefix: str

    def original(self, subject: str) -> str:
        return subject[len(self.prefix) + 1 :] if subject.startswith(self.prefix + ".") else subject


class Consumer:
    """A durable JetStream pull consumer on SB_EVENTS (Bus.consume), or on one partition's work queue.

    One standing pull at a time (batches.RawPull.stand): a request for up to PULL_BATCH messages over
    FETCH_WAIT_S, each handed out the moment it comes (nats-py's batched fetch held a batch's first
    message until the batch was full or the wait ended: the first-call benchmark's events 660-730 ms
    late), so a quiet stream costs a request a second and a backlog one per PULL_BATCH, instead of a
    request per event (12.5 per call for the coordinator, 5 for the IVR). Deliveries come as bytes from
    the connection, without nats-py's subscription queue and header parse, and become Msgs only to be
    acknowledged. Each event is handed to the lane of its key (by default its call): one lane runs its events one after the
    other, lanes run concurrently. With `key=None` every event starts at once, in the order they came: for
    a service that orders by something the event does not name (the coordinator's contact, which owns
    several calls) with its own FIFO lock. An event is acknowledged after its handler returned; while the handler
    works, the server is told it is in progress, so a slow step is not redelivered meanwhile. A handler
    that raises gets its event back after REDELIVER_DELAY_S (at most `max_deliver` deliveries); one that
    raises Redeliver(delay) gets it back after that delay, with nothing logged.
    """

    def __init__(
        self,
        bus: Bus,
        event_types: list[type[Event]],
        *,
        durable: str,
        handler: EventHandler,
        ack_wait: float = 5.0,
        key: Callable[[Event], Hashable] | None = call_key,
        source: PartitionSource | None = None,
        max_deliver: int = MAX_DELIVER,
    ) -> None:
        self.bus = bus
        self.durable = durable
        self.handler = handler
        self.ack_wait = ack_wait
        self.key = key
        self.source = source
        self.max_deliver = max_deliver
        self.filters = _event_filters(event_types)
        self._kinds = {(k.domain, k.name): k for k in event_types}
        self._lanes: dict[Hashable, deque[tuple[Msg, Event]]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False
        self._pull: RawPull | None = None

    @property
    def pulls(self) -> int:
        """Pull requests sent so far."""
        return 0 if self._pull is None else self._pull.requests

    async def start(self) -> None:
        js = self.bus.js
        source = self.source
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.NEW if source is None else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=10_000,
            filter_subjects=sorted(self.filters) if source is None else [f"{source.prefix}.>"],
        )
        stream = EVENTS_STREAM if source is None else source.stream
        if source is not None:
            # A partition's work queue keeps every event until it is acknowledged: a fresh consumer starts
            # at the oldest one left, in stream order, so what a lost worker had in hand comes first, now
            # (instead of after its ack wait, behind later events of the same contact or call).
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(stream, self.durable)
        try:
            await js.add_consumer(stream, config)
        except Exception as exc:  # exists with another config (an older release's filters): keep it
            log.warning("bus_consumer_exists", durable=self.durable, detail=str(exc)[:160])
        from .batches import BusClient, RawPull  # batches.py builds on this module

        if not isinstance(self.bus.nc, BusClient):
            raise TypeError("consume needs the bus's own client (services.kernel.bus.connect)")
        self._pull = RawPull(self.bus.nc, stream, self.durable)
        await self._pull.start()
        self._pump = asyncio.create_task(self._run_pump())

    async def _run_pump(self) -> None:
        pull = self._pull
        assert pull is not None
        while not self._stopping:
            try:
                got = await pull.stand(PULL_BATCH, FETCH_WAIT_S, self._arrived)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus is away: it reconnects by itself
                log.warning("bus_fetch_failed", durable=self.durable, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(PULL_PAUSE_S)
                continue
            if not got and pull.refusal is not None:
                log.warning("bus_pull_refused", durable=self.durable, status=pull.refusal)
                await asyncio.sleep(PULL_PAUSE_S)

    def _arrived(self, raw: RawMsg) -> None:
        """A delivery of the standing pull, from the connection's reader: handed out at once."""
        subject, reply, data = raw
        msg = Msg(self.bus.nc, subject.decode(), reply.decode(), data)
        if self._stopping:
            # Came as the stop began (on Python 3.11 a cancel can be swallowed while a pull returns): back
            # at once, for the next process.
            self._start(_nak_all([msg]))
            return
        try:
            self._dispatch(msg)
        except Exception:  # never into the connection's reader
            log.exception("bus_dispatch_failed", durable=self.durable, subject=msg.subject)

    def _dispatch(self, msg: Msg) -> None:
        subject = msg.subject if self.source is None else self.source.original(msg.subject)
        event = _decode_event(subject, msg.data, self._kinds)
        if isinstance(event, str):
            log.warning("bus_event_refused", durable=self.durable, subject=msg.subject, reason=event)
            EVENTS.labels(self.durable, "unreadable").inc()
            self._start(_term(msg))  # delivering it again would not make it readable
            return
        if self.key is None:
            self._start(self._handle(msg, event))
            return
        key = self.key(event)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append((msg, event))
            return
        self._lanes[key] = deque([(msg, event)])
        self._start(self._run_lane(key))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _run_lane(self, key: Hashable) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                msg, event = lane[0]
                await self._handle(msg, event)
                lane.popleft()
        finally:
            del self._lanes[key]

    async def _handle(self, msg: Msg, event: Event) -> None:
        progress = _Progress(msg, self.ack_wait / 2)
        started = time.perf_counter()
        try:
            await self.handler(event)
        except asyncio.CancelledError:
            raise  # stopping: not acknowledged, so the next consumer process gets it
        except Redeliver as again:
            EVENTS.labels(self.durable, "redelivered").inc()
            with contextlib.suppress(Exception):
                await msg.nak(delay=again.delay_s)
            return
        except Exception:
            delivered = msg.metadata.num_delivered if msg.metadata else 0
            log.exception(
                "bus_event_failed",
                durable=self.durable,
                subject=msg.subject,
                delivered=delivered,
                given_up=delivered >= self.max_deliver,
            )
            EVENTS.labels(self.durable, "failed").inc()
            with contextlib.suppress(Exception):
                await msg.nak(delay=REDELIVER_DELAY_S)
            return
        finally:
            progress.cancel()
        EVENTS.labels(self.durable, "ok").inc()
        EVENT_SECONDS.labels(self.durable).observe(time.perf_counter() - started)
        EVENT_DELAY.labels(self.durable).set(max(0.0, time.time() - event.ts))
        with contextlib.suppress(Exception):
            await msg.ack()

    async def stop(self, timeout: float = 3 * STOP_STEP_S) -> list[str]:
        """Stop pulling, give the handlers in flight `timeout` to finish (the rest are cancelled and their
        events redelivered to the next process), unsubscribe. Returns what did not stop in time."""
        late: list[str] = []
        self._stopping = True
        if self._pump is not None:
            self._pump.cancel()
            await _bounded(f"the {self.durable} fetch", self._pump, late, watch=[self._pump])
        if self._lane_tasks:
            tasks = list(self._lane_tasks)
            _, running = await asyncio.wait(tasks, timeout=timeout)
            if running:
                late.append(f"{len(running)} {self.durable} handlers")
                log.warning(
                    "bus_stop_late", waited_for=f"{len(running)} {self.durable} handlers", timeout_s=timeout
                )
                for task in running:
                    task.cancel()
                await _bounded(
                    f"cancelling {self.durable} handlers",
                    asyncio.gather(*running, return_exceptions=True),
                    late,
                    watch=running,
                )
        if self._pull is not None:
            await _bounded(f"unsubscribe {self.durable}", self._pull.unsubscribe(), late)
            # Delivered to a pull the stop cancelled: back at once rather than after the ack wait.
            left = [Msg(self.bus.nc, s.decode(), r.decode(), d) for s, r, d in self._pull.left()]
            await _bounded(f"nak {len(left)} {self.durable} events", _nak_all(left), late)
        return late


class _Progress:
    """Tells the server every `every` seconds that an event's handler is still working, until cancelled:
    a timer rather than a task per event (most handlers finish long before the first tick, and a task
    created and cancelled per event cost each consumer a loop turn or two)."""

    __slots__ = ("every", "handle", "msg", "sending")

    def __init__(self, msg: Msg, every: float) -> None:
        self.msg, self.every = msg, every
        self.sending: asyncio.Task[None] | None = None
        self.handle = asyncio.get_running_loop().call_later(every, self._tick)

    def _tick(self) -> None:
        self.sending = asyncio.ensure_future(self._send())
        self.handle = asyncio.get_running_loop().call_later(self.every, self._tick)

    async def _send(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.in_progress()

    def cancel(self) -> None:
        self.handle.cancel()
        if self.sending is not None:
            self.sending.cancel()


async def _nak_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


async def _term(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.term()


class Listener:
    """Events on core NATS, at most once (Bus.listen): decoded and tenant-checked like the rest; addressed
    kinds only those of `addressee`. With `platform` set, one platform message (sb.sys.<...>, no tenant)
    instead (Bus.listen_platform)."""

    def __init__(
        self,
        bus: Bus,
        event_types: list[type[Event]],
        handler: EventHandler,
        *,
        tenant_id: Any = None,
        addressee: str | None = None,
        platform: tuple[str, type[msgspec.Struct]] | None = None,
    ) -> None:
        self.bus = bus
        self.handler = handler
        # The subjects subscribed to, each with the type its messages decode into.
        self.filters: Mapping[str, type[msgspec.Struct]] = _event_filters(
            event_types, "*" if tenant_id is None else str(uuid.UUID(str(tenant_id))), addressee
        )
        self._kinds = {(k.domain, k.name): k for k in event_types}
        self._platform = platform
        if platform is not None:
            self.filters = {platform[0]: platform[1]}
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        for subject in self.filters:
            self._subs.append(await self.bus.nc.subscribe(subject, cb=self._on_msg))
        # The server has the subscriptions once this returns: a socket told "ready" gets every push after.
        with contextlib.suppress(Exception):  # the bus is away: it subscribes again when it reconnects
            await flushed(self.bus.nc, LISTEN_FLUSH_S)

    async def _on_msg(self, msg: Msg) -> None:
        event: Any
        if self._platform is not None:
            try:
                event = decode(msg.data, self._platform[1])
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                event = f"undecodable: {exc}"[:200]
        else:
            event = _decode_event(msg.subject, msg.data, self._kinds)
        if isinstance(event, str):
            log.warning("bus_event_refused", subject=msg.subject, reason=event)
            return
        try:
            await self.handler(event)
        except Exception:
            log.exception("bus_event_failed", subject=msg.subject)

    async def stop(self) -> list[str]:
        late: list[str] = []
        for sub in self._subs:
            await _bounded(f"unsubscribe {sub.subject}", sub.unsubscribe(), late)
        self._subs = []
        return late
