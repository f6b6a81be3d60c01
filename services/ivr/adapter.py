"""The IVR's asyncio adapter: NATS and PostgreSQL around the sans-IO interpreter.

Call and contact events come from the durable JetStream consumer `ivr` on SB_EVENTS (Bus.consume): one
lost while the IVR restarts is delivered when it is back, and an event is acknowledged only after its step
is applied and saved, so a caller is never stranded by a missed digit or hang-up. A redelivered event
changes nothing (each call remembers the ids of its last events).

The IVR runs flows as a step of a contact: the contact coordinator owns the caller from arrival, answers
the call and sends `ivr.run` (the number's flow by id, or a flow by name: a closed queue's, a post-call
survey, an agent's transfer to a flow); the IVR answers no call itself (docs/architecture.md, "One owner
for the caller"). For each `ivr.run` it loads the flow's current version and runs one Interpreter; call
events for that call are fed to it, its commands go out with Bus.request (a failed command is fed back as
CommandFailed, so the call goes somewhere safe), lookups are performed with httpx, ivr.* events are
published, and one timer per call is armed at next_timer(). A flow that reaches a queue ends its run there:
`ivr.completed` carries the queue (its id looked up here) and its terms to the coordinator, which waits with
the caller. After
every step the call's state is saved in the JetStream KV bucket `sb_ivr_calls` (and the flow version it runs
in `sb_ivr_flows`), so a restarted IVR resumes every call where it was.

Several IVR processes share the tenants by partition when started with SB_WORKER_COUNT
(services/kernel/partitioned.py): each reads only its partitions' events and answers only their `ivr.run`
commands; one that takes a partition over (its worker died or handed it back) resumes that partition's calls
from `sb_ivr_calls` as a restarted IVR does (Interpreter.resume: the current node's prompt again), then
reads the events the lost worker left unacknowledged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from switchboard.flowdef.flow import Flow

from services.kernel.bus import Bus, BusError
from services.kernel.db import tenant_tx
from services.kernel.events import (
    CallAnswered,
    CallCollected,
    CallEnded,
    CallPlayFinished,
    CallRecordFinished,
    IvrCompleted,
    IvrRun,
    MediaHangup,
    MediaPlay,
    MediaTransfer,
)
from services.kernel.log import get_logger
from services.kernel.messages import Command, Event, Reply, ReplyCode
from services.kernel.partitioned import PartitionedEvents, Partitioning, token_partition
from services.kernel.serving import Consumer, Server

from .interpreter import SORRY, CommandFailed, Interpreter, Output
from .lookup import LookupRequest, LookupResult, derive_secret
from .lookup_net import LookupRefused, PinnedBackend, lookup_client

__all__ = ["CALLS_BUCKET", "FLOWS_BUCKET", "IvrAdapter"]

CALLS_BUCKET = "sb_ivr_calls"
FLOWS_BUCKET = "sb_ivr_flows"
COMMAND_TIMEOUT_S = 2.0
TRANSFER_TIMEOUT_S = 40.0  # media rings the outside number for up to 30 s
MAX_LOOKUP_BYTES = 64 * 1024
CALL_TTL_S = 24 * 3600.0
CONSUMER = "ivr"
# Ids of a call's last events, kept with its state: a redelivered one is not applied twice.
REMEMBERED_EVENTS = 32

# The events an interpreter listens to (a flow starts only by `ivr.run`; a flow that reaches a queue hands the
# caller back to the coordinator, so routing's contact.* events are not the IVR's).
EVENTS: tuple[type[Event], ...] = (
    CallAnswered,
    CallPlayFinished,
    CallCollected,
    CallRecordFinished,
    CallEnded,
)


class SavedCall(msgspec.Struct, kw_only=True):
    flow_key: str  # key in FLOWS_BUCKET
    state: msgspec.Raw
    seen: list[uuid.UUID] = []


@dataclass
class _Running:
    interp: Interpreter
    flow_key: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    seen: list[uuid.UUID] = field(default_factory=list)
    # Set as soon as call.ended arrives, before it waits for the lock: commands still queued for the call
    # are not sent (media would never answer them, and a timeout fed back as CommandFailed would take the
    # call to the fallback, enqueueing a caller who is gone).
    ended: bool = False


def _kv_key(*parts: object) -> str:
    return ".".join(str(p) for p in parts)


class IvrAdapter:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        *,
        platform_secret: str,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
        allow_private_lookups: bool = False,
        consumer: str = CONSUMER,
        partitioning: Partitioning | None = None,
    ) -> None:
        self.bus = bus
        self.consumer_name = consumer
        self.partitioning = partitioning
        self.partitions: PartitionedEvents | None = None
        self.pool = pool
        self.platform_secret = platform_secret
        self.clock = clock
        # Tenants' lookups must not reach the platform's own network (loopback, private, link-local
        # addresses) unless the operator allows it (one machine, tests): each connection goes to the
        # address that was checked (lookup_net.py), so a name cannot rebind between check and connect.
        self.http = http or lookup_client(None if allow_private_lookups else PinnedBackend())
        self.allow_private_lookups = allow_private_lookups
        self.calls: dict[uuid.UUID, _Running] = {}
        self.log = get_logger()
        self._consumer: Consumer | None = None
        self._server: Server[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.calls_kv: KeyValue | None = None
        self.flows_kv: KeyValue | None = None

    # -- life ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.calls_kv = await self._bucket(CALLS_BUCKET, ttl=CALL_TTL_S)
        self.flows_kv = await self._bucket(FLOWS_BUCKET, ttl=None)
        if self.partitioning is not None:
            await self._start_partitioned(self.partitioning)
            return
        await self.resume_all()
        self._consumer = await self.bus.consume(EVENTS, durable=self.consumer_name, handler=self.on_event)
        self._server = await self.bus.serve("ivr", {IvrRun: self.on_run})

    async def _start_partitioned(self, part: Partitioning) -> None:
        self.partitions = PartitionedEvents(
            self.bus, part, EVENTS, self.on_event, restore=self._restore, forget=self._forget_partition
        )
        # Every worker receives every ivr.run; only the owner of the tenant's partition answers.
        self._server = await self.bus.serve(
            "ivr", {IvrRun: self.on_run}, queue=None, accept=self.partitions.owns
        )
        await self.partitions.start()

    async def _restore(self, p: int) -> None:
        """A partition is ours: its calls resumed from `sb_ivr_calls` before its events (oldest
        unacknowledged first)."""
        resumed = await self._resume({p})
        if resumed:
            self.log.info("ivr_partition_resumed", partition=p, calls=resumed)

    def _forget_partition(self, p: int) -> None:
        """Not ours any more: forget its calls (their new owner resumes them)."""
        assert self.partitioning is not None
        for call_id, running in list(self.calls.items()):
            if token_partition(str(running.interp.state.tenant_id), self.partitioning.count) == p:
                if running.timer:
                    running.timer.cancel()
                del self.calls[call_id]

    async def stop(self) -> None:
        if self.partitions is not None:
            # Partitions' handlers finish (or are cancelled, unacknowledged) before the leases are handed over.
            await self.partitions.freeze()
        if self._consumer is not None:
            await self._consumer.stop()  # bounded, even with NATS gone
            self._consumer = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for running in self.calls.values():
            if running.timer:
                running.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:  # bounded: a stop must always complete
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.partitions is not None:
            await self.partitions.stop()
        await self.http.aclose()

    async def _bucket(self, name: str, ttl: float | None) -> KeyValue:
        try:
            return await self.bus.js.key_value(name)
        except BucketNotFoundError:
            return await self.bus.js.create_key_value(KeyValueConfig(bucket=name, ttl=ttl, history=1))

    async def resume_all(self) -> int:
        """Continue every call a previous IVR process left in the calls bucket."""
        return await self._resume(None)

    async def _resume(self, partitions: set[int] | None) -> int:
        """Continue the saved calls (of these partitions' tenants)."""
        assert self.calls_kv is not None
        resumed = 0
        for key, value in await self.bus.kv_latest(CALLS_BUCKET):
            if not value:
                continue
            tenant_id, call_id = (uuid.UUID(p) for p in key.split(".", 1))
            if partitions is not None:
                assert self.partitioning is not None
                if token_partition(str(tenant_id), self.partitioning.count) not in partitions:
                    continue
            saved = msgspec.json.decode(value, type=SavedCall)
            flow = await self._flow_from_kv(saved.flow_key)
            if flow is None:
                # The version it ran is gone: we cannot even reach its fallback. Never silence: apologise.
                await self._send(MediaPlay(tenant_id=tenant_id, call_id=call_id, text=SORRY))
                await self._send(MediaHangup(tenant_id=tenant_id, call_id=call_id, cause="ivr_error"))
                await self.calls_kv.delete(key)
                continue
            interp = Interpreter.restore(
                flow, bytes(saved.state), lookup_secret=derive_secret(self.platform_secret, tenant_id)
            )
            running = _Running(interp=interp, flow_key=saved.flow_key, seen=list(saved.seen))
            self.calls[call_id] = running
            async with running.lock:
                await self._apply(running, interp.resume(self.clock()))
            resumed += 1
            self.log.info(
                "ivr_call_resumed", tenant_id=str(tenant_id), call_id=str(call_id), node=interp.state.node
            )
        return resumed

    # -- events in ----------------------------------------------------------------------------------------

    async def on_event(self, event: Any) -> None:
        """One event from the consumer (decoded and tenant-checked there); a failure is redelivered."""
        running = self.calls.get(event.call_id)
        if running is None or event.tenant_id != running.interp.state.tenant_id:
            return
        if isinstance(event, CallEnded):
            running.ended = True
        async with running.lock:
            if event.id in running.seen:
                return
            running.seen = [*running.seen[-(REMEMBERED_EVENTS - 1) :], event.id]
            await self._apply(running, running.interp.handle(event, self.clock()))

    async def on_run(self, cmd: IvrRun) -> Reply:
        """A caller the contact coordinator answered: run the flow (the number's by id, or one by name)."""
        if cmd.call_id in self.calls:
            return Reply(ok=True)
        if (cmd.flow_id is None) == (not cmd.flow):
            return Reply(ok=False, code=ReplyCode.INVALID, error="give a flow's id or its name, not both")
        async with tenant_tx(self.pool, cmd.tenant_id, readonly=True) as conn:
            if cmd.flow_id is not None:
                found = await self._flow(conn, cmd.tenant_id, "f.id = $1", cmd.flow_id)
            else:
                found = await self._flow(conn, cmd.tenant_id, "f.name = $1", cmd.flow)
        if found is None:
            return Reply(ok=False, code="unknown_flow", error=f"no flow {cmd.flow or cmd.flow_id}")
        flow = found[0]
        scope = flow.subflows[cmd.scope].nodes if cmd.scope in flow.subflows else None
        nodes = flow.nodes if not cmd.scope else scope
        if cmd.node and (nodes is None or cmd.node not in nodes):
            # Checked before anything runs: a continuation at a node the current version lacks (it was
            # republished meanwhile) is the caller's to decide, not a silent start from the top.
            where = f"{flow.name}/{cmd.scope}" if cmd.scope else flow.name
            return Reply(ok=False, code=ReplyCode.INVALID, error=f"flow {where} has no node {cmd.node}")
        await self._begin(cmd, found)
        return Reply(ok=True)

    async def _begin(self, cmd: IvrRun, found: tuple[Flow, str, int, str]) -> None:
        flow, flow_key, version, language = found
        interp = Interpreter.new(
            flow,
            version=version,
            tenant_id=cmd.tenant_id,
            call_id=cmd.call_id,
            caller=cmd.caller,
            dialled=cmd.dialled,
            now=self.clock(),
            attributes=cmd.attributes,
            lookup_secret=derive_secret(self.platform_secret, cmd.tenant_id),
            language=language,
            run_id=cmd.id,
        )
        running = _Running(interp=interp, flow_key=flow_key)
        self.calls[cmd.call_id] = running
        async with running.lock:
            await self._save(running)
            await self._apply(running, interp.start(self.clock(), at=cmd.node, scope=cmd.scope))

    async def _flow(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, where: str, value: object
    ) -> tuple[Flow, str, int, str] | None:
        """The current version of a flow (cached in FLOWS_BUCKET under its version) and the tenant's
        language."""
        row = await conn.fetchrow(
            f"""SELECT f.id, v.version, v.definition FROM flows f
                JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.current_version WHERE {where}""",
            value,
        )
        if row is None:
            return None
        language = await conn.fetchval("SELECT language FROM tenants") or "en"
        flow = msgspec.json.decode(row["definition"].encode(), type=Flow)
        key = _kv_key(tenant_id, row["id"], row["version"])
        assert self.flows_kv is not None
        await self.flows_kv.put(key, row["definition"].encode())
        return flow, key, row["version"], language

    async def _flow_from_kv(self, key: str) -> Flow | None:
        assert self.flows_kv is not None
        try:
            entry = await self.flows_kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return msgspec.json.decode(entry.value, type=Flow)

    # -- commands out -------------------------------------------------------------------------------------

    async def _apply(self, running: _Running, outputs: list[Output]) -> None:
        """Carry out the interpreter's outputs; failures are fed back in until nothing is left to do."""
        queue = list(outputs)
        while queue:
            out = queue.pop(0)
            if isinstance(out, Event):
                if isinstance(out, IvrCompleted) and out.queue is not None:
                    # The coordinator enqueues with the tenant's queue id, as the IVR's own commands did.
                    enqueue = await self._resolve(out.queue.enqueue)
                    out = msgspec.structs.replace(
                        out, queue=msgspec.structs.replace(out.queue, enqueue=enqueue)
                    )
                try:
                    await self.bus.publish(out)
                except Exception as exc:
                    self.log.warning("ivr_event_not_published", error=str(exc), event=type(out).__name__)
            elif isinstance(out, Command):
                if running.ended:
                    continue  # the caller is gone; call.ended (waiting for the lock) finishes the call
                command = await self._resolve(out)
                if not await self._send(command) and not running.ended:
                    # What was to follow this command in the same step is void: the interpreter decides anew.
                    queue = running.interp.handle(CommandFailed(command_id=command.id), self.clock())
            elif isinstance(out, LookupRequest):
                self._spawn(self._lookup(running, out))
        await self._save(running)
        self._arm(running)

    async def _send(self, command: Command) -> bool:
        try:
            # A transfer's reply waits for the outside number to answer (media's transfer.py).
            timeout = TRANSFER_TIMEOUT_S if isinstance(command, MediaTransfer) else COMMAND_TIMEOUT_S
            reply = await self.bus.request(command, timeout=timeout)
        except BusError as exc:
            self.log.warning(
                "ivr_command_failed", command=f"{command.service}.{command.name}", error=str(exc)
            )
            return False
        if not reply.ok:
            self.log.warning(
                "ivr_command_refused", command=f"{command.service}.{command.name}", error=reply.error
            )
        return reply.ok

    async def _resolve(self, command: Command) -> Command:
        """Routing commands name queues as the flow does; routing wants the tenant's queue id as well."""
        name = getattr(command, "queue", None)
        if not name or getattr(command, "queue_id", True) is not None:
            return command
        async with tenant_tx(self.pool, command.tenant_id, readonly=True) as conn:
            queue_id = await conn.fetchval("SELECT id FROM queues WHERE name = $1", name)
        return msgspec.structs.replace(command, queue_id=queue_id)

    async def _lookup(self, running: _Running, request: LookupRequest) -> None:
        try:
            result = await asyncio.wait_for(self._fetch(request), request.timeout)
        except (TimeoutError, httpx.TimeoutException):
            result = LookupResult(id=request.id, error="timeout")
        except httpx.ConnectError as exc:
            # A refused address keeps its own words ("... resolves to a non-public address (...)").
            refused = isinstance(exc.__cause__ or exc.__context__, LookupRefused)
            result = LookupResult(
                id=request.id, error=(str(exc) if refused else f"ConnectError: {exc}")[:200]
            )
        except httpx.HTTPError as exc:
            result = LookupResult(id=request.id, error=f"{type(exc).__name__}: {exc}"[:200])
        async with running.lock:
            await self._apply(running, running.interp.handle(result, self.clock()))

    async def _fetch(self, request: LookupRequest) -> LookupResult:
        body = b""
        async with self.http.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body or None,
            timeout=request.timeout,
        ) as response:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_LOOKUP_BYTES:
                    return LookupResult(id=request.id, error="answer too large")
        return LookupResult(id=request.id, status=response.status_code, body=body)

    # -- timers and persistence ---------------------------------------------------------------------------

    def _arm(self, running: _Running) -> None:
        if running.timer is not None:
            running.timer.cancel()
            running.timer = None
        when = running.interp.next_timer()
        if when is None:
            return
        delay = max(0.0, when - self.clock())
        running.timer = asyncio.get_running_loop().call_later(delay, lambda: self._spawn(self._fire(running)))

    async def _fire(self, running: _Running) -> None:
        async with running.lock:
            await self._apply(running, running.interp.handle_timer(self.clock()))

    async def _save(self, running: _Running) -> None:
        assert self.calls_kv is not None
        state = running.interp.state
        key = _kv_key(state.tenant_id, state.call_id)
        if running.interp.done:
            self.calls.pop(state.call_id, None)
            try:
                await self.calls_kv.delete(key)
            except Exception:
                pass
            return
        saved = SavedCall(
            flow_key=running.flow_key, state=msgspec.Raw(running.interp.dump()), seen=running.seen
        )
        await self.calls_kv.put(key, msgspec.json.encode(saved))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
