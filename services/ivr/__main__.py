"""The ivr service process (python -m services.ivr): runs every call that reaches a number pointing at a flow."""

from __future__ import annotations

import asyncio
import os

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.partitioned import Partitioning
from services.kernel.service import run_service, until_stopped
from services.kernel.waits import close_pool

from .adapter import IvrAdapter


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=5)
    # SB_IVR_PRIVATE_LOOKUPS=1 lets flows call hosts on private networks (a one-machine install, tests).
    private = os.environ.get("SB_IVR_PRIVATE_LOOKUPS", "") in ("1", "true", "yes")
    # SB_IVR_DURABLE names the JetStream consumer (tests give each stack its own); with SB_WORKER_COUNT it
    # names the partitioned work queue, its consumers and leases (services/kernel/partitioned.py).
    durable = os.environ.get("SB_IVR_DURABLE", "ivr")
    adapter = IvrAdapter(
        bus,
        pool,
        platform_secret=settings.token_secret,
        allow_private_lookups=private,
        consumer=durable,
        partitioning=Partitioning.from_env(durable),
    )
    try:
        await adapter.start()
        # Stay here until SIGTERM so the adapter stops before run_service closes the bus.
        await until_stopped(stop)
    finally:
        await adapter.stop()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("ivr", main)
