"""The reporting ingest's asyncio adapter: a durable JetStream consumer on SB_EVENTS feeding FactStore.

The consumer (`reporting`, from the start of the stream: a first start reports the stream's whole
retention) hands out batches; a batch is written per tenant (store.py) and then acknowledged with one ack
(AckPolicy.ALL acknowledges everything up to that message). A batch that fails to write is not
acknowledged and comes back after `ack_wait`: writes are idempotent by event id, so the part already
written changes nothing the second time. An event that cannot be decoded is logged and skipped.

Plumbing only; Bus.consume (being added to services/kernel/bus.py) should replace `_run_pump` once on main.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import msgspec
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.kernel.bus import Bus
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.subjects import EVENTS_STREAM

from .facts import FILTERS, decode
from .store import FactStore

__all__ = ["CONSUMER", "Ingest"]

CONSUMER = "reporting"
BATCH = 2000
# How long a pull waits for a batch to fill: the delay of a fact behind its event on a quiet stream.
FETCH_WAIT_S = 0.2
ACK_WAIT_S = 30.0


class Ingest:
    def __init__(
        self,
        bus: Bus,
        store: FactStore,
        *,
        consumer: str = CONSUMER,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.consumer = consumer
        self.on_written = on_written
        self.log = get_logger()
        self.ingested = 0
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=self.consumer,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=BATCH * 4,
            filter_subjects=FILTERS,
        )
        try:
            await self.bus.js.add_consumer(EVENTS_STREAM, config)
        except Exception as exc:  # an existing consumer with the same config is fine
            self.log.info("reporting_consumer_exists", detail=str(exc)[:120])
        self._sub = await self.bus.js.pull_subscribe_bind(self.consumer, stream=EVENTS_STREAM)
        self._pump = asyncio.create_task(self._run_pump())
        self.log.info("reporting_ingest_started", consumer=self.consumer)

    async def stop(self) -> None:
        self._stopping = True
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        sub = getattr(self, "_sub", None)
        if sub is not None:
            try:
                await asyncio.wait_for(sub.unsubscribe(), 1.0)
            except Exception:
                pass

    async def _run_pump(self) -> None:
        while not self._stopping:
            try:
                msgs = await self._sub.fetch(BATCH, timeout=FETCH_WAIT_S)
            except (TimeoutError, NotFoundError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("reporting_fetch_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
                continue
            if not msgs:  # nats-py can end a pull with nothing
                continue
            try:
                written = await self.write(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not acknowledged: the batch comes back after ack_wait
                self.log.error("reporting_write_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(1.0)
                continue
            try:
                await msgs[-1].ack()
            except Exception as exc:
                self.log.warning("reporting_ack_failed", error=str(exc)[:200])
            self.ingested += written
            if self.on_written is not None:
                self.on_written(written)

    async def write(self, msgs: list[Msg]) -> int:
        by_tenant: dict[uuid.UUID, list[Event]] = defaultdict(list)
        for msg in msgs:
            try:
                event = decode(msg.subject, msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                self.log.warning("reporting_event_skipped", subject=msg.subject, error=str(exc)[:200])
                continue
            if event is not None:
                by_tenant[event.tenant_id].append(event)
        started = time.perf_counter()
        written = 0
        for tenant_id, events in by_tenant.items():
            written += await self.store.write(tenant_id, events)
        if written:
            self.log.debug(
                "reporting_batch", events=written, ms=round((time.perf_counter() - started) * 1000, 1)
            )
        return written
