"""One tenant's routing engine in this worker: its own bounded input queue and task, the clock, the
journal before every applied input, outputs published in order, snapshots and recovery.

Calls into the engine are sequential (one task); tenants are independent, so one tenant's flood only
fills its own queue (beyond `max_pending` its commands are refused with code `busy`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.messages import Command, Reply, ReplyCode

from . import core, seats
from .journal import Entry, Journal
from .tenant_config import LoadedConfig, load_tenant_config
from .translate import QUERIES, assigned_for, event_for

__all__ = ["TenantRunner"]

STATS_INTERVAL_S = 1.0  # how often the snapshot is considered
# A queue's `queue.stats` goes out as soon as the queue changes (the console shows a caller queuing within
# 1 s of it, issue 19), then at most once per gap: a burst of changes is one event per queue.
STATS_MIN_GAP_S = 0.25
MAX_BATCH = 256


class TenantRunner:
    def __init__(
        self,
        tenant_id: uuid.UUID,
        bus: Bus,
        journal: Journal,
        pool: asyncpg.Pool,
        *,
        max_pending: int = 10_000,
        snapshot_every: int = 2_000,
        snapshot_interval_s: float = 30.0,
    ) -> None:
        self.tenant_id = tenant_id
        self.bus = bus
        self.journal = journal
        self.pool = pool
        self.max_pending = max_pending
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        self.engine: core.Engine | None = None
        self.loaded = LoadedConfig(config=core.TenantConfig())
        self.journal_seq = 0
        self.unsnapshotted = 0
        self.log = get_logger().bind(tenant_id=str(tenant_id))
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tick_queued = False
        self._dirty_queues: set[str] = set()
        self._stats_due = asyncio.Event()
        self._logged_out: set[str] = set()  # agents the engine logged out whose seat is not released yet
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    # -- life -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run()))
        self._tasks.append(asyncio.create_task(self._periodic()))
        self._tasks.append(asyncio.create_task(self._stats()))

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a stop must always complete
            await asyncio.wait(list(self._tasks), timeout=5.0)

    def submit(self, command: Command) -> asyncio.Future[Reply] | None:
        """Queue a bus command (decoded and tenant-checked by Bus.serve); its reply comes in the future.
        None when this tenant already has `max_pending` waiting."""
        if self._pending >= self.max_pending:
            return None
        self._pending += 1
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(("msg", (command, reply)))
        return reply

    def reload_config(self) -> None:
        self._inbox.put_nowait(("config", None))

    # -- the tenant's task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._recover_until_done()
        self.ready.set()
        carry: tuple[str, Any] | None = None
        while True:
            kind, payload = carry if carry is not None else await self._inbox.get()
            carry = None
            try:
                if kind == "msg":
                    # Commands waiting together are journaled together (one round of acks), then applied
                    # in order, then their outputs published and their replies sent.
                    batch = [payload]
                    while len(batch) < MAX_BATCH and not self._inbox.empty():
                        item = self._inbox.get_nowait()
                        if item[0] != "msg":
                            carry = item
                            break
                        batch.append(item[1])
                    self._pending -= len(batch)
                    payload = batch
                    await self._on_commands(batch)
                elif kind == "tick":
                    self._tick_queued = False
                    await self._on_tick()
                elif kind == "config":
                    await self._reload()
                elif kind == "snapshot":
                    await self._snapshot()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A half-applied call must not be built upon: rebuild from snapshot + journal.
                self.log.exception("routing_input_failed", error=str(exc))
                if kind == "msg":
                    failed = Reply(ok=False, code=ReplyCode.INTERNAL, error="routing failed; retry")
                    for _, reply in payload:
                        _answer(reply, failed)
                await self._recover_until_done()
            self._arm()

    async def _periodic(self) -> None:
        last_snapshot = time.monotonic()
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            if self.engine is None:
                continue
            if self.unsnapshotted and time.monotonic() - last_snapshot >= self.snapshot_interval_s:
                last_snapshot = time.monotonic()
                self._inbox.put_nowait(("snapshot", None))

    async def _stats(self) -> None:
        while True:
            await self._stats_due.wait()
            self._stats_due.clear()
            if self.engine is not None and self._dirty_queues:
                dirty, self._dirty_queues = self._dirty_queues, set()
                await self._publish_stats(sorted(dirty))
            await asyncio.sleep(STATS_MIN_GAP_S)

    async def _recover_until_done(self) -> None:
        # Commands wait in the inbox meanwhile; nothing is answered from a half-recovered engine.
        delay = 0.2
        while True:
            try:
                await self._recover()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.engine = None
                self.log.exception("routing_recovery_failed", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _recover(self) -> None:
        started = time.monotonic()
        snap = await self.journal.load_snapshot(self.tenant_id)
        if snap is not None:
            self.journal_seq, data = snap
            engine = core.Engine.restore(data)
        else:
            self.journal_seq, engine = 0, core.Engine()
        replayed = 0
        async for seq, entry in self.journal.replay(self.tenant_id, self.journal_seq):
            if entry.cmd is not None:
                outputs = engine.handle(entry.cmd, entry.now).outputs
            else:
                outputs = engine.handle_timer(entry.now)
            # Republished with the same ids: JetStream drops what was already stored.
            await self._publish(outputs)
            self.journal_seq = seq
            replayed += 1
        self.engine = engine
        self.unsnapshotted = replayed
        self._logged_out.clear()
        await self._reconcile_sessions()
        await self._reload()
        self._arm()
        self.log.info(
            "routing_tenant_recovered",
            replayed=replayed,
            from_snapshot=snap is not None,
            ms=round((time.monotonic() - started) * 1000, 1),
        )

    async def _reconcile_sessions(self) -> None:
        """After recovery the engine is the truth: a session row whose agent the engine does not have
        logged in (a crash between the database and the journal) gives its seat back."""
        assert self.engine is not None
        logged_in = set(self.engine.state.agents)
        async with tenant_tx(self.pool, self.tenant_id) as conn:
            rows = await conn.fetch("SELECT agent_id FROM agent_sessions")
        for row in rows:
            if str(row["agent_id"]) not in logged_in:
                await seats.end_session(self.pool, self.tenant_id, row["agent_id"])

    # -- inputs -----------------------------------------------------------------------------------------

    async def _apply(self, cmd: core.commands.AnyCommand) -> core.Result:
        assert self.engine is not None
        now = time.time()
        self.journal_seq = await self.journal.append(self.tenant_id, Entry(now=now, cmd=cmd))
        result = self.engine.handle(cmd, now)
        await self._publish(result.outputs)
        await self._after_input()
        return result

    async def _on_tick(self) -> None:
        assert self.engine is not None
        now = time.time()
        due = self.engine.next_timer()
        if due is None or due > now:
            return
        self.journal_seq = await self.journal.append(self.tenant_id, Entry(now=now))
        await self._publish(self.engine.handle_timer(now))
        await self._after_input()

    async def _after_input(self) -> None:
        # Seats of agents the engine logged out by itself (lost site, forced logout) go back at once.
        while self._logged_out:
            agent = self._logged_out.pop()
            await seats.end_session(self.pool, self.tenant_id, uuid.UUID(agent))
        self.unsnapshotted += 1
        if self.unsnapshotted >= self.snapshot_every:
            await self._snapshot()

    async def _snapshot(self) -> None:
        if self.engine is None or not self.unsnapshotted:
            return
        await self.journal.save_snapshot(self.tenant_id, self.journal_seq, self.engine.snapshot())
        self.unsnapshotted = 0

    async def _reload(self) -> None:
        assert self.engine is not None
        loaded = await load_tenant_config(self.pool, self.tenant_id)
        self.loaded = loaded
        if self.engine.state.config != loaded.config:
            result = await self._apply(core.Configure(id=f"config-{new_id()}", config=loaded.config))
            if not result.ok:
                self.log.error("routing_config_refused", reason=result.reply.reason)
        # A drain is stored on the site (the API's drain/restore); a lost site is media's to restore.
        status = self.engine.state.site_status
        for site_id in sorted(status):
            drained = site_id in loaded.drained_sites
            if drained and status[site_id] is core.SiteStatus.UP:
                await self._apply(core.DrainSite(id=f"drain-{new_id()}", site_id=site_id))
            elif not drained and status[site_id] is core.SiteStatus.DRAINING:
                await self._apply(core.RestoreSite(id=f"restore-{new_id()}", site_id=site_id))

    def _arm(self) -> None:
        """Keep exactly one loop timer armed for the engine's next timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.engine is None:
            return
        due = self.engine.next_timer()
        if due is None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.time()), self._queue_tick)

    def _queue_tick(self) -> None:
        self._timer = None
        if not self._tick_queued:
            self._tick_queued = True
            self._inbox.put_nowait(("tick", None))

    # -- outputs ----------------------------------------------------------------------------------------

    async def _publish(self, outputs: list[core.Output]) -> None:
        pending = []
        for out in outputs:
            queue_id = getattr(out, "queue_id", None)
            if queue_id:
                self._dirty_queues.add(queue_id)
                self._stats_due.set()
            if isinstance(out, core.AgentStateChanged) and out.new == core.AgentState.LOGGED_OUT.value:
                self._logged_out.add(out.agent_id)
            event = event_for(self.tenant_id, out)
            if event is not None:
                pending.append(asyncio.ensure_future(self.bus.publish(event)))
            if isinstance(out, core.ContactAccepted):
                pending.append(asyncio.ensure_future(self.bus.publish(assigned_for(self.tenant_id, out))))
        if pending:
            # Sent in order on one connection, so JetStream stores them in order; awaited together.
            await asyncio.gather(*pending)

    async def _publish_stats(self, queue_ids: list[str]) -> None:
        assert self.engine is not None
        for qid in queue_ids:
            status = self.engine.queue_status(qid)
            if status is None:
                continue
            await self.bus.publish(
                ev.QueueStats(
                    tenant_id=self.tenant_id,
                    queue_id=qid,
                    waiting=status["waiting"],
                    on_virtual_hold=status["on_virtual_hold"],
                    longest_wait_s=status["longest_wait_s"],
                    agents=status["agents"],
                    ready=status["ready"],
                    expected_wait_s=status["expected_wait_s"],
                )
            )

    # -- commands ---------------------------------------------------------------------------------------

    async def _on_commands(self, batch: list[tuple[Command, asyncio.Future[Reply]]]) -> None:
        simple: list[tuple[asyncio.Future[Reply], Command, core.commands.AnyCommand]] = []
        for command, reply in batch:
            if not self.loaded.exists:
                _answer(reply, Reply(ok=False, code="unknown_tenant", error="this tenant does not exist"))
                continue
            if isinstance(command, (*QUERIES, ev.RoutingAgentLogin)):
                # These read the state the commands before them leave, or go to the database first.
                await self._flush(simple)
                simple = []
                _answer(reply, await self._on_single(command))
                continue
            cmd = self._to_core(command)
            if isinstance(cmd, Reply):
                _answer(reply, cmd)
                continue
            simple.append((reply, command, cmd))
        await self._flush(simple)

    async def _flush(
        self, items: list[tuple[asyncio.Future[Reply], Command, core.commands.AnyCommand]]
    ) -> None:
        if not items:
            return
        assert self.engine is not None
        now = time.time()
        seqs = await asyncio.gather(
            *(self.journal.append(self.tenant_id, Entry(now=now, cmd=cmd)) for _, _, cmd in items)
        )
        self.journal_seq = max(seqs)
        results = [self.engine.handle(cmd, now) for _, _, cmd in items]
        await self._publish([out for r in results for out in r.outputs])
        self.unsnapshotted += len(items) - 1
        await self._after_input()
        for (_, command, _), result in zip(items, results, strict=True):
            if isinstance(command, ev.RoutingAgentLogout) and (result.ok or result.code == "not_logged_in"):
                await seats.end_session(self.pool, self.tenant_id, command.agent_id)
        for (reply, _, _), result in zip(items, results, strict=True):
            _answer(reply, _bus_reply(result.reply))

    async def _on_single(self, command: Command) -> Reply:
        if isinstance(command, QUERIES):
            return self._query(command)
        if isinstance(command, ev.RoutingAgentLogin):
            return await self._login(command)
        cmd = self._to_core(command)
        if isinstance(cmd, Reply):
            return cmd
        return _bus_reply((await self._apply(cmd)).reply)

    async def _login(self, command: ev.RoutingAgentLogin) -> Reply:
        assert self.engine is not None
        agent = str(command.agent_id)
        seat = await seats.start_session(self.pool, self.tenant_id, command.agent_id)
        if not seat.ok:
            return Reply(ok=False, code=seat.code, error=seat.reason)
        result = await self._apply(
            core.AgentLogin(
                id=str(command.id),
                agent_id=agent,
                away_reason=command.away_reason,
                session_id=command.session_id,
            )
        )
        logged_in = self.engine.agent_state(agent) is not core.AgentState.LOGGED_OUT
        if not result.ok and not logged_in and seat.new_session:
            # The engine refused (unknown reason code, site lost...): give the seat back.
            await seats.end_session(self.pool, self.tenant_id, command.agent_id)
        return _bus_reply(result.reply)

    def _query(self, command: Command) -> Reply:
        assert self.engine is not None
        if isinstance(command, ev.RoutingPosition):
            where = self.engine.position(str(command.call_id))
            if where is None:
                return Reply(
                    ok=False, code="unknown_contact", error=f"contact {command.call_id} is not in routing"
                )
            return Reply(ok=True, data=where)
        if isinstance(command, ev.RoutingQueueStatus):
            status = self.engine.queue_status(str(command.queue_id))
            if status is None:
                return Reply(ok=False, code="unknown_queue", error=f"queue {command.queue_id} does not exist")
            return Reply(ok=True, data=status)
        assert isinstance(command, ev.RoutingAgentStatus)
        state = self.engine.agent_state(str(command.agent_id))
        return Reply(ok=True, data={"agent_id": str(command.agent_id), "state": state.value})

    def _queue_id(self, name: str, queue_id: uuid.UUID | None) -> str | Reply:
        if queue_id is not None:
            return str(queue_id)
        found = self.loaded.queue_ids_by_name.get(name)
        if found is None:
            return Reply(ok=False, code="unknown_queue", error=f"queue {name!r} does not exist")
        return found

    def _to_core(self, c: Command) -> core.commands.AnyCommand | Reply:
        """The core command for a bus command (its id becomes the core command's id)."""
        assert self.engine is not None
        cid = str(c.id)
        match c:
            case ev.RoutingEnqueue() | ev.RoutingTask():
                qid = self._queue_id(c.queue, c.queue_id)
                if isinstance(qid, Reply):
                    return qid
                attributes = dict(c.attributes)
                if isinstance(c, ev.RoutingTask):
                    attributes.update(kind=c.kind, file=c.file, seconds=str(c.seconds))
                    priority, skills, preferred, window, only = None, {}, None, None, False
                    channel: core.Channel | None = core.Channel.VOICEMAIL
                else:
                    priority, skills, preferred = c.priority, dict(c.skills), c.preferred_agent_id
                    window, only, channel = c.preferred_window_s, c.preferred_only, None
                requires = {
                    k.removeprefix("requires."): v for k, v in attributes.items() if k.startswith("requires.")
                }
                return core.Enqueue(
                    id=cid,
                    contact_id=str(c.call_id),
                    queue_id=qid,
                    priority=priority,
                    attributes=attributes,
                    requires=requires,
                    skills=skills,
                    preferred_agent_id=preferred,
                    preferred_window_s=window,
                    preferred_only=only,
                    channel=channel,
                )
            case ev.RoutingCallback():
                # Virtual hold or a new contact on hold: the core's decision (engine.py, _request_callback).
                qid = self._queue_id(c.queue, c.queue_id)
                if isinstance(qid, Reply):
                    return qid
                return core.RequestCallback(
                    id=cid,
                    contact_id=str(c.call_id),
                    queue_id=qid,
                    number=c.number,
                    attributes=dict(c.attributes),
                )
            case ev.RoutingCancel():
                return core.Cancel(id=cid, contact_id=str(c.call_id), reason=c.reason)
            case ev.RoutingEnd():
                return core.EndContact(id=cid, contact_id=str(c.call_id))
            case ev.RoutingTransfer():
                return core.TransferToQueue(
                    id=cid,
                    contact_id=str(c.call_id),
                    queue_id=str(c.queue_id),
                    preferred_agent_id=None if c.agent_id is None else str(c.agent_id),
                    preferred_window_s=c.window_s,
                )
            case ev.RoutingPrioritize():
                agent = None if c.agent_id is None else str(c.agent_id)
                return core.Prioritize(id=cid, contact_id=str(c.call_id), agent_id=agent)
            case ev.RoutingSetVirtualHold():
                return core.SetVirtualHold(id=cid, contact_id=str(c.call_id), on=c.on)
            case ev.RoutingAgentLinked():
                return core.AgentLinked(
                    id=cid, agent_id=str(c.agent_id), session_id=c.session_id, lease_s=c.lease_s
                )
            case ev.RoutingAgentUnlinked():
                return core.AgentUnlinked(id=cid, agent_id=str(c.agent_id), session_id=c.session_id)
            case ev.RoutingAgentsPresent():
                return core.AgentsPresent(id=cid, sessions=dict(c.sessions), lease_s=c.lease_s)
            case ev.RoutingAgentLogout():
                return core.AgentLogout(id=cid, agent_id=str(c.agent_id), force=c.force)
            case ev.RoutingSetState():
                return core.SetState(id=cid, agent_id=str(c.agent_id), state=c.state, reason=c.reason)
            case ev.RoutingAccept():
                return core.Accept(id=cid, agent_id=str(c.agent_id), offer_id=c.offer_id)
            case ev.RoutingReject():
                return core.Reject(
                    id=cid, agent_id=str(c.agent_id), offer_id=c.offer_id, away_reason=c.away_reason
                )
            case ev.RoutingWrapUpDone():
                contact = str(c.call_id) if c.call_id else None
                return core.WrapUpDone(id=cid, agent_id=str(c.agent_id), contact_id=contact)
            case ev.RoutingDrainSite():
                return core.DrainSite(id=cid, site_id=str(c.site_id))
            case ev.RoutingLoseSite():
                return core.LoseSite(id=cid, site_id=str(c.site_id))
            case ev.RoutingRestoreSite():
                return core.RestoreSite(id=cid, site_id=str(c.site_id))
        return Reply(
            ok=False, code=ReplyCode.UNKNOWN_COMMAND, error=f"{type(c).__name__} is not handled by routing"
        )


def _bus_reply(reply: core.Reply) -> Reply:
    return Reply(ok=reply.ok, code=reply.code, error=reply.reason, data=dict(reply.data))


def _answer(reply: asyncio.Future[Reply], answer: Reply) -> None:
    """Bus.serve sends it (and remembers it for a retry of the same command id)."""
    if not reply.done():
        reply.set_result(answer)
