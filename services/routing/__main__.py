"""The routing service process (python -m services.routing).

Environment (besides the SB_* settings, among them SB_ROUTING_PARTITION_COUNT, default 16, which must match
the NATS subject mapping): SB_ROUTING_PARTITIONS ("all" by default, or e.g. "0-7"), SB_ROUTING_WORKER_ID
(default routing-<host>-<partitions>), and for workers sharing the partitions SB_WORKER_COUNT and
SB_WORKER_INDEX (0-based, worker i's home partitions being those with k % count == i; or "auto": from the
live workers, worker.py).
"""

from __future__ import annotations

import asyncio
import os
import socket

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.partitioned import home_partitions
from services.kernel.service import run_service, until_stopped
from services.kernel.waits import close_pool

from .worker import RoutingWorker, parse_partitions


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    count = settings.routing_partition_count
    spec = os.environ.get("SB_ROUTING_PARTITIONS", "all")
    partitions = parse_partitions(spec, count)
    home, auto = None, False
    worker_id = os.environ.get("SB_ROUTING_WORKER_ID") or f"routing-{socket.gethostname()}-{spec}"
    if os.environ.get("SB_WORKER_COUNT"):
        workers = int(os.environ["SB_WORKER_COUNT"])
        where = os.environ.get("SB_WORKER_INDEX", "0").strip()
        auto = where == "auto"
        if not auto:
            if not 0 <= int(where) < workers:
                raise ValueError(f"SB_WORKER_INDEX {where} is outside 0-{workers - 1} (SB_WORKER_COUNT)")
            home = home_partitions(int(where), workers, count)
        default_id = f"routing-{socket.gethostname()}-{where}-{os.getpid()}"
        worker_id = os.environ.get("SB_ROUTING_WORKER_ID") or default_id
    pool = await create_pool(settings.database_url)
    worker = RoutingWorker(
        bus,
        pool,
        worker_id=worker_id,
        partitions=partitions,
        partition_count=count,
        home=home,
        auto_home=auto,
    )
    await worker.start()
    try:
        # Until SIGTERM, so the worker stops before run_service drains the bus. A stop left to a task of
        # its own raced the drain: its unsubscribes failed (ConnectionDrainingError) and asyncio.run
        # cancelled it midway, leaving gathers whose CancelledError nobody retrieved.
        await until_stopped(stop)
    finally:
        await worker.stop()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("routing", main)
