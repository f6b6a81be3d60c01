"""Webhook delivery (asyncio adapter around webhooks.py): the durable consumer `webhooks` on the contact and
recording events (Bus.consume, each event at once: deliveries of different events do not wait on each
other).

For each event: the tenant's endpoints that want it get a delivery row (one per endpoint and event, so a
redelivered event never makes a second row) and a signed POST. A 2xx answer marks the row delivered; any
other answer, a timeout or a refused connection counts an attempt. While some row of the event is pending,
the handler raises Redeliver with a delay that doubles with each attempt: JetStream hands the event back
then, so the retry schedule survives a restart without any table scan across tenants. After MAX_ATTEMPTS
a row is `failed`; the tenant sees it in the delivery log and can replay it (API).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from services.kernel.bus import Bus
from services.kernel.db import tenant_tx
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.serving import Consumer, Redeliver

from . import webhooks as wh

__all__ = ["CONSUMER", "Outcome", "WebhookWorker", "record", "send", "signed"]

CONSUMER = "webhooks"
TIMEOUT_S = 5.0
SENDING = 32
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
        backoff_base_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.platform_secret = platform_secret
        self.consumer = consumer
        self.backoff_base_s = backoff_base_s
        self.http = httpx.AsyncClient(follow_redirects=False)
        self._sending = asyncio.Semaphore(SENDING)  # events whose POSTs are in flight at once
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._consumer = await self.bus.consume(
            list(wh.EVENTS.values()),
            durable=self.consumer,
            handler=self._on_event,
            ack_wait=TIMEOUT_S * 4,
            key=None,
            max_deliver=wh.MAX_ATTEMPTS + 2,
        )

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop(timeout=TIMEOUT_S)
        await self.http.aclose()

    async def _on_event(self, event: Event) -> None:
        try:
            pending = await self.handle(event)
        except Exception as exc:  # the database away: the event comes back like a failed delivery
            log.error(
                "webhooks_event_failed",
                event_type=f"{event.domain}.{event.name}",
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            pending = 1
        if pending:
            raise Redeliver(wh.backoff_s(pending, self.backoff_base_s))

    async def handle(self, event: Event) -> int:
        """Deliver one event (decoded and tenant-checked by the consumer) to its tenant's endpoints; returns
        the largest attempt count among rows still pending (0: nothing pending, acknowledge)."""
        event_type = f"{event.domain}.{event.name}"
        body = wh.body_of(event).decode()
        async with tenant_tx(self.pool, event.tenant_id) as conn:
            endpoints = [
                e
                for e in await conn.fetch("SELECT id, url, events FROM webhook_endpoints")
                if wh.wants(e["events"], event_type)
            ]
            if not endpoints:
                # Most events of most tenants: nothing to deliver, and no row of theirs can be due (a
                # pending row whose endpoint is gone is never sent). One query, no second transaction.
                return 0
            for endpoint in endpoints:
                await conn.execute(
                    """INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, body, status)
                       VALUES ($1, $2, $3, $4, $5, $6, 'pending') ON CONFLICT (endpoint_id, event_id) DO NOTHING""",
                    new_id(),
                    event.tenant_id,
                    endpoint["id"],
                    event.id,
                    event_type,
                    body,
                )
            rows = await conn.fetch(
                "SELECT id, endpoint_id, event_type, body, attempts FROM webhook_deliveries "
                "WHERE event_id = $1 AND status = 'pending'",
                event.id,
            )
        urls: dict[uuid.UUID, str] = {e["id"]: e["url"] for e in endpoints}
        # The POSTs run with no transaction open (a slow receiver must not hold a connection), together.
        due = [row for row in rows if row["endpoint_id"] in urls]
        async with self._sending:
            outcomes = await asyncio.gather(
                *(
                    send(self.http, urls[row["endpoint_id"]], *signed(row, self._secret(row), time.time()))
                    for row in due
                )
            )
        pending = 0
        if not due:
            return 0
        async with tenant_tx(self.pool, event.tenant_id) as conn:
            for row, outcome in zip(due, outcomes, strict=True):
                if await record(conn, row["id"], row["attempts"] + 1, outcome) == "pending":
                    pending = max(pending, row["attempts"] + 1)
        return pending

    def _secret(self, row: Any) -> str:
        return wh.endpoint_secret(self.platform_secret, row["endpoint_id"])
