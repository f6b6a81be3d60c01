"""Agents' sockets as routing sees them (docs/agent-protocol.md, Reconnecting).

Each agent socket has a session id. This process tells routing when a socket opens (`agent_linked`: a lost
agent resumes, and the reply says what it has, which the client is told as `session`), when it closes
without a logout (`agent_unlinked`: the tenant's grace starts) and, every `BEAT_S`, which sockets it holds
(`agents_present`, one command per tenant): when this process dies with its sockets, the leases it stops
renewing run out in routing and those agents get their grace then. Routing owns the decisions (services/
routing/core/presence.py); this module only reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.log import get_logger

__all__ = ["BEAT_S", "Presence", "beating"]

BEAT_S = 5.0
REQUEST_TIMEOUT_S = 3.0


class Presence:
    """The agent sockets this process holds: (tenant, agent) -> session ids."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[uuid.UUID, uuid.UUID], set[str]] = defaultdict(set)

    def opened(self, tenant_id: uuid.UUID, agent_id: uuid.UUID, session_id: str) -> None:
        self.sessions[(tenant_id, agent_id)].add(session_id)

    def closed(self, tenant_id: uuid.UUID, agent_id: uuid.UUID, session_id: str) -> None:
        held = self.sessions.get((tenant_id, agent_id))
        if held is not None:
            held.discard(session_id)
            if not held:
                del self.sessions[(tenant_id, agent_id)]

    def by_tenant(self) -> dict[uuid.UUID, dict[str, list[str]]]:
        out: dict[uuid.UUID, dict[str, list[str]]] = defaultdict(dict)
        for (tenant, agent), held in self.sessions.items():
            out[tenant][str(agent)] = sorted(held)
        return out

    async def beat(self, bus: Bus) -> None:
        commands = [
            ev.RoutingAgentsPresent(tenant_id=tenant, sessions=sessions)
            for tenant, sessions in self.by_tenant().items()
        ]
        results = await asyncio.gather(
            *(bus.request(c, timeout=REQUEST_TIMEOUT_S) for c in commands), return_exceptions=True
        )
        for command, result in zip(commands, results, strict=True):
            if isinstance(result, BaseException):
                get_logger().warning(
                    "presence_beat_failed", tenant_id=str(command.tenant_id), error=type(result).__name__
                )


@contextlib.asynccontextmanager
async def beating(presence: Presence, bus: Bus) -> AsyncIterator[None]:
    """Renew this process's sockets' leases every BEAT_S while the API runs."""

    async def run() -> None:
        while True:
            await asyncio.sleep(BEAT_S)
            try:
                await presence.beat(bus)
            except Exception as exc:  # never let one failed beat stop the next
                get_logger().warning("presence_beat_failed", error=f"{type(exc).__name__}: {exc}")

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
