"""The reporting service process (python -m services.reporting): the ingest of events into reporting facts
(facts.py, store.py, ingest.py); the API reads the facts (queries.py)."""

from __future__ import annotations

import asyncio
import os

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.service import run_service
from services.kernel.waits import close_pool

from .ingest import CONSUMER, Ingest
from .store import FactStore


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    # SB_REPORTING_DURABLE names the JetStream consumer (tests give each stack its own).
    ingest = Ingest(bus, FactStore(pool), consumer=os.environ.get("SB_REPORTING_DURABLE", CONSUMER))
    try:
        await ingest.start()
        await stop.wait()  # until SIGTERM, so the ingest stops before run_service closes the bus
    finally:
        await ingest.stop()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("reporting", main)
