"""One subscription per tenant, event type and API process for what the websockets are pushed, decoded once
and handed to the sockets it concerns (issue 21).

Each socket used to subscribe on its own to its tenant's `agent.state_changed`, `webrtc.signal` and the
rest: with 100 agents signed in, NATS delivered every agent's state change 100 times to the process, which
decoded it 100 times to send it to one socket (a fifth of the API's CPU in the first-call benchmark at 46
agents). Now a tenant's sockets in this process share one `Bus.listen` per event type (opened with the
first socket that needs it, closed with the last). An event that names its owner (OWNED_BY: an agent's
state, a leg's signal) goes to that owner's sockets only; any other (sessions ended, a widget caller's
queue position) to every socket of the tenant that takes it. Each socket has its own queue and task, so a
slow client delays only itself; past MAX_PENDING waiting pushes, new ones are dropped for it (the same
at-most-once delivery as before) and logged. Desk pushes are addressed to their agent on the bus itself
(Event.addressed) and do not come here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from services.kernel import events as ev
from services.kernel import metrics
from services.kernel.bus import Bus
from services.kernel.log import get_logger
from services.kernel.serving import Listener

__all__ = ["MAX_PENDING", "OWNED_BY", "Fanout", "Member"]

Handler = Callable[[Any], Awaitable[None]]
MAX_PENDING = 1000
# Module level: the kernel registry is per process and refuses a metric registered twice.
RECEIVED = metrics.counter("api_fanout_events_total", "Events the sockets' fan-out received", ("type",))
HANDED = metrics.counter("api_fanout_pushes_total", "Events the fan-out handed to a socket", ("type",))
# Event types whose field names the one socket owner they are for (agent id, or a leg's owner).
OWNED_BY: dict[type[Any], str] = {ev.AgentStateChanged: "agent_id", ev.WebRtcSignal: "agent_id"}


class Member:
    """One socket's place: its handlers by event type, fed in order from its own queue."""

    def __init__(self, tenant_id: uuid.UUID, owner: str, handlers: Mapping[type[Any], Handler]) -> None:
        self.tenant_id = tenant_id
        self.owner = owner
        self.handlers = dict(handlers)
        self.dropped = 0
        self.room: _Room | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue(MAX_PENDING)
        self._task = asyncio.create_task(self._run())

    def offer(self, event: Any) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            get_logger().warning("socket_push_dropped", owner=self.owner, event_type=type(event).__name__)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.handlers[type(event)](event)
            except Exception:
                get_logger().exception("socket_push_failed", event_type=type(event).__name__)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class _Room:
    """A tenant's sockets in this process, and one listener per event type they take."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.members: set[Member] = set()
        self.listeners: dict[type[Any], Listener] = {}
        self.takers: dict[type[Any], set[Member]] = {}  # by event type
        self.owned: dict[tuple[type[Any], str], set[Member]] = {}  # (type, owner) for OWNED_BY types

    async def deliver_async(self, event: Any) -> None:
        self.deliver(event)

    def deliver(self, event: Any) -> None:
        kind = type(event)
        field = OWNED_BY.get(kind)
        members = self.owned.get((kind, getattr(event, field)), ()) if field else self.takers.get(kind, ())
        RECEIVED.labels(kind.__name__).inc()
        for member in members:
            member.offer(event)
        if members:
            HANDED.labels(kind.__name__).inc(len(members))


class Fanout:
    def __init__(self) -> None:
        self._rooms: dict[uuid.UUID, _Room] = {}

    async def join(
        self, bus: Bus, tenant_id: uuid.UUID, owner: str, handlers: Mapping[type[Any], Handler]
    ) -> Member:
        """The socket of `owner` in `tenant_id` takes these event types; subscribed when this returns."""
        member = Member(tenant_id, owner, handlers)
        while True:
            room = self._rooms.setdefault(tenant_id, _Room())
            async with room.lock:
                if self._rooms.get(tenant_id) is not room:  # emptied and dropped while this waited
                    continue
                try:
                    await self._enter(bus, room, member)
                except BaseException:
                    await self._leave(room, member)
                    raise
                return member

    async def _enter(self, bus: Bus, room: _Room, member: Member) -> None:
        """Holding the room's lock: the member in, and a listener for each event type it is the first of."""
        member.room = room
        room.members.add(member)
        for kind in member.handlers:
            room.takers.setdefault(kind, set()).add(member)
            if kind in OWNED_BY:
                room.owned.setdefault((kind, member.owner), set()).add(member)
            if kind not in room.listeners:
                room.listeners[kind] = await bus.listen(
                    [kind], room.deliver_async, tenant_id=member.tenant_id
                )

    async def leave(self, member: Member) -> None:
        room = member.room
        if room is None:
            await member.stop()
            return
        async with room.lock:
            await self._leave(room, member)

    async def _leave(self, room: _Room, member: Member) -> None:
        """Holding the room's lock: the member out, and the listeners nobody takes any more stopped."""
        await member.stop()
        room.members.discard(member)
        for kind in member.handlers:
            takers = room.takers.get(kind, set())
            takers.discard(member)
            owned = room.owned.get((kind, member.owner))
            if owned is not None:
                owned.discard(member)
                if not owned:
                    del room.owned[(kind, member.owner)]
            if not takers:
                room.takers.pop(kind, None)
                listener = room.listeners.pop(kind, None)
                if listener is not None:
                    await listener.stop()  # bounded
        if not room.members and self._rooms.get(member.tenant_id) is room:
            del self._rooms[member.tenant_id]

    def rooms(self) -> int:
        return len(self._rooms)
