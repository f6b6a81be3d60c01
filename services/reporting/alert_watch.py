"""Queue alerts as events (asyncio adapter around alerts.AlertBook): after the ingest writes a batch of a
tenant's facts, the tenant's queues are evaluated against its alert policy (debounced); each threshold
crossed is published once as `queue.alert_raised` and once as `queue.alert_cleared` when it no longer is,
so webhooks (services/reporting/webhooks.py) and any consumer get them. A queue with callers waiting is
looked at again when its longest wait will cross its threshold, even if no event comes meanwhile.

`read_policies` and `annotate` (the thresholds in force and alerts crossed per realtime queue) are shared
with the API's realtime view (services/api/alert_policy.py, reports.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.log import get_logger
from services.kernel.messages import Event

from . import queries
from .alerts import AlertBook, Policy, evaluate, resolve

__all__ = ["POLICY_FIELDS", "AlertWatch", "annotate", "read_policies"]

POLICY_FIELDS = ("longest_wait_seconds", "service_level_below_percent", "waiting_over", "away_over_percent")
DEBOUNCE_S = 0.3  # a burst of facts is evaluated once


def _policy(row: Any) -> Policy:
    return Policy(**{f: row[f] for f in POLICY_FIELDS})


async def read_policies(conn: asyncpg.Connection) -> tuple[Policy, dict[str, Policy]]:
    """The tenant's default policy and each queue's own (queue id -> policy)."""
    rows = await conn.fetch(f"SELECT queue_id, {', '.join(POLICY_FIELDS)} FROM alert_policies")
    default = next((_policy(r) for r in rows if r["queue_id"] is None), Policy())
    return default, {str(r["queue_id"]): _policy(r) for r in rows if r["queue_id"] is not None}


async def annotate(conn: asyncpg.Connection, body: dict[str, Any]) -> dict[str, Any]:
    """Each realtime queue with `thresholds` (in force) and `alerts` (crossed now)."""
    default, own = await read_policies(conn)
    queues = []
    for q in body["queues"]:
        thresholds = resolve(q, own.get(q["queue_id"], default))
        alerts = [msgspec.to_builtins(a) for a in evaluate(q, thresholds)]
        queues.append(q | {"thresholds": thresholds, "alerts": alerts})
    return body | {"queues": queues}


class AlertWatch:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, *, debounce_s: float = DEBOUNCE_S) -> None:
        self.bus, self.pool, self.debounce_s = bus, pool, debounce_s
        self.books: dict[uuid.UUID, AlertBook] = {}
        self._due: dict[uuid.UUID, tuple[float, asyncio.TimerHandle]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.log = get_logger()

    def touched(self, tenants: set[uuid.UUID]) -> None:
        """The ingest wrote facts of these tenants: evaluate each soon."""
        for tenant in tenants:
            self._schedule(tenant, self.debounce_s)

    def _schedule(self, tenant: uuid.UUID, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        current = self._due.get(tenant)
        if current is not None:
            if current[0] <= when:
                return  # an evaluation comes sooner anyway
            current[1].cancel()
        self._due[tenant] = (when, loop.call_at(when, self._start, tenant))

    def _start(self, tenant: uuid.UUID) -> None:
        self._due.pop(tenant, None)
        task = asyncio.create_task(self._evaluate(tenant))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _evaluate(self, tenant: uuid.UUID) -> None:
        try:
            async with tenant_tx(self.pool, tenant, readonly=True) as conn:
                body = await annotate(conn, await queries.realtime_queues(conn, datetime.now(UTC)))
            changes, wake = self.books.setdefault(tenant, AlertBook()).update(body["queues"], time.time())
            for c in changes:
                if c.alert is not None:
                    a = c.alert
                    event: Event = ev.QueueAlertRaised(
                        tenant_id=tenant, queue_id=c.queue_id, queue_name=c.queue_name, kind=c.kind,
                        value=a.value, threshold=a.threshold, message=a.message,
                    )  # fmt: skip
                else:
                    event = ev.QueueAlertCleared(
                        tenant_id=tenant, queue_id=c.queue_id, queue_name=c.queue_name, kind=c.kind
                    )
                await self.bus.publish(event)
            if wake is not None:
                self._schedule(tenant, wake - time.time())
        except Exception as exc:  # one tenant's failure must not stop the others' alerts; logged
            self.log.warning(
                "alert_watch_failed", tenant=str(tenant), error=f"{type(exc).__name__}: {exc}"[:200]
            )

    async def stop(self) -> None:
        for _, handle in self._due.values():
            handle.cancel()
        self._due.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
