"""What the coordinator needs from a tenant's configuration, kept in memory: the offer's context and the wait
of a queue number without PostgreSQL reads on a call's critical path (issue 21).

A tenant's settings (its language and recording policy, every queue's, every agent's endpoint) are read in
one transaction the first time a contact of the tenant needs them, then kept. They are dropped when the API
says the tenant's configuration changed (`config.changed`, any kind: a rename, a new agent, a survey flow, the
recording policy) and read again by the next contact. That event comes on core NATS, at most once: a copy
older than MAX_AGE_S is still used, but read again in the background, so a missed change lasts at most that
long. A queue or an agent the copy does not know is read at once (created since, its event missed), at most
once per MISS_RELOAD_S. At most MAX_TENANTS copies are kept: the tenant used least recently goes first (a
coordinator serving many tenants over days kept every one it had ever seen).

The caller's history (their contacts today and their last three) is contact data, not configuration: the
adapter reads it when the call arrives, while routing queues it, and the offer awaits that read.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import asyncpg
import msgspec

from services.kernel.db import tenant_tx
from services.kernel.log import get_logger

__all__ = ["MAX_AGE_S", "MAX_TENANTS", "QueueSettings", "SettingsCache", "TenantSettings"]

MAX_AGE_S = 60.0
MISS_RELOAD_S = 1.0
MAX_TENANTS = 4096


class QueueSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    survey_flow: str | None = None  # the flow callers go to once the agent leaves
    closed_flow: str | None = None  # the flow of a closed queue ('flow' treatment only)
    closed_message: str | None = None
    announce_seconds: int | None = None
    recording_percent: int | None = None  # None: the tenant's
    recording_announcement: str | None = None  # None: the tenant's


class TenantSettings(msgspec.Struct, frozen=True, kw_only=True):
    language: str = "en"
    recording_percent: int = 0
    recording_announcement: str | None = None
    queues: dict[uuid.UUID, QueueSettings] = {}
    endpoints: dict[uuid.UUID, str | None] = {}  # agent -> its SIP endpoint (None: its browser)

    def record_percent(self, queue_id: uuid.UUID | None) -> int:
        queue = self.queues.get(queue_id) if queue_id else None
        if queue is not None and queue.recording_percent is not None:
            return queue.recording_percent
        return self.recording_percent or 0

    def announcement(self, queue_id: uuid.UUID | None) -> str | None:
        queue = self.queues.get(queue_id) if queue_id else None
        if queue is not None and queue.recording_announcement is not None:
            return queue.recording_announcement
        return self.recording_announcement


class _Copy(msgspec.Struct):
    settings: TenantSettings | None  # None: no such tenant
    read_at: float
    generation: int


class SettingsCache:
    """Per tenant, its settings (above). `clock` is monotonic; reads counts the transactions made."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = MAX_AGE_S,
        max_tenants: int = MAX_TENANTS,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.max_age = max_age
        self.max_tenants = max_tenants
        self.reads = 0
        self._copies: OrderedDict[uuid.UUID, _Copy] = OrderedDict()  # least recently used first
        self._generations: dict[uuid.UUID, int] = {}
        self._refreshing: dict[uuid.UUID, asyncio.Task[None]] = {}

    def changed(self, tenant_id: uuid.UUID) -> None:
        """The tenant's configuration changed: its copy goes, and a read in flight is not kept."""
        self._generations[tenant_id] = self._generations.get(tenant_id, 0) + 1
        self._copies.pop(tenant_id, None)

    async def get(
        self, tenant_id: uuid.UUID, *, queue_id: uuid.UUID | None = None, agent_id: uuid.UUID | None = None
    ) -> TenantSettings | None:
        copy = self._copies.get(tenant_id)
        now = self.clock()
        if copy is not None:
            self._copies.move_to_end(tenant_id)
            s = copy.settings
            known = s is None or (
                (queue_id is None or queue_id in s.queues) and (agent_id is None or agent_id in s.endpoints)
            )
            if known or now - copy.read_at < MISS_RELOAD_S:
                if now - copy.read_at >= self.max_age and tenant_id not in self._refreshing:
                    task = asyncio.create_task(self._refresh(tenant_id))
                    self._refreshing[tenant_id] = task
                return s
        return await self._read(tenant_id)

    async def _refresh(self, tenant_id: uuid.UUID) -> None:
        try:
            await self._read(tenant_id)
        except (asyncpg.PostgresError, OSError) as exc:  # the old copy stays; the next use tries again
            get_logger().warning("contacts_settings_refresh_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._refreshing.pop(tenant_id, None)

    async def _read(self, tenant_id: uuid.UUID) -> TenantSettings | None:
        generation = self._generations.get(tenant_id, 0)
        self.reads += 1
        async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
            tenant = await conn.fetchrow(
                """SELECT language, recording_percent, recording_announcement FROM tenants
                   WHERE id = current_tenant()"""
            )
            queues = await conn.fetch(
                """SELECT q.id, q.name, q.announce_seconds, q.closed_message, q.recording_percent,
                          q.recording_announcement, s.name AS survey_flow,
                          CASE WHEN q.closed_treatment = 'flow' THEN c.name END AS closed_flow
                   FROM queues q LEFT JOIN flows s ON s.id = q.survey_flow_id
                                 LEFT JOIN flows c ON c.id = q.closed_flow_id"""
            )
            agents = await conn.fetch("SELECT id, endpoint FROM agents")
        settings = None
        if tenant is not None:
            settings = TenantSettings(
                language=tenant["language"],
                recording_percent=tenant["recording_percent"] or 0,
                recording_announcement=tenant["recording_announcement"],
                queues={
                    q["id"]: QueueSettings(
                        name=q["name"],
                        survey_flow=q["survey_flow"],
                        closed_flow=q["closed_flow"],
                        closed_message=q["closed_message"],
                        announce_seconds=q["announce_seconds"],
                        recording_percent=q["recording_percent"],
                        recording_announcement=q["recording_announcement"],
                    )
                    for q in queues
                },
                endpoints={a["id"]: a["endpoint"] for a in agents},
            )
        if self._generations.get(tenant_id, 0) == generation:  # no change came while it was read
            self._copies[tenant_id] = _Copy(settings, self.clock(), generation)
            self._copies.move_to_end(tenant_id)
            while len(self._copies) > self.max_tenants:
                self._copies.popitem(last=False)
        return settings
