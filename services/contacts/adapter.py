"""The contact coordinator's asyncio adapter: JetStream, NATS request/reply and PostgreSQL around the sans-IO
`Lifecycle` (lifecycle.py).

Events come from the durable JetStream consumer `contacts` on SB_EVENTS (Bus.consume), so a restarted
coordinator picks up what happened while it was down; each message is acknowledged only after its contact's
step is applied, its commands sent, its state saved in the KV bucket `sb_contacts` and its record written to
PostgreSQL. A redelivered event changes nothing (the machine remembers event ids). Steps of one contact run
one at a time (a lock per contact); different contacts run concurrently. Agents' desk commands (from the
API's websocket) arrive on sb.<tenant>.cmd.contacts.<name> (Bus.serve, queue group `contacts`).

Several coordinators share the tenants by partition when started with SB_WORKER_COUNT
(services/kernel/partitioned.py): each reads only its partitions' events (one work queue consumer per
partition), answers only its tenants' desk commands (every worker receives them; the others stay silent),
and when it takes a partition over (its worker died or handed it back) it first resumes that partition's
contacts from `sb_contacts`, then reads the events the lost worker left unacknowledged, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from services.kernel import events as ev
from services.kernel.announcements import voice_of
from services.kernel.bus import Bus, BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.log import get_logger
from services.kernel.messages import Command, Event, Reply
from services.kernel.partitioned import PartitionedEvents, Partitioning, token_partition
from services.kernel.serving import Consumer, Listener, Server
from services.recording.policy import should_record

from . import voicemail
from .callbacks import CallbackInfo, CallingSettings, DialInfo
from .calllog import call_line
from .context import SettingsCache, TenantSettings
from .lifecycle import Contact, DeskRefused, Lifecycle, OfferInfo, Waiting, late_wrap_up
from .monitor_notice import caller_text, notice_for
from .reconcile import CHECKPOINT_S, RECONCILE_AFTER_S, media_started_after
from .records import caller_history, load_contact, save_contact, write_contact

__all__ = ["BUCKET", "CONSUMER", "EVENTS", "ContactsAdapter"]

BUCKET = "sb_contacts"
MAX_EVENT_AGE_S = 24 * 3600.0  # older event times are not believed (see _when)
CONSUMER = "contacts"
STATE_TTL_S = 24 * 3600.0
FINAL_RETRY_MAX_S = 30.0  # a finished contact's refused final record is tried again at least this often
MEDIA_TIMEOUT_S = 5.0
# A monitor command is answered only by the worker holding the supervisor's leg: silence means none does.
MONITOR_TIMEOUT_S = 3.0
# Commands whose refusal is the desk command's answer (the desk is told why nothing changed).
REFUSALS = frozenset(
    {"transfer", "consult", "consult_complete", "consult_cancel", "accept_offer", "reject_offer"}
)
# Desk commands routing answers: its reply, ok or not, is the agent's (desk_commands.answer_offer).
FORWARDED = frozenset({"accept_offer", "reject_offer"})
ROUTING_TIMEOUT_S = 3.0

EVENTS: tuple[type[Event], ...] = (
    ev.CallArrived,
    ev.CallRefused,
    ev.CallAnswered,
    ev.CallEnded,
    ev.IvrNodeEntered,
    ev.IvrNodeExited,
    ev.IvrCompleted,
    ev.ContactQueued,
    ev.ContactPositionChanged,
    ev.CallPlayFinished,
    ev.CallDtmf,
    ev.ContactOffered,
    ev.ContactAccepted,
    ev.ContactRejected,
    ev.ContactAbandoned,
    ev.ContactOverflowed,
    ev.ContactRequeued,
    ev.ContactEnded,
    ev.ContactWrappedUp,
    ev.WebRtcSignal,
    ev.IvrCallbackRequested,
    ev.RoutingCallbackDue,
    ev.IvrSurveyAnswered,
)
# Frequent events that usually change nothing worth saving (every call's position, every prompt's end, every
# key pressed in a flow).
QUIET = (ev.ContactPositionChanged, ev.CallPlayFinished, ev.CallDtmf)
DESK_COMMANDS: tuple[type[ev.DeskCommand], ...] = (
    ev.DeskAccept,
    ev.DeskReject,
    ev.DeskHold,
    ev.DeskMute,
    ev.DeskRecordPause,
    ev.DeskDigits,
    ev.DeskTransfer,
    ev.DeskConsult,
    ev.DeskConsultComplete,
    ev.DeskConsultCancel,
    ev.DeskHangup,
    ev.DeskWrapUp,
)


@dataclass
class _Running:
    machine: Lifecycle
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    monitor_mode: str = "none"  # a supervisor's current mode on this call (whom to tell of a change)
    # The timeline entries this process wrote to the record's row (None: not known, the next write is whole).
    written: int | None = None
    # The record as that write left the row (its JSON): a step that changes nothing in it writes nothing.
    stored: bytes = b""
    # The caller's history, read when the call arrived (context.py): the offer awaits it, never reads it.
    history: asyncio.Future[tuple[int, list[dict[str, str]]]] | None = None
    # Steps (events, desk commands) waiting for the lock, and those done but not saved yet: a burst of one
    # contact's steps (arrived, answered, queued, offered) is saved once, by its last step, and each event
    # is acknowledged, each desk command answered, only after that save (ContactsAdapter._turn).
    waiting: int = 0
    unsaved: list[asyncio.Future[None]] = field(default_factory=list)


E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _dialled(info: DialInfo) -> dict[str, object]:
    return {
        "contact_id": str(info.contact_id),
        "to": info.to,
        "caller_id": info.caller_id,
        "queue_id": str(info.queue_id),
    }


def _key(tenant_id: uuid.UUID, contact_id: uuid.UUID) -> str:
    return f"{tenant_id}.{contact_id}"


class ContactsAdapter:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        *,
        consumer: str = CONSUMER,
        clock: Any = time.time,
        partitioning: Partitioning | None = None,
    ) -> None:
        self.bus = bus
        self.bucket = BUCKET  # the saved contacts (tests give each adapter its own)
        self.consumer = consumer
        self.partitioning = partitioning
        self.partitions: PartitionedEvents | None = None
        self.pool = pool
        self.clock = clock
        self.log = get_logger()
        self.contacts: dict[uuid.UUID, _Running] = {}
        # Other ids of a contact -> its id: agents' legs, and consultations (their routing contact, which is
        # also the id on the consulted agent's desk).
        self.legs: dict[uuid.UUID, uuid.UUID] = {}
        # Calls whose call.arrived is being handled (before the contact exists): their other events wait.
        self._arriving: dict[uuid.UUID, asyncio.Event] = {}
        self.kv: KeyValue | None = None
        self._consumer: Consumer | None = None
        self._server: Server[Command] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._checkpoints: asyncio.Task[None] | None = None
        self.settings = SettingsCache(pool)
        self._config: Listener | None = None

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        js = self.bus.js
        try:
            self.kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self.kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, ttl=STATE_TTL_S, history=1)
            )
        handlers: dict[type[Any], Any] = {**dict.fromkeys(DESK_COMMANDS, self.on_desk)}
        handlers[ev.SupervisorMonitor] = self.on_monitor
        handlers[ev.DeskDial] = self.on_dial
        self._config = await self.bus.listen([ev.ConfigChanged], self._on_config)
        if self.partitioning is not None:
            await self._start_partitioned(self.partitioning, handlers)
            return
        if await self.resume_all():
            self._spawn(self._reconcile(set(self.contacts)))
        self._checkpoints = asyncio.create_task(self._checkpoint_loop())
        # A crashed coordinator's in-flight events come back after the consumer's ack wait. No lanes by
        # call: a contact owns several calls (the caller's, the agents' legs) and its FIFO lock keeps its
        # events in arrival order (the caller's hang-up before the agent leg's end it causes).
        self._consumer = await self.bus.consume(
            EVENTS, durable=self.consumer, handler=self.on_event, key=None
        )
        # Concurrent: a desk command waits for routing, media and its save; one at a time, they queued
        # behind each other past 18 calls/s until every one timed out (docs/media.md, "The full path").
        self._server = await self.bus.serve("contacts", handlers, concurrent=True)

    async def _start_partitioned(self, part: Partitioning, handlers: dict[type[Any], Any]) -> None:
        self.partitions = PartitionedEvents(
            self.bus,
            part,
            EVENTS,
            self.on_event,
            restore=self._restore,
            forget=self._forget_partition,
            key=None,
        )
        # Every worker receives every desk command; only the owner of the tenant's partition answers.
        self._server = await self.bus.serve(
            "contacts", handlers, queue=None, accept=self.partitions.owns, concurrent=True
        )
        await self.partitions.start()
        self._checkpoints = asyncio.create_task(self._checkpoint_loop())

    async def _restore(self, p: int) -> None:
        """A partition is ours: its contacts back from `sb_contacts` before its events (oldest
        unacknowledged first)."""
        resumed = await self._resume({p})
        if resumed:
            self.log.info("contacts_partition_resumed", partition=p, contacts=len(resumed))
            self._spawn(self._reconcile(resumed))

    def _forget_partition(self, p: int) -> None:
        """Not ours any more: forget its contacts (their new owner resumes them)."""
        assert self.partitioning is not None
        for contact_id, running in list(self.contacts.items()):
            if token_partition(str(running.machine.tenant_id), self.partitioning.count) == p:
                self._forget(contact_id, running)

    def _forget(self, contact_id: uuid.UUID, running: _Running) -> None:
        if running.timer is not None:
            running.timer.cancel()
        self.contacts.pop(contact_id, None)
        for leg, contact in list(self.legs.items()):
            if contact == contact_id:
                del self.legs[leg]

    async def _on_config(self, change: ev.ConfigChanged) -> None:
        self.settings.changed(change.tenant_id)

    async def stop(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
        if self._config is not None:
            await self._config.stop()
            self._config = None
        if self.partitions is not None:
            # Partitions' handlers finish (or are cancelled, unacknowledged) before the leases are handed over.
            await self.partitions.freeze()
        # Bounded (serving.py): events still being handled come back to the next coordinator.
        if self._consumer is not None:
            await self._consumer.stop()
        if self._server is not None:
            await self._server.stop()
        self._consumer, self._server = None, None
        if self.partitions is not None:
            await self.partitions.stop()
        for running in self.contacts.values():
            if running.timer is not None:
                running.timer.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)

    async def resume_all(self) -> int:
        """Every contact saved in `sb_contacts` is back in memory with its timer armed."""
        return len(await self._resume(None))

    async def _resume(self, partitions: set[int] | None) -> set[uuid.UUID]:
        """The saved contacts (of these partitions' tenants) back in memory with their timers armed."""
        resumed: set[uuid.UUID] = set()
        for key, value in await self.bus.kv_latest(self.bucket):
            if partitions is not None:
                assert self.partitioning is not None
                if token_partition(key.split(".", 1)[0], self.partitioning.count) not in partitions:
                    continue
            try:
                state = msgspec.json.decode(value, type=Contact)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.log.warning("contacts_resume_failed", key=key, error=str(exc)[:200])
                continue
            running = _Running(machine=Lifecycle(state))
            self.contacts[state.record.id] = running
            self._alias(running.machine)
            if running.machine.finished:  # kept because PostgreSQL refused its final record (_write_final)
                self._spawn(self._write_final(running))
                continue
            resumed.add(state.record.id)
            # A caller in line hears the music again (queue_wait.resume); the timer is armed either way.
            outputs = running.machine.resume(self.clock())
            if outputs:
                async with running.lock:
                    await self._apply(running, outputs)
            else:
                self._arm(running)
        return resumed

    # -- events -----------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _when(self, event: Event) -> float:
        """An event happened at its own time: one read late (a restart, a redelivery) never takes the
        reading time as, say, the end of a call. A `ts` that is not a plausible wall-clock time of the last
        day (some cores stamp their monotonic clock) is not used."""
        now = self.clock()
        return event.ts if now - MAX_EVENT_AGE_S <= event.ts <= now else now

    async def _reconcile(self, resumed: set[uuid.UUID]) -> None:
        """After a restart: contacts whose calls died with every media process end where last known alive."""
        await asyncio.sleep(RECONCILE_AFTER_S)
        try:
            oldest = await media_started_after(self.bus)
        except Exception as exc:
            self.log.warning("contacts_reconcile_failed", error=f"{type(exc).__name__}: {exc}")
            return
        if oldest is None:
            return
        for contact_id in resumed:
            running = self.contacts.get(contact_id)
            if running is None:
                continue
            async with running.lock:
                state = running.machine.state
                alive = state.alive_at or (state.record.timeline[-1].at if state.record.timeline else None)
                # A voicemail task has no call to have died with the media processes.
                if running.machine.finished or state.task is not None or alive is None or alive >= oldest:
                    continue
                self.log.warning("contact_lost_with_the_platform", contact=str(contact_id), alive_at=alive)
                await self._apply(running, running.machine.platform_lost(alive))

    async def _checkpoint_loop(self) -> None:
        """Every CHECKPOINT_S, each live contact's `alive_at` (KV only): how far its talk time is known."""
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            assert self.kv is not None
            for running in list(self.contacts.values()):
                machine = running.machine
                if machine.finished or machine.phase not in ("queued", "offered", "connected"):
                    continue
                async with running.lock:
                    machine.state.alive_at = self.clock()
                    key = _key(machine.tenant_id, machine.contact_id)
                    try:
                        await self.kv.put(key, msgspec.json.encode(machine.state))
                    except Exception as exc:
                        self.log.warning("contacts_checkpoint_failed", error=type(exc).__name__)

    async def on_event(self, event: Any) -> None:
        """One event from the consumer (decoded and tenant-checked there); a failure is redelivered. It
        returns (and the event is acknowledged) once the contact's state after its step is saved."""
        if isinstance(event, ev.CallArrived):
            saved = await self._arrived(event)
            if saved is not None:
                await saved
            return
        if isinstance(event, ev.CallRefused):
            await self._refused(event)
            return
        if (
            isinstance(event, ev.ContactQueued)
            and voicemail.is_task(event)
            and event.call_id not in self.contacts
        ):
            await self._voicemail(event)
            return
        contact_id = event.call_id
        arriving = self._arriving.get(contact_id)
        if arriving is not None:
            # Its call.arrived is still reading the queue's settings: this event comes after it (events
            # read back to back, after a restart or a takeover, would otherwise find no contact yet).
            await arriving.wait()
        if contact_id not in self.contacts:
            contact_id = self.legs.get(contact_id, contact_id)
        running = self.contacts.get(contact_id)
        if running is None or running.machine.tenant_id != event.tenant_id:
            return
        async with self._turn(running):
            now = self._when(event)
            if isinstance(event, ev.ContactOffered):
                event = await self._offer_info(running, event)
            elif isinstance(event, ev.IvrCallbackRequested):
                event = CallbackInfo(request=event, settings=await self.calling_settings(event.tenant_id))
            outputs = running.machine.handle(event, now)
            if not outputs and isinstance(event, QUIET):
                return  # a position or another prompt's end: not worth a write (the next step saves it)
            saved = _unsaved(running)
            await self._apply(running, outputs, defer=True)
        await saved

    @contextlib.asynccontextmanager
    async def _turn(self, running: _Running) -> AsyncIterator[None]:
        """An event's or a desk command's step of one contact (after the steps before it). A step with more
        of them waiting leaves its save to the last (`_apply(defer=True)`): about half of a call's KV puts
        and record transactions were steps of one burst a few ms apart. The deferred events are
        acknowledged, and desk commands answered, after that save, so an acknowledged event's or answered
        command's step is always saved, as before."""
        running.waiting += 1
        try:
            await running.lock.acquire()
        except asyncio.CancelledError:
            running.waiting -= 1
            if running.unsaved and not running.waiting:
                self._spawn(self._settle(running))  # the step that was to save the burst will not run
            raise
        running.waiting -= 1
        try:
            yield
        finally:
            try:
                if running.unsaved and not running.waiting:  # a step that ended early, or failed
                    await self._save(running)
            finally:
                running.lock.release()

    async def _settle(self, running: _Running) -> None:
        async with running.lock:
            if running.unsaved:
                await self._save(running)

    async def _arrived(self, event: ev.CallArrived) -> asyncio.Future[None] | None:
        if event.call_id in self.contacts or event.call_id in self._arriving:
            return None
        arriving = self._arriving[event.call_id] = asyncio.Event()
        saved = None
        try:
            waiting = None
            if event.queue_id is not None and event.flow_id is None:
                waiting = await self._waiting(event)
            machine = Lifecycle.arrive(event, self._when(event), waiting=waiting)
            if machine is None:
                return None
            running = _Running(machine=machine)
            if machine.state.record.caller:
                # Read while routing queues the call: the offer then has it without a read of its own.
                running.history = asyncio.ensure_future(self._history(machine))
            self.contacts[event.call_id] = running
            async with self._turn(running):
                # The call's later events, waiting for this arrival, now queue on the lock in their order.
                self._arriving.pop(event.call_id, None)
                arriving.set()
                saved = _unsaved(running)
                await self._apply(running, machine.take(), defer=True)
        finally:
            self._arriving.pop(event.call_id, None)
            arriving.set()
        return saved

    async def _waiting(self, event: ev.CallArrived) -> Waiting:
        """A queue number's announcement interval and closed message, the tenant's language, and the
        recording announcement when this call will be recorded (the queue's, else the tenant's)."""
        settings = await self.settings.get(event.tenant_id, queue_id=event.queue_id)
        if settings is None:
            return Waiting()
        queue = settings.queues.get(event.queue_id) if event.queue_id else None
        recorded = should_record(settings.record_percent(event.queue_id), event.call_id)
        return Waiting(
            announce_every=float(queue.announce_seconds) if queue and queue.announce_seconds else None,
            language=settings.language,
            closed_message=queue.closed_message if queue else None,
            recording_notice=(settings.announcement(event.queue_id) or None) if recorded else None,
            closed_flow=queue.closed_flow if queue else None,
        )

    async def _voicemail(self, event: ev.ContactQueued) -> None:
        running = _Running(machine=Lifecycle.voicemail_task(event, self._when(event)))
        self.contacts[event.call_id] = running
        async with running.lock:
            await self._apply(running, running.machine.take())

    async def _refused(self, event: ev.CallRefused) -> None:
        if event.call_id in self.contacts:
            return
        running = _Running(machine=Lifecycle.refused(event, self.clock()))
        self.contacts[event.call_id] = running
        async with running.lock:
            await self._apply(running, running.machine.take())

    async def _history(self, machine: Lifecycle) -> tuple[int, list[dict[str, str]]]:
        """The caller's contacts today and their last ones; none when they cannot be read."""
        r = machine.state.record
        start_of_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        try:
            async with tenant_tx(self.pool, machine.tenant_id, readonly=True) as conn:
                return await caller_history(conn, r.caller, since=start_of_day, exclude=r.id)
        except (asyncpg.PostgresError, OSError) as exc:
            self.log.warning("contacts_history_lookup_failed", error=f"{type(exc).__name__}: {exc}")
            return 0, []

    async def _offer_info(self, running: _Running, offer: ev.ContactOffered) -> OfferInfo:
        """The offer's context: the queue's name and survey flow, the agent's endpoint and the recording
        policy from the tenant's settings in memory (context.py), and the caller's history read when the
        call arrived (read now only for a contact that did not arrive here: a callback, a takeover)."""
        machine = running.machine
        if running.history is None and machine.state.record.caller:
            running.history = asyncio.ensure_future(self._history(machine))
        today, last = await running.history if running.history is not None else (0, [])
        settings: TenantSettings | None = None
        try:
            queue_id = uuid.UUID(str(offer.queue_id)) if offer.queue_id else None
            agent_id = uuid.UUID(str(offer.agent_id))
            settings = await self.settings.get(machine.tenant_id, queue_id=queue_id, agent_id=agent_id)
        except (asyncpg.PostgresError, OSError, ValueError) as exc:
            self.log.warning("contacts_offer_lookup_failed", error=f"{type(exc).__name__}: {exc}")
        queue = settings.queues.get(queue_id) if settings and queue_id else None
        return OfferInfo(
            offer=offer,
            queue_name=queue.name if queue else "",
            endpoint=settings.endpoints.get(agent_id) if settings else None,
            history_today=today,
            history_last=last,
            record_percent=settings.record_percent(queue_id) if settings else 0,
            survey_flow=queue.survey_flow if queue else None,
        )

    async def calling_settings(self, tenant_id: uuid.UUID) -> CallingSettings:
        """The tenant's settings for the calls the platform places (migration 0025); defaults if unreadable."""
        try:
            async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
                row = await conn.fetchrow(
                    """SELECT callback_mode, callback_attempts, callback_retry_seconds, callback_ring_seconds,
                              caller_id FROM tenants WHERE id = current_tenant()"""
                )
        except asyncpg.PostgresError as exc:
            self.log.warning("contacts_settings_lookup_failed", error=f"{type(exc).__name__}: {exc}")
            return CallingSettings()
        if row is None:
            return CallingSettings()
        return CallingSettings(
            callback_mode=row["callback_mode"],
            callback_attempts=row["callback_attempts"],
            callback_retry_seconds=float(row["callback_retry_seconds"]),
            callback_ring_seconds=float(row["callback_ring_seconds"]),
            caller_id=row["caller_id"],
        )

    # -- outbound calls ---------------------------------------------------------------------------

    async def on_dial(self, cmd: ev.DeskDial) -> Reply:
        """An agent's outbound call: checked here (permission, do-not-call, caller ID, queue, trunk, the
        agent's state), then a contact of its own (Lifecycle.dial)."""
        try:
            info = await self._dial_info(cmd)
        except DeskRefused as exc:
            self.log.info("contact_dial_refused", agent=str(cmd.agent_id), code=exc.code, error=exc.reason)
            return Reply(ok=False, code=exc.code, error=exc.reason)
        if info.contact_id in self.contacts:  # the same command again
            return Reply(ok=True, data=_dialled(info))
        running = _Running(machine=Lifecycle.dial(info, self.clock()))
        self.contacts[info.contact_id] = running
        async with running.lock:
            await self._apply(running, running.machine.take())
        if running.machine.finished:
            record = running.machine.state.record
            return Reply(ok=False, code="failed", error=f"the call could not be placed ({record.cause})")
        self.log.info(
            "contact_dialled", contact=str(info.contact_id), agent=str(cmd.agent_id), source=cmd.source
        )
        return Reply(ok=True, data=_dialled(info))

    async def _dial_info(self, cmd: ev.DeskDial) -> DialInfo:
        to = cmd.to.strip()
        if not E164.fullmatch(to):
            raise DeskRefused(
                "invalid", f"cannot dial {to[:40]!r}: give an E.164 number, + then 7 to 15 digits"
            )
        async with tenant_tx(self.pool, cmd.tenant_id, readonly=True) as conn:
            agent = await conn.fetchrow("SELECT can_dial FROM agents WHERE id = $1", cmd.agent_id)
            if agent is None:
                raise DeskRefused("not_found", "no such agent")
            if not agent["can_dial"]:
                raise DeskRefused(
                    "forbidden", "this agent may not place outbound calls (an admin can allow it)"
                )
            if await conn.fetchval("SELECT 1 FROM do_not_call WHERE e164 = $1", to):
                raise DeskRefused("do_not_call", f"{to} is on the tenant's do-not-call list")
            caller_id = cmd.caller_id or await conn.fetchval(
                "SELECT caller_id FROM tenants WHERE id = current_tenant()"
            )
            if caller_id is None:
                caller_id = await conn.fetchval("SELECT e164 FROM numbers ORDER BY created_at, id LIMIT 1")
                if caller_id is None:
                    raise DeskRefused("invalid", "the tenant has no number to call from: claim one first")
            elif not await conn.fetchval("SELECT 1 FROM numbers WHERE e164 = $1", caller_id):
                raise DeskRefused("invalid", f"caller ID {caller_id} is not one of the tenant's numbers")
            queue = await self._dial_queue(conn, cmd.queue)
            if not await conn.fetchval("SELECT 1 FROM sip_trunks WHERE outbound_host IS NOT NULL"):
                raise DeskRefused("no_trunk", "the tenant has no trunk that takes outbound calls")
            ring = await conn.fetchval(
                "SELECT callback_ring_seconds FROM tenants WHERE id = current_tenant()"
            )
        status = await self._send_for_data(
            ev.RoutingAgentStatus(tenant_id=cmd.tenant_id, agent_id=cmd.agent_id)
        )
        if status.get("state") != "available":
            state = status.get("state", "unknown")
            raise DeskRefused(
                "not_available", f"the agent must be signed in and available to dial (it is {state})"
            )
        return DialInfo(
            contact_id=uuid.uuid5(cmd.id, "outbound"),
            tenant_id=cmd.tenant_id,
            command_id=cmd.id,
            agent_id=cmd.agent_id,
            to=to,
            caller_id=caller_id,
            queue_id=queue["id"],
            queue_name=queue["name"],
            ring_s=float(ring or 30),
        )

    @staticmethod
    async def _dial_queue(conn: asyncpg.Connection, ref: str | None) -> asyncpg.Record:
        """The queue the call is reported under: the one named, or the tenant's first."""
        if ref is None:
            row = await conn.fetchrow("SELECT id, name FROM queues ORDER BY created_at, id LIMIT 1")
        else:
            try:
                row = await conn.fetchrow("SELECT id, name FROM queues WHERE id = $1", uuid.UUID(ref))
            except ValueError:
                row = await conn.fetchrow("SELECT id, name FROM queues WHERE lower(name) = lower($1)", ref)
        if row is None:
            raise DeskRefused(
                "invalid", f"no queue {ref!r}" if ref else "the tenant has no queue to report the call under"
            )
        return row

    async def _send_for_data(self, command: Command) -> dict[str, Any]:
        try:
            reply = await self.bus.request(command, timeout=ROUTING_TIMEOUT_S)
        except (CommandTimeout, BusError):
            raise DeskRefused("routing_unavailable", "routing did not answer; try again") from None
        return reply.data if reply.ok else {}

    # -- desk commands ----------------------------------------------------------------------------

    async def on_desk(self, cmd: ev.DeskCommand) -> Reply:
        """An agent's desk command (decoded, tenant-checked and de-duplicated by Bus.serve)."""
        known_as = self.legs.get(cmd.contact_id, cmd.contact_id)
        running = self.contacts.get(known_as)
        if running is None or running.machine.tenant_id != cmd.tenant_id:
            if isinstance(cmd, ev.DeskWrapUp):
                return await self._late_wrap_up(cmd)
            # Which lookup failed, and in which process: a live contact's consult was refused this way
            # once in a full run, with nothing in the kept logs to say why.
            self.log.info(
                "desk_contact_unknown",
                contact=str(cmd.contact_id),
                known_as=str(known_as),
                command=cmd.name,
                agent=str(cmd.agent_id),
                other_tenant=running is not None,
                live=len(self.contacts),
                consumer=self.consumer,
            )
            return Reply(ok=False, code="not_found", error="no such contact for this agent")
        # Like an event's step (_turn): with the events it causes already waiting (routing's
        # contact.accepted after an accept, the legs' call.ended after a hang-up), the last of them saves
        # for both, and the desk is answered after that save.
        async with self._turn(running):
            queue_id = None
            if isinstance(cmd, ev.DeskTransfer) and cmd.flow is not None:
                async with tenant_tx(self.pool, cmd.tenant_id, readonly=True) as conn:
                    if not await conn.fetchval("SELECT 1 FROM flows WHERE name = $1", cmd.flow):
                        return Reply(ok=False, code="not_found", error=f"no flow named {cmd.flow!r}")
            elif isinstance(cmd, ev.DeskTransfer | ev.DeskConsult):
                try:
                    queue_id = await self._transfer_target(running.machine, cmd)
                except DeskRefused as exc:
                    return Reply(ok=False, code=exc.code, error=exc.reason)
            try:
                data = running.machine.desk(cmd, self.clock(), queue_id=queue_id)
            except DeskRefused as exc:
                return Reply(ok=False, code=exc.code, error=exc.reason)
            saved = _unsaved(running)
            answer = await self._apply(running, running.machine.take(), defer=True)
        await saved
        return answer or Reply(ok=True, data=data)

    async def on_monitor(self, cmd: ev.SupervisorMonitor) -> Reply:
        """A supervisor joins (or leaves) a contact's call: media gets the agent's leg as the target."""
        running = self.contacts.get(cmd.contact_id)
        if running is None or running.machine.tenant_id != cmd.tenant_id:
            return Reply(ok=False, code="not_found", error="no live contact with that id")
        async with running.lock:
            try:
                target = running.machine.monitor_target()
            except DeskRefused as exc:
                return Reply(ok=False, code=exc.code, error=exc.reason)
            queue_id = running.machine.state.record.queue_id
        media = ev.MediaMonitor(
            tenant_id=cmd.tenant_id, call_id=cmd.leg_id, target_call_id=target, mode=cmd.mode
        )
        try:
            reply = await self.bus.request(media, timeout=MONITOR_TIMEOUT_S)
        except (CommandTimeout, BusError):
            # Only the worker holding the supervisor's leg answers: silence means no worker has it.
            return Reply(ok=False, code="not_found", error="no media worker holds that leg next to the call")
        if not reply.ok:
            return reply
        data = {**reply.data, "agent_leg_id": str(target), "queue_id": str(queue_id) if queue_id else None}
        self.log.info("contact_monitored", contact=str(cmd.contact_id), mode=cmd.mode, leg=str(cmd.leg_id))
        previous, running.monitor_mode = running.monitor_mode, cmd.mode
        await self._tell_of_monitor(running, previous, cmd.mode)
        return Reply(ok=True, data=data)

    async def _tell_of_monitor(self, running: _Running, previous: str, mode: str) -> None:
        """The tenant's `monitor_notice` policy: the agent's desk gets a `monitor_notice` message, the
        caller a short announcement; by default nobody is told (docs/supervisor.md)."""
        machine = running.machine
        try:
            async with tenant_tx(self.pool, machine.tenant_id, readonly=True) as conn:
                row = await conn.fetchrow("SELECT monitor_notice, language FROM tenants")
        except asyncpg.PostgresError as exc:
            self.log.warning("monitor_notice_unread", contact=str(machine.contact_id), error=str(exc)[:200])
            return
        if row is None:
            return
        notice = notice_for(row["monitor_notice"], previous, mode)
        now = self.clock()
        agent_id = machine.state.record.agent_id
        if notice.agent and agent_id is not None:
            async with running.lock:
                machine.monitor_notice(str(agent_id), previous, mode, now)
                await self._apply(running, machine.take())
        if notice.caller:
            play = ev.MediaPlay(
                tenant_id=machine.tenant_id,
                call_id=machine.caller_call,
                text=caller_text(row["language"]),
                voice=voice_of(row["language"]),
                ts=now,
            )
            try:
                reply = await self.bus.request(play, timeout=MONITOR_TIMEOUT_S)
            except (CommandTimeout, BusError) as exc:
                reply = Reply(ok=False, error=type(exc).__name__)
            if not reply.ok:
                self.log.warning(
                    "monitor_notice_unplayed", contact=str(machine.contact_id), error=reply.error
                )

    async def _late_wrap_up(self, cmd: ev.DeskWrapUp) -> Reply:
        """Wrap-up ended (the contact is finished and gone from memory): the record takes the disposition."""
        async with tenant_tx(self.pool, cmd.tenant_id) as conn:
            # The desk may know the contact by its consultation's id (an attended transfer's second agent).
            found = await conn.fetchval(
                "SELECT id FROM contacts WHERE id = $1 OR transfers @> $2::jsonb LIMIT 1 FOR UPDATE",
                cmd.contact_id,
                msgspec.json.encode([{"consult_id": str(cmd.contact_id)}]).decode(),
            )
            record = await load_contact(conn, found) if found else None
            if record is None:
                return Reply(ok=False, code="not_found", error="no such contact for this agent")
            try:
                data = late_wrap_up(record, cmd, self.clock())
            except DeskRefused as exc:
                return Reply(ok=False, code=exc.code, error=exc.reason)
            await save_contact(conn, record)
        self.log.info("contact_late_disposition", contact=str(cmd.contact_id), disposition=cmd.disposition)
        return Reply(ok=True, data=data)

    async def _transfer_target(
        self, machine: Lifecycle, cmd: ev.DeskTransfer | ev.DeskConsult
    ) -> uuid.UUID | None:
        if cmd.queue is None and cmd.to_agent_id is None:
            raise DeskRefused("bad_message", "transfer needs a queue or an agent")
        if cmd.queue is None:
            return None  # the contact's own queue, offered to the agent first
        found: uuid.UUID | None  # asyncpg's fetchval is typed Any
        async with tenant_tx(self.pool, machine.tenant_id, readonly=True) as conn:
            try:
                found = await conn.fetchval("SELECT id FROM queues WHERE id = $1", uuid.UUID(cmd.queue))
            except ValueError:
                found = await conn.fetchval("SELECT id FROM queues WHERE lower(name) = lower($1)", cmd.queue)
        if found is None:
            raise DeskRefused("not_found", f"no queue {cmd.queue!r}")
        return found

    # -- effects ----------------------------------------------------------------------------------

    async def _apply(
        self, running: _Running, outputs: list[Command | Event], *, defer: bool = False
    ) -> Reply | None:
        """Send, publish, then save (with `defer`, an event's step leaves the save to the next step of its
        contact when one waits: `_turn`). Returns the desk's answer when another service gave it: the first
        refusal of a REFUSALS command, or routing's reply to a FORWARDED one."""
        machine = running.machine
        answer: Reply | None = None
        # Before sending: routing's first event about a new consultation may come back before the reply.
        self._alias(machine)
        queue = list(outputs)
        while queue:
            item = queue.pop(0)
            if isinstance(item, Event):
                if isinstance(item, ev.ContactStateChanged):
                    level, name, fields = call_line(item, machine.state.record)
                    getattr(self.log, level)(name, **fields)
                try:
                    await self.bus.publish(item)
                except Exception as exc:
                    self.log.warning("contacts_publish_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if isinstance(item, ev.MediaOriginate):
                # Its call's events may come before the reply: they must already find the contact.
                self.legs[item.call_id] = machine.contact_id
            reply = await self._send(item)
            purpose = machine.state.pending.get(str(item.id))
            if answer is None and purpose in REFUSALS and (purpose in FORWARDED or not reply.ok):
                answer = _desk_answer(item, purpose, reply)
            queue.extend(machine.replied(item.id, reply.ok, reply.code, self.clock()))
        self._alias(machine)
        if not (defer and running.waiting):
            await self._save(running)
        self._arm(running)
        return answer

    def _alias(self, machine: Lifecycle) -> None:
        s = machine.state
        dialing = s.callback.dialing if s.callback is not None else None
        consult = s.consult
        for other in (
            s.leg_id,
            s.routing_id,
            consult.id if consult is not None else None,
            consult.leg_id if consult is not None else None,
            s.customer_call,
            dialing,
        ):
            if other is not None:
                self.legs[other] = machine.contact_id

    async def _send(self, command: Command) -> Reply:
        timeout = MEDIA_TIMEOUT_S if command.service == "media" else ROUTING_TIMEOUT_S
        try:
            reply = await self.bus.request(command, timeout=timeout)
        except CommandTimeout:
            return Reply(ok=False, code="timeout", error=f"{command.service} did not answer")
        except BusError as exc:
            return Reply(ok=False, code="unavailable", error=str(exc))
        if not reply.ok:
            self.log.info(
                "contacts_command_refused",
                command=f"{command.service}.{command.name}",
                code=reply.code,
                error=reply.error,
            )
        return reply

    async def _save(self, running: _Running) -> None:
        """The contact's state in `sb_contacts` and its record in PostgreSQL; then the events whose steps
        waited for this save may be acknowledged (or, if it failed, delivered again)."""
        waiting, running.unsaved = running.unsaved, []
        try:
            await self._store(running)
        except BaseException as exc:
            for saved in waiting:
                if isinstance(exc, Exception):
                    saved.set_exception(exc)
                else:
                    saved.cancel()
            raise
        for saved in waiting:
            saved.set_result(None)

    async def _store(self, running: _Running) -> None:
        machine = running.machine
        assert self.kv is not None
        key = _key(machine.tenant_id, machine.contact_id)
        written = await self._write_record(running)
        if machine.finished and written:
            self._forget(machine.contact_id, running)
            try:
                await self.kv.delete(key)
            except Exception:
                pass
            return
        machine.state.alive_at = self.clock()
        await self.kv.put(key, msgspec.json.encode(machine.state))
        if machine.finished:  # its final record is not in PostgreSQL: kept in the KV until it is
            self._spawn(self._write_final(running))

    async def _write_record(self, running: _Running) -> bool:
        """The contact's record in PostgreSQL, if it changed; False if PostgreSQL refused it (the next write
        then rewrites it whole)."""
        machine = running.machine
        # More than half of a call's steps change only the coordinator's own state (a command's reply, a
        # leg ringing), saved in the KV: the row already holds the record, so no transaction.
        record = msgspec.json.encode(machine.state.record)
        if running.written is not None and record == running.stored:
            return True
        try:
            async with tenant_tx(self.pool, machine.tenant_id) as conn:
                written = await write_contact(conn, machine.state.record, running.written)
        except asyncpg.PostgresError as exc:
            running.written = None
            self.log.error("contacts_record_failed", contact=str(machine.contact_id), error=str(exc)[:200])
            return False
        running.written, running.stored = written, record
        return True

    async def _write_final(self, running: _Running) -> None:
        """A finished contact whose last record PostgreSQL refused is written again, every second and then
        less often (at most every FINAL_RETRY_MAX_S), until it is: its event was acknowledged, so nothing
        else would ever write it. Meanwhile it stays in `sb_contacts`, so a restart resumes the attempt."""
        delay = 1.0
        while self.contacts.get(running.machine.contact_id) is running:
            await asyncio.sleep(delay)
            delay = min(delay * 2, FINAL_RETRY_MAX_S)
            async with running.lock:
                if self.contacts.get(running.machine.contact_id) is not running:
                    return
                if await self._write_record(running):
                    await self._save(running)  # written: forgotten, and its KV entry deleted
                    return

    def _arm(self, running: _Running) -> None:
        if running.timer is not None:
            running.timer.cancel()
            running.timer = None
        when = running.machine.next_timer()
        if when is None or running.machine.finished:
            return
        delay = max(0.0, when - self.clock())
        running.timer = asyncio.get_running_loop().call_later(delay, lambda: self._spawn(self._fire(running)))

    async def _fire(self, running: _Running) -> None:
        async with running.lock:
            await self._apply(running, running.machine.timer(self.clock()))


def _unsaved(running: _Running) -> asyncio.Future[None]:
    """A future done when the contact's state after this step is saved (by this step or a later one)."""
    saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    # Retrieved here too: a failed save also fails the step that made it, which then never awaits its own.
    saved.add_done_callback(lambda f: f.cancelled() or f.exception())
    running.unsaved.append(saved)
    return saved


def _desk_answer(command: Command, purpose: str, reply: Reply) -> Reply:
    """Another service's reply as the desk's: a refusal says why nothing changed; no answer in time or
    nobody serving is `<service>_timeout` / `<service>_unavailable`, the codes the agent protocol names."""
    if reply.ok:
        return Reply(ok=True, data=reply.data)
    code = reply.code or "refused"
    if code in ("timeout", "unavailable"):
        code = f"{command.service}_{code}"
    return Reply(ok=False, code=code, error=reply.error or f"{command.service} refused the {purpose}")
