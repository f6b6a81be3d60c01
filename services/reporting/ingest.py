"""The reporting ingest: a durable JetStream consumer on SB_EVENTS (Bus.consume_batches) feeding FactStore.

The consumer (`reporting`, from the start of the stream: a first start reports the stream's whole
retention) hands out batches in stream order; a batch is written per tenant (store.py, one transaction
each, tenants side by side) and then acknowledged with one ack. A batch that fails to write is retried before anything after
it: writes are idempotent by event id, so the part already written changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

from services.kernel.batches import BatchConsumer
from services.kernel.bus import Bus
from services.kernel.log import get_logger
from services.kernel.messages import Event

from .facts import EVENTS
from .store import FactStore

__all__ = ["CONSUMER", "Ingest"]

CONSUMER = "reporting"
# Up to this many events per batch (a pull returns what is there within 50 ms, so a live stream's batches
# stay small; only a backlog fills them). A batch's cost is mostly per tenant transaction and per contact
# row touched: in a live-like stream a contact's 7 events span two minutes, so a batch covering more of
# them reads and rewrites each row fewer times. Measured (tests/bench/bench_reporting.py, docs/reporting.md):
# 2,000 -> 10,000 halved CPU per event, in the service and in PostgreSQL; 10,000 -> 20,000 (a contact's row
# then read and written about twice instead of three times) cut the two together by another 10-20 %.
BATCH = 20_000
# A batch waits behind up to two others before its ack: under heavy load a 20,000-event batch takes seconds, so
# the consumer's ack wait is twice the default (an expired one is delivered again: idempotent, but paid twice).
ACK_WAIT_S = 60.0


class Ingest:
    def __init__(
        self,
        bus: Bus,
        store: FactStore,
        *,
        consumer: str = CONSUMER,
        on_written: Callable[[int], None] | None = None,
        on_tenants: Callable[[set[uuid.UUID]], None] | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.consumer = consumer
        self.on_written = on_written
        self.on_tenants = on_tenants  # after a batch is written: the tenants it touched (alert_watch.py)
        self.log = get_logger()
        self.ingested = 0  # events received and handled (new or already known)
        self.written = 0  # of which new
        self._consumer: BatchConsumer | None = None

    async def start(self) -> None:
        self._consumer = await self.bus.consume_batches(
            EVENTS,
            durable=self.consumer,
            handler=self.write,
            batch=BATCH,
            from_start=True,
            ack_wait=ACK_WAIT_S,
            unfiltered=True,  # reporting reads most of the stream: the server's filtering cost more (batches.py)
        )
        self.log.info("reporting_ingest_started", consumer=self.consumer)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def write(self, events: list[Event]) -> int:
        by_tenant: dict[uuid.UUID, list[Event]] = defaultdict(list)
        for event in events:
            by_tenant[event.tenant_id].append(event)
        started = time.perf_counter()
        # Tenants share no row: their transactions run side by side (the pool bounds how many), so one
        # tenant's round trips overlap another's work. Every one is awaited before the batch counts as
        # written or failed: a retry must never run beside a write of the same tenant still in flight.
        results = await asyncio.gather(
            *(self.store.write(tenant_id, tenant_events) for tenant_id, tenant_events in by_tenant.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        written = sum(r for r in results if isinstance(r, int))
        self.log.debug(
            "reporting_batch",
            events=len(events),
            new=written,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        self.ingested += len(events)
        self.written += written
        if self.on_written is not None:
            self.on_written(len(events))
        if self.on_tenants is not None:
            self.on_tenants(set(by_tenant))
        return written
