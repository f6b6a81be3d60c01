"""Agents' sockets as routing sees them (docs/agent-protocol.md, Reconnecting).

Each agent socket has a session id. This process tells routing when a socket opens (`agent_linked`: a lost
agent resumes, and the reply says what it has, which the client is told as `session`), when it closes
without a logout (`agent_unlinked`: the tenant's grace starts) and, every `BEAT_S`, which sockets it holds
(`agents_present`, one command per tenant): when this process dies with its sockets, the leases it stops
renewing run out in routing and those agents get their grace then. Routing owns the decisions (services/
routing/core/presence.py); this module only reports, and passes on routing's answer that an agent it
reports is not signed in (this process was starved or stopped past the lease and the grace, and the
`logged_out` event went by meanwhile): the agent's sockets are told, not left showing a signed-in agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.log import get_logger

__all__ = ["BEAT_S", "Presence", "beating", "lease_for"]

BEAT_S = 5.0
REQUEST_TIMEOUT_S = 3.0

# Tells one socket that routing signed its agent out.
SignedOut = Callable[[], Awaitable[None]]


def lease_for(beat_s: float) -> float:
    """A report holds for three beats: two may be late or lost without the agent looking gone."""
    return 3 * beat_s


async def _nothing() -> None:
    return None


class Presence:
    """The agent sockets this process holds: (tenant, agent) -> session id -> how to tell it it is out."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[uuid.UUID, uuid.UUID], dict[str, SignedOut]] = defaultdict(dict)

    def opened(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID, session_id: str, signed_out: SignedOut = _nothing
    ) -> None:
        self.sessions[(tenant_id, agent_id)][session_id] = signed_out

    def closed(self, tenant_id: uuid.UUID, agent_id: uuid.UUID, session_id: str) -> None:
        held = self.sessions.get((tenant_id, agent_id))
        if held is not None:
            held.pop(session_id, None)
            if not held:
                del self.sessions[(tenant_id, agent_id)]

    def by_tenant(self) -> dict[uuid.UUID, dict[str, list[str]]]:
        out: dict[uuid.UUID, dict[str, list[str]]] = defaultdict(dict)
        for (tenant, agent), held in self.sessions.items():
            out[tenant][str(agent)] = sorted(held)
        return out

    async def beat(self, bus: Bus, lease_s: float = lease_for(BEAT_S)) -> None:
        commands = [
            ev.RoutingAgentsPresent(tenant_id=tenant, sessions=sessions, lease_s=lease_s)
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
                continue
            gone = result.data.get("signed_out") if result.ok else None
            for agent in gone if isinstance(gone, list) else []:
                tell = list(self.sessions.get((command.tenant_id, uuid.UUID(agent)), {}).values())
                await asyncio.gather(*(signed_out() for signed_out in tell), return_exceptions=True)


@contextlib.asynccontextmanager
async def beating(presence: Presence, bus: Bus, beat_s: float = BEAT_S) -> AsyncIterator[None]:
    """Renew this process's sockets' leases every `beat_s` while the API runs."""

    async def run() -> None:
        while True:
            await asyncio.sleep(beat_s)
            try:
                await presence.beat(bus, lease_for(beat_s))
            except Exception as exc:  # never let one failed beat stop the next
                get_logger().warning("presence_beat_failed", error=f"{type(exc).__name__}: {exc}")

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
