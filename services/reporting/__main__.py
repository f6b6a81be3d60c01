"""The reporting service process (python -m services.reporting): the ingest of events into reporting facts
(facts.py, store.py, ingest.py), queue alerts from the written facts (alert_watch.py), webhook deliveries
(webhooks.py, webhook_worker.py); the API
reads the facts (queries.py)."""

from __future__ import annotations

import asyncio

import asyncpg

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.log import get_logger
from services.kernel.service import run_service, until_stopped
from services.kernel.waits import close_pool

from .alert_watch import AlertWatch
from .backfill import backfill
from .ingest import Ingest
from .store import FactStore
from .webhook_worker import WebhookWorker

log = get_logger()


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    alerts = AlertWatch(bus, pool)
    ingest = Ingest(
        bus,
        FactStore(pool),
        consumer=settings.reporting_durable,
        on_tenants=alerts.touched,
    )
    webhooks = WebhookWorker(
        bus,
        pool,
        settings.token_secret,
        consumer=settings.webhooks_durable,
        backoff_base_s=settings.webhook_backoff_s,
    )
    building: asyncio.Task[dict[str, int] | None] | None = None
    try:
        await ingest.start()
        await webhooks.start()
        # Rollups of days not built at the current version (facts older than the rollups, a rollup
        # redefined): computed in the background, a day per transaction, beside the ingest (backfill.py).
        building = asyncio.create_task(_backfill(pool))
        await until_stopped(stop)  # until SIGTERM, so both stop before run_service closes the bus
    finally:
        if building is not None:
            building.cancel()  # a day cut short is rolled back and built on the next start
            await asyncio.gather(building, return_exceptions=True)
        await webhooks.stop()
        await ingest.stop()
        await alerts.stop()
        await close_pool(pool)


async def _backfill(pool: asyncpg.Pool) -> dict[str, int] | None:
    try:
        totals = await backfill(pool)
    except Exception as exc:  # the service goes on; the next start tries again
        log.error("reporting_backfill_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return None
    if totals["days"]:
        log.info("reporting_backfill_done", **totals)
    return totals


if __name__ == "__main__":
    run_service("reporting", main)
