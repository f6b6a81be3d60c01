"""Webhook delivery (asyncio adapter around webhooks.py), in two passes.

The pass over every contact and recording event is a batch consumer (`webhooks`, Bus.consume_batches, new
events only): per batch and tenant one query of the tenant's endpoints; a tenant without an endpoint that
wants any of the batch's events costs nothing more (most events of most tenants). For the events some
endpoint wants, a delivery row per endpoint and event is written (one per pair, so an event handled twice
never makes a second row) and a `WebhookDue` is handed over on the bus before the batch is acknowledged.

The sender is a per-event consumer of those hand-overs (`webhooks_due`, Bus.consume, each at once: one
tenant's slow receiver never holds another's): it POSTs the event's pending rows, signed. A 2xx answer marks
the row delivered; any other answer, a timeout or a refused connection counts an attempt. While some row of
the event is pending, the handler raises Redeliver with a delay that doubles with each attempt: JetStream
hands the hand-over back then, so the retry schedule survives a restart without any table scan across
tenants. After MAX_ATTEMPTS a row is `failed`; the tenant sees it in the delivery log and can replay it
(API). Before the two passes, every event went through the per-event consumer: about 280 us of the service's
CPU per event on a live stream, for tenants without endpoints too (docs/reporting.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from nats.js.errors import NotFoundError

from services.kernel import events as ev
from services.kernel.batches import BatchConsumer
from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.serving import Consumer, Redeliver
from services.kernel.subjects import EVENTS_STREAM

from . import webhooks as wh

__all__ = ["CONSUMER", "LEGACY_CONSUMER", "Outcome", "WebhookWorker", "due_id", "record", "send", "signed"]

# The batch pass's durable; the sender's is this name with "_due". Releases before the two passes had a
# per-event durable `webhooks` (explicit acks); a batch consumer cannot take it over, so the name changed and
# the first start after the upgrade begins where that durable's acknowledgements ended (_resume_from).
CONSUMER = "webhook_events"
LEGACY_CONSUMER = "webhooks"
TIMEOUT_S = 5.0
SENDING = 32
BATCH = 2000
_DUE = uuid.UUID("6d2f0c1e-5b8a-4f4e-9a51-2f3c1d9b7e10")  # the namespace of hand-over ids
log = get_logger()


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the receiver's HTTP status; None when it never answered
    error: str | None  # None: delivered (2xx)


async def send(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One signed POST; no database connection is held while it waits."""
    try:
        response = await http.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Outcome(None, (f"{type(exc).__name__}: {exc}"[:300]) or type(exc).__name__)
    status = response.status_code
    return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")


async def record(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int, outcome: Outcome) -> str:
    """The attempt's outcome in the log; returns the delivery's new status."""
    new = "delivered" if outcome.error is None else ("failed" if attempts >= wh.MAX_ATTEMPTS else "pending")
    await conn.execute(
        """UPDATE webhook_deliveries SET attempts = $2, status = $3, last_status = $4, last_error = $5,
               updated_at = now(), delivered_at = CASE WHEN $3 = 'delivered' THEN now() END
           WHERE id = $1""",
        delivery_id,
        attempts,
        new,
        outcome.status,
        outcome.error,
    )
    return new


def signed(row: Any, secret: str, now: float) -> tuple[bytes, dict[str, str]]:
    body = str(row["body"]).encode()
    return body, wh.request_headers(secret, body, now, row["event_type"], row["id"])


class WebhookWorker:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        platform_secret: str,
        *,
        consumer: str = CONSUMER,
        legacy_consumer: str | None = LEGACY_CONSUMER,
        backoff_base_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.platform_secret = platform_secret
        self.consumer = consumer
        self.legacy_consumer = legacy_consumer
        self.backoff_base_s = backoff_base_s
        self.http = httpx.AsyncClient(follow_redirects=False)
        self._sending = asyncio.Semaphore(SENDING)  # events whose POSTs are in flight at once
        self._sender: Consumer | None = None
        self._batches: BatchConsumer | None = None

    async def start(self) -> None:
        # The sender first: the batch pass's first hand-over must find its consumer (new events only).
        self._sender = await self.bus.consume(
            [ev.WebhookDue],
            durable=f"{self.consumer}_due",
            handler=self._on_due,
            ack_wait=TIMEOUT_S * 4,
            key=None,
            max_deliver=wh.MAX_ATTEMPTS + 2,
        )
        start_at = await self._resume_from()
        self._batches = await self.bus.consume_batches(
            list(wh.EVENTS.values()),
            durable=self.consumer,
            handler=self.hand_over,
            batch=BATCH,
            start_at=start_at,
            unfiltered=True,  # cheaper than the server filtering, as for the ingest (kernel/batches.py)
        )
        if start_at is not None and self.legacy_consumer:
            # Ours holds the position now; the old durable would only keep events for nobody.
            with contextlib.suppress(NotFoundError):
                await self.bus.js.delete_consumer(EVENTS_STREAM, self.legacy_consumer)
            log.info("webhooks_took_over", legacy=self.legacy_consumer, start=str(start_at))

    async def _resume_from(self) -> int | datetime.datetime | None:
        """Where a new batch durable starts: just after what an older release's per-event durable had
        acknowledged, so the events published while the service was stopped for the upgrade are still sent
        (those it had received but not acknowledged come again: rows and hand-overs are idempotent). None
        (new events only) when our durable exists already or there is no older one."""
        if not self.legacy_consumer:
            return None
        try:
            await self.bus.js.consumer_info(EVENTS_STREAM, self.consumer)
            return None
        except NotFoundError:
            pass
        try:
            old = await self.bus.js.consumer_info(EVENTS_STREAM, self.legacy_consumer)
        except NotFoundError:
            return None
        if old.ack_floor is not None and old.ack_floor.stream_seq > 0:
            return int(old.ack_floor.stream_seq) + 1
        created: datetime.datetime = old.created
        return created  # it acknowledged nothing: everything since it was made (never the whole stream)

    async def stop(self) -> None:
        if self._batches is not None:
            await self._batches.stop()
        if self._sender is not None:
            await self._sender.stop(timeout=TIMEOUT_S)
        await self.http.aclose()

    async def hand_over(self, events: list[Event]) -> int:
        """The batch pass: the delivery rows of the events some endpoint wants, then a WebhookDue for each
        of those events; returns how many were handed over. A failure raises, and the batch comes back
        whole (rows and hand-overs are idempotent)."""
        by_tenant: dict[uuid.UUID, list[Event]] = defaultdict(list)
        for event in events:
            by_tenant[event.tenant_id].append(event)
        # Every tenant's write awaited before the batch counts as handled or failed (as the ingest's).
        results = await asyncio.gather(
            *(self._rows(tenant_id, tenant_events) for tenant_id, tenant_events in by_tenant.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        due = [
            ev.WebhookDue(
                tenant_id=event.tenant_id,
                id=due_id(event.id),
                event_id=event.id,
                event_type=f"{event.domain}.{event.name}",
            )
            for wanted in results
            if isinstance(wanted, list)
            for event in wanted
        ]
        for i in range(0, len(due), SENDING):
            await asyncio.gather(*(self.bus.publish(d) for d in due[i : i + SENDING]))
        return len(due)

    async def _rows(self, tenant_id: uuid.UUID, events: list[Event]) -> list[Event]:
        """One tenant's delivery rows for these events (one transaction); returns the events with rows."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            endpoints = await conn.fetch("SELECT id, events FROM webhook_endpoints")
            if not endpoints:
                return []
            rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, str]] = []
            wanted: list[Event] = []
            for event in events:
                event_type = f"{event.domain}.{event.name}"
                ids = [e["id"] for e in endpoints if wh.wants(e["events"], event_type)]
                if ids:
                    wanted.append(event)
                    body = wh.body_of(event).decode()
                    rows += [(new_id(), endpoint_id, event.id, event_type, body) for endpoint_id in ids]
            if rows:
                await conn.execute(
                    """INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, body, status)
                       SELECT i, current_tenant(), e, v, t, b, 'pending'
                       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) AS r(i, e, v, t, b)
                       ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
                    *(list(column) for column in zip(*rows, strict=True)),
                )
        return wanted

    async def _on_due(self, due: ev.WebhookDue) -> None:
        try:
            pending = await self.send_pending(due.tenant_id, due.event_id)
        except Exception as exc:  # the database away: the hand-over comes back like a failed delivery
            log.error(
                "webhooks_event_failed", event_type=due.event_type, error=f"{type(exc).__name__}: {exc}"[:300]
            )
            pending = 1
        if pending:
            raise Redeliver(wh.backoff_s(pending, self.backoff_base_s))

    async def send_pending(self, tenant_id: uuid.UUID, event_id: uuid.UUID) -> int:
        """POST an event's pending rows to their endpoints; returns the largest attempt count among rows
        still pending (0: nothing pending, acknowledge). A row whose endpoint was deleted is never sent."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            rows = await conn.fetch(
                """SELECT d.id, d.endpoint_id, d.event_type, d.body, d.attempts, e.url
                   FROM webhook_endpoints e JOIN webhook_deliveries d ON d.endpoint_id = e.id AND d.event_id = $1
                   WHERE d.status = 'pending'""",
                event_id,
            )
        if not rows:
            return 0
        # The POSTs run with no transaction open (a slow receiver must not hold a connection), together.
        async with self._sending:
            outcomes = await asyncio.gather(
                *(send(self.http, row["url"], *signed(row, self._secret(row), time.time())) for row in rows)
            )
        pending = 0
        async with tenant_tx(self.pool, tenant_id) as conn:
            for row, outcome in zip(rows, outcomes, strict=True):
                if await record(conn, row["id"], row["attempts"] + 1, outcome) == "pending":
                    pending = max(pending, row["attempts"] + 1)
        return pending

    def _secret(self, row: Any) -> str:
        return wh.endpoint_secret(self.platform_secret, row["endpoint_id"])


def due_id(event_id: uuid.UUID) -> uuid.UUID:
    """The hand-over's id for an event: the same each time its batch is handled (JetStream drops repeats)."""
    return uuid.uuid5(_DUE, str(event_id))
