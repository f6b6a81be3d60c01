"""Bus.serve, Bus.consume and Bus.listen against the real NATS: the tenant check, the reply cache, one set of
error codes, redelivery of what a crashed handler did not finish, and stops that are bounded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from services.kernel import serving
from services.kernel.bus import Bus, CommandTimeout, connect
from services.kernel.messages import Command, Event, Reply, ReplyCode, decode, encode
from services.kernel.subjects import cmd_subject

SERVICE = "bustest"


class Ping(Command, kw_only=True, frozen=True):
    service: ClassVar[str] = SERVICE
    name: ClassVar[str] = "ping"
    text: str


class Slow(Command, kw_only=True, frozen=True):
    service: ClassVar[str] = SERVICE
    name: ClassVar[str] = "slow"


class Crash(Command, kw_only=True, frozen=True):
    service: ClassVar[str] = SERVICE
    name: ClassVar[str] = "crash"


class Held(Command, kw_only=True, frozen=True):
    """A command for one call: Bus.request sends it to the call's own subject first."""

    service: ClassVar[str] = SERVICE
    name: ClassVar[str] = "held"
    call_id: uuid.UUID

    @property
    def held_by(self) -> uuid.UUID | None:
        return self.call_id


class Happened(Event, kw_only=True, frozen=True):
    domain: ClassVar[str] = SERVICE
    name: ClassVar[str] = "happened"
    call_id: uuid.UUID
    n: int


@pytest.fixture
async def bus(infra: Any) -> AsyncIterator[Bus]:
    bus = await connect(infra.nats_url, name="bus-serving-test")
    await bus.ensure_streams()
    yield bus
    await bus.close()


async def _raw(bus: Bus, subject: str, data: bytes) -> Reply:
    return decode((await bus.nc.request(subject, data, timeout=2.0)).data, Reply)


async def test_serve_answers_refuses_and_caches(bus: Bus) -> None:
    tenant = uuid.uuid4()
    runs: list[str] = []
    release = asyncio.Event()

    async def ping(cmd: Ping) -> Reply:
        runs.append(cmd.text)
        return Reply(ok=True, data={"echo": cmd.text})

    async def slow(cmd: Slow) -> serving.Later:
        runs.append("slow")

        async def work() -> Reply:
            await release.wait()
            return Reply(ok=True, data={"slow": True})

        return serving.Later(work())

    async def crash(cmd: Crash) -> Reply:
        runs.append("crash")
        raise RuntimeError("boom")

    server = await bus.serve(SERVICE, {Ping: ping, Slow: slow, Crash: crash}, queue=f"q{uuid.uuid4().hex}")
    try:
        first = Ping(tenant_id=tenant, text="hello")
        assert (await bus.request(first)).data == {"echo": "hello"}
        # A retry (same command id) is answered from the cache: the handler does not run twice.
        assert (await bus.request(first)).data == {"echo": "hello"}
        assert runs == ["hello"]

        # The payload names another tenant than the subject: refused before the handler.
        other = Ping(tenant_id=uuid.uuid4(), text="sneaky")
        wrong = await _raw(bus, cmd_subject(tenant, SERVICE, "ping"), encode(other))
        assert (wrong.ok, wrong.code) == (False, ReplyCode.WRONG_TENANT)

        bad = await _raw(bus, cmd_subject(tenant, SERVICE, "ping"), b'{"tenant_id": 42')
        assert (bad.ok, bad.code) == (False, "bad_message") and "invalid ping command" in (bad.error or "")
        missing = await _raw(bus, cmd_subject(tenant, SERVICE, "ping"), encode(Crash(tenant_id=tenant)))
        assert missing.code == ReplyCode.BAD_MESSAGE and "text" in (missing.error or "")
        unknown = await _raw(bus, cmd_subject(tenant, SERVICE, "dance"), b"{}")
        assert unknown.code == ReplyCode.UNKNOWN_COMMAND and "ping" in (unknown.error or "")
        assert runs == ["hello"]

        # A crash is answered (not cached: a retry runs again).
        boom = Crash(tenant_id=tenant)
        for _ in range(2):
            crashed = await bus.request(boom)
            assert crashed.code == ReplyCode.INTERNAL and "RuntimeError" in (crashed.error or "")
        assert runs == ["hello", "crash", "crash"]

        # A reply that comes later: other commands are served meanwhile, and a retry of the pending
        # command gets the same reply from the one run.
        wait = Slow(tenant_id=tenant)
        a = asyncio.create_task(bus.request(wait, timeout=3.0))
        b = asyncio.create_task(bus.request(wait, timeout=3.0))
        await asyncio.sleep(0.2)
        assert (await bus.request(Ping(tenant_id=tenant, text="meanwhile"))).ok
        assert not a.done() and not b.done()
        release.set()
        assert (await a).data == (await b).data == {"slow": True}
        assert runs.count("slow") == 1
    finally:
        assert await server.stop() == []


async def test_a_concurrent_server_answers_a_command_while_the_one_before_still_waits(bus: Bus) -> None:
    """nats-py runs a subscription's callback one message at a time: by default a handler that waits (on
    routing, media, a save) holds every later command behind it. With `concurrent` each runs in a task of
    its own, started in arrival order; a retry of one in flight still gets the one run's reply, and a crash
    is answered `internal` and not remembered."""
    tenant = uuid.uuid4()
    gate = asyncio.Event()
    runs: list[str] = []

    async def ping(cmd: Ping) -> Reply:
        runs.append(cmd.text)
        if cmd.text.startswith("first"):
            await gate.wait()
        if cmd.text.startswith("crash"):
            raise RuntimeError("boom")
        return Reply(ok=True, data={"echo": cmd.text})

    for concurrent in (False, True):
        gate.clear()
        server = await bus.serve(SERVICE, {Ping: ping}, queue=f"q{uuid.uuid4().hex}", concurrent=concurrent)
        try:
            first = Ping(tenant_id=tenant, text=f"first-{concurrent}")
            waiting = asyncio.create_task(bus.request(first, timeout=5.0))
            await asyncio.sleep(0.2)
            second = bus.request(Ping(tenant_id=tenant, text=f"second-{concurrent}"), timeout=0.5)
            if not concurrent:
                with pytest.raises(CommandTimeout):
                    await second  # behind the first, which waits for the gate
            else:
                assert (await second).data == {"echo": "second-True"}
                assert not waiting.done()
                retry = asyncio.create_task(bus.request(first, timeout=5.0))
                await asyncio.sleep(0.1)
                crash = Ping(tenant_id=tenant, text="crash")
                for _ in range(2):
                    assert (await bus.request(crash)).code == ReplyCode.INTERNAL
                gate.set()
                assert (await retry).data == {"echo": "first-True"}
            gate.set()
            assert (await waiting).data == {"echo": f"first-{concurrent}"}
        finally:
            assert await server.stop() == []
    # The retry of the first did not run it again; both crashes ran (not remembered).
    assert runs.count("first-True") == 1 and runs.count("crash") == 2


async def test_serve_stop_is_bounded_with_a_reply_pending(bus: Bus) -> None:
    async def slow(cmd: Slow) -> serving.Later:
        return serving.Later(asyncio.Event().wait())  # type: ignore[arg-type]

    server = await bus.serve(SERVICE, {Slow: slow}, queue=f"q{uuid.uuid4().hex}")
    pending = asyncio.create_task(bus.request(Slow(tenant_id=uuid.uuid4()), timeout=5.0))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 2 * serving.STOP_STEP_S
    pending.cancel()


async def _publish(bus: Bus, tenant: uuid.UUID, call: uuid.UUID, n: int) -> Happened:
    event = Happened(tenant_id=tenant, call_id=call, n=n)
    await bus.publish(event)
    return event


async def test_consume_acks_after_the_handler_and_redelivers_a_crash(bus: Bus) -> None:
    tenant, call, other_call = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    seen: list[tuple[uuid.UUID, int]] = []
    crashed: list[int] = []
    done = asyncio.Event()

    async def handle(event: Happened) -> None:
        if event.tenant_id != tenant:
            return  # another test's events
        if event.n == 2 and not crashed:
            crashed.append(event.n)
            raise RuntimeError("crash while handling 2")
        seen.append((event.call_id, event.n))
        if len(seen) == 5:
            done.set()

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = await bus.consume([Happened], durable=durable, handler=handle)
    try:
        for n in (1, 2, 3):
            await _publish(bus, tenant, call, n)
        for n in (10, 11):
            await _publish(bus, tenant, other_call, n)
        # The subject names this tenant, the payload another: never handed to the handler.
        forged = Happened(tenant_id=uuid.uuid4(), call_id=call, n=99)
        await bus.js.publish(f"sb.{tenant}.evt.{SERVICE}.happened", encode(forged))
        await asyncio.wait_for(done.wait(), 5.0)
        assert crashed == [2]
        # The crashed event came back and was handled; one call's other events kept their order.
        assert sorted(seen) == sorted([(call, 1), (call, 2), (call, 3), (other_call, 10), (other_call, 11)])
        assert [n for c, n in seen if c == other_call] == [10, 11]
        assert [n for c, n in seen if c == call and n != 2] == [1, 3]
        await asyncio.sleep(0.3)
        assert all(n != 99 for _, n in seen)
        info = await bus.js.consumer_info("SB_EVENTS", durable)
        assert info.num_ack_pending == 0
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_takes_a_backlog_in_few_pulls_and_keeps_each_calls_order(bus: Bus) -> None:
    """Events waiting are taken up to serving.PULL_BATCH a pull (one pull per event cost a round trip each),
    still handed out in order per call, each acknowledged; on a quiet stream one event is not held back,
    and a trickle of events costs one standing pull, not one each."""
    tenant, calls = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    seen: dict[uuid.UUID, list[int]] = {call: [] for call in calls}
    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    total = 300

    async def handle(event: Happened) -> None:
        if event.tenant_id == tenant:
            await asyncio.sleep(0)
            seen[event.call_id].append(event.n)

    consumer = await bus.consume([Happened], durable=durable, handler=handle)
    try:
        assert await consumer.stop() == []  # the durable stays: what comes now waits for the next process
        for n in range(total):
            await _publish(bus, tenant, calls[n % 3], n)
        consumer = await bus.consume([Happened], durable=durable, handler=handle)
        for _ in range(100):
            if sum(map(len, seen.values())) >= total:
                break
            await asyncio.sleep(0.05)
        for i, call in enumerate(calls):
            assert seen[call] == list(range(i, total, 3))
        # The backlog in ceil(300 / 64) = 5 pulls and as many that found nothing more; never 300.
        assert consumer.pulls <= 2 * -(-total // serving.PULL_BATCH) + 2, consumer.pulls
        await asyncio.sleep(0.1)  # the last handler's ack follows its append
        info = await bus.js.consumer_info("SB_EVENTS", durable)
        assert info.num_ack_pending == 0 and info.num_pending == 0

        started = time.monotonic()
        await _publish(bus, tenant, calls[0], total)
        for _ in range(100):
            if seen[calls[0]][-1] == total:
                break
            await asyncio.sleep(0.01)
        assert seen[calls[0]][-1] == total
        assert time.monotonic() - started < 0.5  # not held for company until the long poll's end (1 s)

        # A trickle costs no pull per event: one standing pull (1 s) takes them as they come.
        before = consumer.pulls
        for n in range(total + 1, total + 6):
            await _publish(bus, tenant, calls[1], n)
            for _ in range(100):
                if seen[calls[1]][-1] == n:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.02)
        assert seen[calls[1]][-5:] == list(range(total + 1, total + 6))
        assert consumer.pulls - before <= 2, consumer.pulls - before
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_redeliver_brings_the_event_back_after_its_delay_up_to_max_deliver(bus: Bus) -> None:
    """A handler raising Redeliver(delay) is not done: the event comes back no sooner than the delay, and
    after `max_deliver` deliveries no more (the webhook worker's growing back-off rides on this)."""
    tenant, call = uuid.uuid4(), uuid.uuid4()
    arrivals: list[float] = []
    delays = [0.3, 0.6]

    async def handle(event: Happened) -> None:
        if event.tenant_id != tenant:
            return
        arrivals.append(time.monotonic())
        raise serving.Redeliver(delays[min(len(arrivals) - 1, 1)])

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = await bus.consume([Happened], durable=durable, handler=handle, key=None, max_deliver=3)
    try:
        await _publish(bus, tenant, call, 1)
        for _ in range(60):
            if len(arrivals) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a fourth delivery would have come by now
        assert len(arrivals) == 3
        assert arrivals[1] - arrivals[0] >= 0.3 - 0.05
        assert arrivals[2] - arrivals[1] >= 0.6 - 0.05
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_a_handler_slower_than_the_ack_wait_gets_its_event_once(bus: Bus) -> None:
    """While a handler works the server is told the event is in progress, so a step longer than the ack
    wait is not delivered again meanwhile; it is acknowledged once done."""
    tenant, call = uuid.uuid4(), uuid.uuid4()
    deliveries: list[int] = []

    async def slow(event: Happened) -> None:
        if event.tenant_id == tenant:
            deliveries.append(event.n)
            await asyncio.sleep(2.2)  # more than twice the ack wait

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = await bus.consume([Happened], durable=durable, handler=slow, ack_wait=1.0)
    try:
        await _publish(bus, tenant, call, 1)
        # A redelivery would come after 1 s and run (in the call's lane) once the first run ends at 2.2 s.
        await asyncio.sleep(3.5)
        assert deliveries == [1]
        info = await bus.js.consumer_info("SB_EVENTS", durable)
        assert info.num_ack_pending == 0
    finally:
        await consumer.stop()
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_stop_is_bounded_and_the_unfinished_event_comes_back(bus: Bus) -> None:
    tenant, call = uuid.uuid4(), uuid.uuid4()
    started = asyncio.Event()

    async def hang(event: Happened) -> None:
        if event.tenant_id == tenant:
            started.set()
            await asyncio.Event().wait()

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = await bus.consume([Happened], durable=durable, handler=hang, ack_wait=1.0)
    try:
        await _publish(bus, tenant, call, 1)
        await asyncio.wait_for(started.wait(), 5.0)
        t0 = time.monotonic()
        late = await consumer.stop(timeout=0.5)
        assert time.monotonic() - t0 < 0.5 + 3 * serving.STOP_STEP_S
        assert late == [f"1 {durable} handlers"]

        # Never acknowledged: the next process on the same durable consumer gets it.
        got: asyncio.Future[Happened] = asyncio.get_running_loop().create_future()

        async def take(event: Happened) -> None:
            if event.tenant_id == tenant and not got.done():
                got.set_result(event)

        consumer = await bus.consume([Happened], durable=durable, handler=take, ack_wait=1.0)
        assert (await asyncio.wait_for(got, 5.0)).n == 1
    finally:
        await consumer.stop()
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_batches_retries_a_failed_batch_before_anything_after_it(bus: Bus) -> None:
    """A batch whose handler raises comes back whole, and no later event is handled (nor acknowledged
    with it) until it went through; a forged payload is never handed out; every event is acknowledged."""
    tenant, call = uuid.uuid4(), uuid.uuid4()
    batches: list[list[int]] = []
    failures: list[int] = []
    done = asyncio.Event()

    forged_seen: list[Event] = []

    async def write(events: list[Event]) -> None:
        forged_seen.extend(e for e in events if e.n == 99 and e.call_id == call)  # type: ignore[attr-defined]
        ns = [e.n for e in events if e.tenant_id == tenant]  # type: ignore[attr-defined]
        if not ns:
            return
        if not failures:
            failures.append(len(ns))
            raise RuntimeError("the database is away")
        batches.append(ns)
        if sum(len(b) for b in batches) >= 30:
            done.set()

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    # New events only: from the stream's start it would first read every other test's events.
    consumer = await bus.consume_batches([Happened], durable=durable, handler=write, batch=8)
    try:
        for n in range(20):
            await _publish(bus, tenant, call, n)
        forged = Happened(tenant_id=uuid.uuid4(), call_id=call, n=99)
        await bus.js.publish(f"sb.{tenant}.evt.{SERVICE}.happened", encode(forged))
        for n in range(20, 30):
            await _publish(bus, tenant, call, n)
        await asyncio.wait_for(done.wait(), 10.0)
        handled = [n for b in batches for n in b]
        assert handled == list(range(30))  # in stream order, each once, the failed batch first
        assert batches[0] == list(range(failures[0]))
        await asyncio.sleep(0.3)
        assert forged_seen == []
        info = await bus.js.consumer_info("SB_EVENTS", durable)
        assert info.num_ack_pending == 0
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_listen_is_one_tenants_and_checks_the_payload(bus: Bus) -> None:
    tenant, call = uuid.uuid4(), uuid.uuid4()
    seen: list[int] = []
    two = asyncio.Event()

    async def handle(event: Happened) -> None:
        seen.append(event.n)
        if event.n == 2:
            two.set()

    listener = await bus.listen([Happened], handle, tenant_id=tenant)
    try:
        await _publish(bus, uuid.uuid4(), call, 7)  # another tenant
        forged = Happened(tenant_id=uuid.uuid4(), call_id=call, n=8)
        await bus.nc.publish(f"sb.{tenant}.evt.{SERVICE}.happened", encode(forged))
        await bus.nc.publish(f"sb.{tenant}.evt.{SERVICE}.happened", b"not json")
        await _publish(bus, tenant, call, 2)
        await asyncio.wait_for(two.wait(), 2.0)
        assert seen == [2]
    finally:
        assert await listener.stop() == []


async def test_listen_platform_decodes_one_platform_message(bus: Bus) -> None:
    got: asyncio.Queue[Any] = asyncio.Queue()
    subject = f"sb.sys.bustest.{uuid.uuid4().hex}"

    async def handle(message: Any) -> None:
        await got.put(message)

    listener = await bus.listen_platform(subject, Happened, handle)
    try:
        await bus.nc.publish(subject, b"garbage")
        sent = Happened(tenant_id=uuid.uuid4(), call_id=uuid.uuid4(), n=5)
        await bus.nc.publish(subject, encode(sent))
        assert await asyncio.wait_for(got.get(), 2.0) == sent
        assert got.empty()
    finally:
        assert await listener.stop() == []


async def test_a_command_for_a_call_goes_to_its_holder_and_falls_back_to_the_service(bus: Bus) -> None:
    tenant, held, elsewhere = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    heard: list[tuple[str, uuid.UUID]] = []

    async def handle(cmd: Held) -> Reply:
        heard.append(("any", cmd.call_id))
        return Reply(ok=True)

    server = await bus.serve(SERVICE, {Held: handle}, queue=None, subject=f"sb.{tenant}.cmd.{SERVICE}.held")
    own = await _holder_server(bus, tenant, held, heard)
    try:
        assert (await bus.request(Held(tenant_id=tenant, call_id=held))).ok
        assert (await bus.request(Held(tenant_id=tenant, call_id=elsewhere))).ok
        # The held call's command reached its holder only; the other fell back to the service subject.
        assert heard == [("holder", held), ("any", elsewhere)]
    finally:
        await own.stop()
        await server.stop()


async def _holder_server(bus: Bus, tenant: uuid.UUID, call: uuid.UUID, heard: list) -> serving.Server:  # type: ignore[type-arg]
    """A server whose only subject is one call's: sb.<tenant>.cmd.<service>.<name>.<call>."""

    async def holder(cmd: Held) -> Reply:
        heard.append(("holder", cmd.call_id))
        return Reply(ok=True)

    server: serving.Server = serving.Server(bus, SERVICE, {Held: holder})  # type: ignore[type-arg]

    def parse(subject: str) -> tuple[uuid.UUID | None, str] | None:
        tenant_token, name = subject.split(".")[1], subject.split(".")[4]
        return uuid.UUID(tenant_token), name

    await server.subscribe(f"sb.{tenant}.cmd.{SERVICE}.*.{call}", queue=None, parse=parse)
    return server


async def test_consume_stop_is_bounded_while_events_stream_in_and_none_is_dropped(bus: Bus) -> None:
    """Stopped again and again while events keep coming: on Python 3.11 a cancel that lands as the fetch's
    message (or the pull's 408) arrives is swallowed by asyncio.wait_for inside nats-py's next_msg, and the
    pump went on to a second full fetch, past the stop's bound. Each stop must end in time, leave no task,
    and every event must be handled (one taken from the server as the stop began comes back)."""
    tenant, call = uuid.uuid4(), uuid.uuid4()
    handled: set[int] = set()
    durable = f"bustest_{uuid.uuid4().hex[:8]}"

    async def handle(event: Happened) -> None:
        if event.tenant_id == tenant:
            handled.add(event.n)

    published: list[int] = []
    # The publisher stops on a flag, not only on cancel: on Python 3.11 a cancel that lands as a request's
    # reply arrives is swallowed by asyncio.wait_for inside nats-py's request, and a `while True` publisher
    # then ran on for ever (a fresh-clone run timed out at 120 s, the task "cancelling" mid-publish).
    streaming = True

    async def stream() -> None:
        while streaming:
            await _publish(bus, tenant, call, len(published))
            published.append(len(published))
            await asyncio.sleep(0.002)

    async def stop_streaming() -> None:
        nonlocal streaming
        streaming = False
        await asyncio.wait([publisher], timeout=10)  # at most one publish (5 s) and a sleep to finish
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)

    consumer = await bus.consume([Happened], durable=durable, handler=handle, key=None, ack_wait=1.0)
    publisher = asyncio.create_task(stream())
    try:
        for round_ in range(25):
            await asyncio.sleep(0.02 + 0.004 * round_)
            started = time.monotonic()
            late = await consumer.stop()
            took = time.monotonic() - started
            assert late == [], late
            assert took < serving.STOP_STEP_S, took
            pump = consumer._pump
            assert pump is not None and pump.done(), "the pump outlived the stop"
            consumer = await bus.consume([Happened], durable=durable, handler=handle, key=None, ack_wait=1.0)
        await stop_streaming()
        # What a stopped pull had in hand comes back (at once, or after the ack wait): none is lost.
        for _ in range(60):
            if handled >= set(published):
                break
            await asyncio.sleep(0.1)
        assert set(published) - handled == set()
    finally:
        await stop_streaming()
        await consumer.stop()
        await bus.js.delete_consumer("SB_EVENTS", durable)


class Happened2(Event, kw_only=True, frozen=True):
    domain: ClassVar[str] = SERVICE
    name: ClassVar[str] = "happened_again"
    call_id: uuid.UUID
    n: int


async def test_a_durable_made_by_an_older_release_gains_the_newly_consumed_types(bus: Bus) -> None:
    """The server updates a durable's filters in place when the same name is made again with others (only its
    deliver policy can not change): a release that consumes one more event type hears it from its start."""
    tenant, call = uuid.uuid4(), uuid.uuid4()
    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    seen: list[str] = []
    both = asyncio.Event()

    async def handle(event: Event) -> None:
        if event.tenant_id == tenant:
            seen.append(type(event).__name__)
            if len(seen) == 2:
                both.set()

    older = await bus.consume([Happened], durable=durable, handler=handle)
    assert await older.stop() == []
    newer = await bus.consume([Happened, Happened2], durable=durable, handler=handle)
    try:
        info = await bus.js.consumer_info("SB_EVENTS", durable)
        assert sorted(info.config.filter_subjects or []) == [
            f"sb.*.evt.{SERVICE}.happened",
            f"sb.*.evt.{SERVICE}.happened_again",
        ]
        await bus.publish(Happened2(tenant_id=tenant, call_id=call, n=1))
        await _publish(bus, tenant, call, 2)
        await asyncio.wait_for(both.wait(), 5.0)
        assert sorted(seen) == ["Happened", "Happened2"]
    finally:
        assert await newer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_consume_batches_never_acknowledges_a_delivery_lost_on_the_way(bus: Bus) -> None:
    """One ack acknowledges every delivery before it: a delivery the client never got (a reconnect, a slow
    client cut off by the server; here dropped as it arrives) used to be acknowledged unread with the next
    batch. The gap in the consumer sequence holds the acks until the server hands it back."""
    from services.kernel.batches import BatchConsumer

    tenant, call = uuid.uuid4(), uuid.uuid4()
    handled: set[int] = set()
    done = asyncio.Event()

    async def write(events: list[Event]) -> None:
        handled.update(e.n for e in events if e.tenant_id == tenant)  # type: ignore[attr-defined]
        if len(handled) == 12:
            done.set()

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = BatchConsumer(bus, [Happened], durable=durable, handler=write, batch=4, ack_wait=1.0)
    await consumer.start()
    assert consumer._pull is not None
    sid = consumer._pull._sub._id
    take = bus.nc.raw_sinks[sid]  # type: ignore[attr-defined]
    seen: list[int] = []

    def lossy(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if reply and decode(data, Happened).n == 5 and 5 not in seen:
            seen.append(5)  # the first delivery of event 5 never reaches the consumer
            return
        take(subject, reply, data, headers)

    bus.nc.raw_sinks[sid] = lossy  # type: ignore[attr-defined]
    try:
        for n in range(12):
            await _publish(bus, tenant, call, n)
        await asyncio.wait_for(done.wait(), 10.0)
        assert seen == [5] and handled == set(range(12))
        for _ in range(40):
            info = await bus.js.consumer_info("SB_EVENTS", durable)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_ack_pending == 0
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_an_unfiltered_batch_consumer_hands_out_only_its_kinds_and_acknowledges_the_rest(
    bus: Bus,
) -> None:
    """consume_batches(unfiltered=True): the server delivers every event of the stream (cheaper for it than
    a list of subject filters) and the consumer hands out only the kinds asked for; the others, of any
    tenant, are dropped without a refusal, and everything is acknowledged."""
    from services.kernel import events as ev

    tenant, call = uuid.uuid4(), uuid.uuid4()
    handled: list[Event] = []
    done = asyncio.Event()

    async def write(events: list[Event]) -> None:
        handled.extend(e for e in events if e.tenant_id == tenant)
        if sum(isinstance(e, Happened) and e.n == 9 for e in handled):
            done.set()

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    consumer = await bus.consume_batches([Happened], durable=durable, handler=write, batch=4, unfiltered=True)
    refused = serving.EVENTS.labels(durable, "unreadable")._value.get()
    try:
        assert (await bus.js.consumer_info("SB_EVENTS", durable)).config.filter_subject == "sb.*.evt.>"
        for n in range(10):
            await _publish(bus, tenant, call, n)
            await bus.publish(ev.ContactQueued(tenant_id=tenant, call_id=call, queue="q"))  # not taken
        await asyncio.wait_for(done.wait(), 10.0)
        assert [(type(e), e.n) for e in handled] == [(Happened, n) for n in range(10)]  # type: ignore[attr-defined]
        assert serving.EVENTS.labels(durable, "unreadable")._value.get() == refused
        for _ in range(40):
            info = await bus.js.consumer_info("SB_EVENTS", durable)
            if info.num_ack_pending == 0 and info.num_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        assert await consumer.stop() == []
        await bus.js.delete_consumer("SB_EVENTS", durable)


async def test_a_filtered_batch_durable_becomes_unfiltered_in_place(bus: Bus) -> None:
    """An ingest durable made by an older release (a list of subject filters) is edited in place when the
    consumer starts unfiltered: same durable, so it goes on from its acknowledged position."""
    from services.kernel.batches import BatchConsumer

    async def write(events: list[Event]) -> None:
        pass

    durable = f"bustest_{uuid.uuid4().hex[:8]}"
    old = BatchConsumer(bus, [Happened], durable=durable, handler=write, batch=4)
    await old.start()
    assert await old.stop() == []
    try:
        assert (await bus.js.consumer_info("SB_EVENTS", durable)).config.filter_subjects
        new = BatchConsumer(bus, [Happened], durable=durable, handler=write, batch=4, unfiltered=True)
        await new.start()
        assert await new.stop() == []
        config = (await bus.js.consumer_info("SB_EVENTS", durable)).config
        assert (config.filter_subject, config.filter_subjects) == ("sb.*.evt.>", None)
    finally:
        await bus.js.delete_consumer("SB_EVENTS", durable)
