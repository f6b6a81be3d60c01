"""What is behind Bus.consume_batches: a durable JetStream pull consumer whose deliveries are taken as raw
bytes straight from nats-py's protocol parser, for writers whose cost is per batch (reporting's ingest).

Why not nats-py's `fetch`: every delivery then becomes a Msg, with its header block parsed into a dict (the
publisher's `Nats-Msg-Id`), a put into the subscription's queue and a get out of it; at thousands of events
a second that was half the reporting service's CPU (docs/reporting.md). Here the connection (`BusClient`,
every service's) hands a registered inbox's deliveries to a sink as (subject, reply, payload) bytes, before
any Msg exists; the pull request, its end (a status message or the batch complete) and the acknowledgement
are JetStream's own protocol (ADR-13), spoken over the same connection, so authentication, TLS, the
per-user inbox prefix and reconnects stay nats-py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

from .log import get_logger
from .messages import Event, decode
from .registry import parse_subject
from .serving import EVENT_DELAY, EVENT_SECONDS, EVENTS, _bounded, _event_filters
from .subjects import EVENTS_STREAM, EVENTS_SUBJECTS

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["BatchConsumer", "BatchHandler", "BusClient", "RawPull"]

log = get_logger()

BatchHandler = Callable[[list[Event]], Awaitable[object]]
# A delivery as the parser gives it: subject, reply (the ack subject; empty for a status) and payload.
RawMsg = tuple[bytes, bytes, bytes]
RawSink = Callable[[bytes, bytes, bytes, bytes | None], None]

# A pull's answer is awaited this long beyond its own expiry: past it the request was lost (a reconnect),
# and the next pull goes on (what it had delivered is redelivered after the consumer's ack_wait).
PULL_GRACE_S = 1.0
# After a pull refused by the server (409: the consumer was deleted, too many acks pending...): the next
# one waits this long, so a consumer in trouble is not asked again in a tight loop.
REFUSED_PAUSE_S = 0.5
_ACK = b"+ACK"
# A subject of a kind an unfiltered consumer does not take (the `_subjects` cache's mark): skipped silently.
_NOT_TAKEN = ""


def _ack_numbers(reply: bytes) -> tuple[int, int, int]:
    """A delivery's count, stream sequence and consumer sequence, from its ack subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or with `<domain>.<account
    hash>.` after `$JS.ACK.` and a random token at the end (the server's newer form)."""
    tokens = reply.split(b".")
    at = 4 if len(tokens) == 9 else 6
    return int(tokens[at]), int(tokens[at + 1]), int(tokens[at + 2])


class BusParser(Parser):
    """nats-py's protocol parser with a quicker path for what a busy connection mostly reads: a run of
    complete MSG/HMSG deliveries, taken by position and split control lines instead of a regular expression
    and a buffer cut per message; a raw pull's go to its sink without a coroutine. Anything else (PING,
    INFO, +OK, -ERR, a message cut by the read) and whatever follows it in the same read is nats-py's own
    parse, unchanged."""

    nc: BusClient

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        if self.state != AWAITING_CONTROL_LINE:  # nats-py is inside a message it began: it ends it
            await super().parse()
            if self.state != AWAITING_CONTROL_LINE:
                return
        sinks, process = self.nc.raw_sinks, self.nc._process_msg
        pos, size, other = 0, len(buf), False
        while pos < size:
            if buf.startswith(b"HMSG ", pos):
                headed = True
            elif buf.startswith(b"MSG ", pos):
                headed = False
            else:
                other = True
                break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            args = bytes(buf[pos:eol]).split()
            try:
                # MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <header size> <size>
                total = int(args[-1])
                head = int(args[-2]) if headed else 0
                sid = int(args[2])
                reply = args[3] if len(args) == (6 if headed else 5) else b""
            except (IndexError, ValueError):
                raise ProtocolError("nats: malformed MSG") from None
            start = eol + 2
            end = start + total
            if end + 2 > size:
                break  # the rest of it comes with the next read
            headers = bytes(buf[start : start + head]) if head else None
            payload = bytes(buf[start + head : end])
            pos = end + 2
            sink = sinks.get(sid)
            if sink is not None:
                sink(args[1], reply, payload, headers)
            else:
                await process(sid, args[1], reply, payload, headers)
        del buf[:pos]
        if other:
            await super().parse()


class BusClient(Client):
    """nats-py's client, with deliveries on a raw pull's inbox handed to its sink as bytes (RawPull): no Msg,
    no header dict, no subscription queue (BusParser). Every other subscription is nats-py's as before."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_sinks: dict[int, RawSink] = {}
        self._ps = BusParser(self)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        sink = self.raw_sinks.get(sid)
        if sink is None:
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            return
        sink(subject, reply, data, headers)


class RawPull:
    """One durable pull consumer's pulls, one at a time: `pull(n, wait)` asks for up to n messages and returns
    what came before the server ended the request (n delivered, its expiry's 408, or a refusal), within
    `wait` plus PULL_GRACE_S whatever happens. The messages come in the consumer's delivery order."""

    def __init__(self, nc: BusClient, stream: str, durable: str) -> None:
        self.nc = nc
        self.durable = durable
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._msgs: list[RawMsg] = []
        self._want = 0
        self._ended = asyncio.Event()
        self.refusal: str | None = None  # the status line of the last pull the server refused
        self._each: Callable[[RawMsg], None] | None = None  # a standing pull's receiver (stand)
        self._got = 0
        self.requests = 0  # pull requests sent (events / requests: what a pull brought on average)

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self._inbox)
        self.nc.raw_sinks[self._sub._id] = self._take

    def _take(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if reply:  # a delivery: its reply is the ack subject
            if self._each is not None:  # a standing pull's (stand)
                self._got += 1
                self._each((subject, reply, data))
                if self._got >= self._want:
                    self._ended.set()
                return
            self._msgs.append((subject, reply, data))
            if len(self._msgs) >= self._want:
                self._ended.set()
            return
        # A status without a reply ends the request: "NATS/1.0 408 Request Timeout" (expired), 404 (nothing
        # with no_wait), 409 (refused). Anything else on the inbox ends it too: better a short batch.
        status = (headers or b"")[9:12]
        if status not in (b"408", b"404", b"100"):
            self.refusal = (headers or b"").split(b"\r\n", 1)[0].decode(errors="replace")
        if status != b"100":  # 100 is a heartbeat, which no pull here asks for
            self._ended.set()

    async def pull(self, n: int, wait: float) -> list[RawMsg]:
        """Up to n messages: all those waiting, up to n (a backlog gives full batches); when none waits, those
        that come within `wait`. Deliveries of an earlier pull that came after it returned (its answer was
        late) lead the list: nothing received is ever dropped, and the order stays the consumer's."""
        msgs = await self._request(n, {"batch": n, "no_wait": True}, wait)
        if not msgs:
            # `expires` makes the server wait for messages; with it, it would ignore no_wait above.
            msgs = await self._request(n, {"batch": n, "expires": int(wait * 1e9)}, wait)
        return msgs

    async def stand(self, n: int, wait: float, each: Callable[[RawMsg], None]) -> int:
        """One standing pull: up to n messages over `wait`, each handed to `each` the moment it comes (a
        consumer that hands every event out at once, without a pull request per event: a quiet stream costs
        a request a second, not one per event). Returns how many came; the request ends when n came, at its
        expiry (the server's 408) or on a refusal (`refusal`). Deliveries of an earlier request that came
        after it ended are handed out first, in order."""
        for msg in self.left():
            each(msg)
        self._each, self._want, self._got, self.refusal = each, n, 0, None
        self._ended.clear()
        try:
            self.requests += 1
            request = {"batch": n, "expires": int(wait * 1e9)}
            await self.nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), wait + PULL_GRACE_S)
        finally:
            self._each = None
        return self._got

    def left(self) -> list[RawMsg]:
        """Deliveries no call returned (one came as its pull was cancelled): the caller hands them back."""
        msgs, self._msgs = self._msgs, []
        return msgs

    async def _request(self, n: int, request: dict[str, object], wait: float) -> list[RawMsg]:
        self._want, self.refusal = n, None
        self._ended.clear()
        if len(self._msgs) < n:
            self.requests += 1
            await self.nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), wait + PULL_GRACE_S)
        msgs, self._msgs = self._msgs, []
        return msgs

    async def ack(self, reply: bytes) -> None:
        """Acknowledge a delivery (with AckPolicy.ALL: every one before it too)."""
        await self.nc.publish(reply.decode(), _ACK)

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            self.nc.raw_sinks.pop(self._sub._id, None)
            await self._sub.unsubscribe()


class BatchConsumer:
    """A durable JetStream pull consumer on SB_EVENTS that hands out batches (Bus.consume_batches): for a
    writer whose cost is per batch rather than per event (reporting's ingest writes a batch in one
    transaction).

    Batches are handled one at a time in stream order, and the next one is pulled and decoded while the
    handler works on the current one. A batch is acknowledged with one ack (AckPolicy.ALL: every message
    up to its last) after the handler returned. A handler that raises gets the same batch again after a
    growing pause, and nothing after it is handled meanwhile: acknowledging a later batch would
    acknowledge the failed one with it. On a quiet stream a pull holds a batch's first event until
    `fetch_wait` for the rest to come: kept short (50 ms), since live views read what the handler wrote.
    The handler must therefore be idempotent (a batch can also come back after a crash). A message that
    cannot be decoded is logged and skipped: delivering it again would not make it readable.

    `unfiltered`: the consumer takes every event of the stream and the kinds not asked for are dropped here
    (their subject's parse remembered), instead of the server filtering by the kinds' subjects. nats-server
    (2.15) spent about 45 us of CPU per event delivered through a consumer with a list of subject filters,
    7.5 us through one whose filter is the stream's own (docs/reporting.md, "The ingest's CPU per event"):
    for a consumer of most of the stream, as reporting's ingest, dropping the rest here is far cheaper.
    """

    def __init__(
        self,
        bus: Bus,
        event_types: list[type[Event]],
        *,
        durable: str,
        handler: BatchHandler,
        batch: int = 2000,
        from_start: bool = False,
        start_at: int | datetime.datetime | None = None,
        ack_wait: float = 30.0,
        fetch_wait: float = 0.05,
        unfiltered: bool = False,
    ) -> None:
        self.bus = bus
        self.unfiltered = unfiltered
        self.durable = durable
        self.handler = handler
        self.batch = batch
        self.from_start = from_start
        self.start_at = start_at  # where a new durable starts: a stream sequence or a time
        self.ack_wait = ack_wait
        self.fetch_wait = fetch_wait
        self.filters = _event_filters(event_types)
        self._kinds = {(k.domain, k.name): k for k in event_types}
        # Each batch with the delivery to acknowledge it by, or None while a delivery gap is held (_gaps).
        self._ready: asyncio.Queue[tuple[bytes | None, list[Event]]] = asyncio.Queue(maxsize=2)
        self._last_cseq = 0  # the consumer sequence of the last delivery taken
        self._hold_until: int | None = None  # no ack until this stream sequence comes back redelivered
        self._subjects: dict[bytes, tuple[type[Event], uuid.UUID | None] | str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pull: RawPull | None = None
        self._stopping = False

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=(
                DeliverPolicy.BY_START_SEQUENCE
                if isinstance(self.start_at, int)
                else DeliverPolicy.BY_START_TIME
                if self.start_at is not None
                else DeliverPolicy.ALL
                if self.from_start
                else DeliverPolicy.NEW
            ),
            opt_start_seq=self.start_at if isinstance(self.start_at, int) else None,
            opt_start_time=self.start_at if isinstance(self.start_at, datetime.datetime) else None,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=self.batch * 4,
            filter_subject=EVENTS_SUBJECTS if self.unfiltered else None,
            filter_subjects=None if self.unfiltered else sorted(self.filters),
        )
        try:
            await self.bus.js.add_consumer(EVENTS_STREAM, config)
        except Exception as exc:  # exists with another config (an older release's filters): keep it
            log.warning("bus_consumer_exists", durable=self.durable, detail=str(exc)[:160])
        if not isinstance(self.bus.nc, BusClient):
            raise TypeError("consume_batches needs the bus's own client (services.kernel.bus.connect)")
        self._pull = RawPull(self.bus.nc, EVENTS_STREAM, self.durable)
        await self._pull.start()
        self._tasks = [asyncio.create_task(self._run_pump()), asyncio.create_task(self._run_writer())]

    async def _run_pump(self) -> None:
        assert self._pull is not None
        # Also checked after a pull: on Python 3.11 a cancel that meets a wait just ending can be swallowed
        # (serving.Consumer had it); what came is simply not acknowledged, so it comes back.
        while not self._stopping:
            try:
                msgs = await self._pull.pull(self.batch, self.fetch_wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus is away: it reconnects by itself
                log.warning("bus_fetch_failed", durable=self.durable, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(REFUSED_PAUSE_S)
                continue
            if self._stopping:
                return
            if not msgs:
                if self._pull.refusal is not None:
                    log.warning("bus_pull_refused", durable=self.durable, status=self._pull.refusal)
                    await asyncio.sleep(REFUSED_PAUSE_S)
                continue
            ackable = self._gaps(msgs)
            await self._ready.put((msgs[-1][1] if ackable else None, self._decode(msgs)))

    def _gaps(self, msgs: list[RawMsg]) -> bool:
        """Whether the batch may be acknowledged. One ack acknowledges every delivery before it
        (AckPolicy.ALL), so a delivery lost on the way (a reconnect, the server cutting off a slow client)
        would be acknowledged unread with the next batch. The consumer sequence numbers every delivery:
        after a gap nothing is acknowledged until the delivery after the gap comes back redelivered.
        Redeliveries come in stream order, so the lost one (earlier, its ack wait over first) has come back
        and been handled before it; the batches in between are handled (the handler is idempotent) and come
        back too."""
        if self._hold_until is None:
            # Deliveries come in consumer sequence order: when the first follows the last one taken and the
            # last is as far on as the count says, there is no gap in between (and nothing held to release),
            # so only two ack subjects are read instead of every one (reading all was 4 % of the ingest service's CPU).
            first, last = _ack_numbers(msgs[0][1])[2], _ack_numbers(msgs[-1][1])[2]
            if (not self._last_cseq or first == self._last_cseq + 1) and last - first == len(msgs) - 1:
                self._last_cseq = last
                return True
        for _, reply, _ in msgs:
            delivered, sseq, cseq = _ack_numbers(reply)
            if self._last_cseq and cseq > self._last_cseq + 1:
                log.warning("bus_delivery_gap", durable=self.durable, after=self._last_cseq, at=cseq)
                self._hold_until = max(self._hold_until or 0, sseq)
            elif self._hold_until is not None and delivered > 1 and sseq >= self._hold_until:
                self._hold_until = None
            self._last_cseq = cseq  # lower after the consumer was made again: numbering starts anew
        return self._hold_until is None

    def _decode(self, msgs: list[RawMsg]) -> list[Event]:
        """The batch's events, the tenant checked as everywhere. A subject's parse (a few per tenant) is
        remembered: at thousands of events a second, parsing each one again was a tenth of the work."""
        events: list[Event] = []
        subjects = self._subjects
        skipped = 0
        for subject, _, data in msgs:
            target = subjects.get(subject)
            if target is None:
                parsed = parse_subject(subject.decode(errors="replace"))
                kind = (
                    self._kinds.get((parsed.owner, parsed.name)) if parsed and parsed.kind == "evt" else None
                )
                if kind is not None and parsed is not None:
                    target = (kind, parsed.tenant_id)
                elif self.unfiltered and parsed is not None and parsed.kind == "evt":
                    target = _NOT_TAKEN
                else:
                    target = "not an event this consumer handles"
                if len(subjects) > 100_000:
                    subjects.clear()
                subjects[subject] = target
            if target == _NOT_TAKEN:
                skipped += 1
                continue
            if isinstance(target, str):
                self._refused(subject, target)
                continue
            try:
                event = decode(data, target[0])
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                self._refused(subject, f"undecodable: {exc}"[:200])
                continue
            if event.tenant_id != target[1]:
                self._refused(subject, "the subject's tenant and the event's tenant_id differ")
                continue
            events.append(event)
        if len(events) + skipped < len(msgs):
            EVENTS.labels(self.durable, "unreadable").inc(len(msgs) - len(events) - skipped)
        return events

    def _refused(self, subject: bytes, reason: str) -> None:
        log.warning(
            "bus_event_refused", durable=self.durable, subject=subject.decode(errors="replace"), reason=reason
        )

    async def _run_writer(self) -> None:
        assert self._pull is not None
        while True:
            last, events = await self._ready.get()
            # Behind (batches waiting): short ones are handled as one, up to `batch` events. A pull under
            # load often ends with part of a batch; the handler's cost is per call, so fewer calls catch up
            # faster, and when the stream is quiet nothing waits for company.
            while len(events) < self.batch and not self._ready.empty():
                last, more = self._ready.get_nowait()
                events = events + more
            pause = 0.5
            while True:
                started = time.perf_counter()
                try:
                    if events:
                        await self.handler(events)
                        EVENTS.labels(self.durable, "ok").inc(len(events))
                        EVENT_SECONDS.labels(self.durable).observe(time.perf_counter() - started)
                        EVENT_DELAY.labels(self.durable).set(max(0.0, time.time() - events[-1].ts))
                    break
                except asyncio.CancelledError:
                    raise  # stopping: not acknowledged, so the next consumer process gets it
                except Exception:
                    EVENTS.labels(self.durable, "failed").inc(len(events))
                    log.exception("bus_batch_failed", durable=self.durable, events=len(events), retry_s=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 30.0)
            if last is not None:
                with contextlib.suppress(Exception):
                    await self._pull.ack(last)

    async def stop(self) -> list[str]:
        """Stop pulling and writing (a batch cut short is not acknowledged: it comes back), unsubscribe.
        Returns what did not stop in time."""
        late: list[str] = []
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await _bounded(
                f"the {self.durable} batches",
                asyncio.gather(*self._tasks, return_exceptions=True),
                late,
                watch=self._tasks,
            )
        if self._pull is not None:
            await _bounded(f"unsubscribe {self.durable}", self._pull.unsubscribe(), late)
        return late
