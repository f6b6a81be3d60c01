"""The contact coordinator process (python -m services.contacts): every contact's life from arrival to
wrap-up (lifecycle.py), driven by the platform's events and the agents' desks (adapter.py); it also ends
the calls of a media process without a SIP front that dies (media_watch.py)."""

from __future__ import annotations

import asyncio
import os

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.partitioned import Partitioning
from services.kernel.service import run_service, until_stopped
from services.kernel.waits import close_pool

from .adapter import ContactsAdapter
from .media_watch import MediaWatch


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=5)
    # SB_CONTACTS_DURABLE names the JetStream consumer (tests give each stack its own); with SB_WORKER_COUNT
    # it names the partitioned work queue, its consumers and leases (services/kernel/partitioned.py).
    durable = os.environ.get("SB_CONTACTS_DURABLE", "contacts")
    adapter = ContactsAdapter(bus, pool, consumer=durable, partitioning=Partitioning.from_env(durable))
    media = MediaWatch(bus)
    try:
        await adapter.start()
        media.start()
        await until_stopped(stop)  # until SIGTERM, so the adapter stops before run_service closes the bus
    finally:
        await media.stop()
        await adapter.stop()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("contacts", main)
