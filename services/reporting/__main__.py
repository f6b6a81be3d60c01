"""The reporting service process (python -m services.reporting): the ingest of events into reporting facts
(facts.py, store.py, ingest.py), queue alerts from the written facts (alert_watch.py), webhook deliveries
(webhooks.py, webhook_worker.py); the API
reads the facts (queries.py)."""

from __future__ import annotations

import asyncio
import os

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.service import run_service
from services.kernel.waits import close_pool

from .alert_watch import AlertWatch
from .ingest import CONSUMER, Ingest
from .store import FactStore
from .webhook_worker import CONSUMER as WEBHOOKS_CONSUMER
from .webhook_worker import WebhookWorker


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    # SB_REPORTING_DURABLE names the JetStream consumer (tests give each stack its own).
    alerts = AlertWatch(bus, pool)
    ingest = Ingest(
        bus,
        FactStore(pool),
        consumer=os.environ.get("SB_REPORTING_DURABLE", CONSUMER),
        on_tenants=alerts.touched,
    )
    # SB_WEBHOOK_BACKOFF_S: the first retry's delay (doubling after); tests make it short.
    webhooks = WebhookWorker(
        bus,
        pool,
        settings.token_secret,
        consumer=os.environ.get("SB_WEBHOOKS_DURABLE", WEBHOOKS_CONSUMER),
        backoff_base_s=float(os.environ.get("SB_WEBHOOK_BACKOFF_S", "2")),
    )
    try:
        await ingest.start()
        await webhooks.start()
        await stop.wait()  # until SIGTERM, so both stop before run_service closes the bus
    finally:
        await webhooks.stop()
        await ingest.stop()
        await alerts.stop()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("reporting", main)
