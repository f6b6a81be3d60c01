"""The recording service process (python -m services.recording): recorded calls' chunks in, sealed and
indexed recordings out (pipeline.py), and the purge of recordings past their retention."""

from __future__ import annotations

import asyncio
import os
import time

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.log import get_logger
from services.kernel.service import run_service, until_stopped
from services.kernel.waits import close_pool

from .pipeline import CONSUMER, RecordingPipeline
from .rewrap import rewrap_all
from .setup import keyring_from, store_from
from .voicemails import VoicemailVault

# The purge wakes when the next recording falls due, and at least this often (retention changes and
# recordings indexed meanwhile are picked up).
PURGE_EVERY_S = 300.0


async def _purge_loop(pipeline: RecordingPipeline, stop: asyncio.Event) -> None:
    log = get_logger()
    while not stop.is_set():
        try:
            purged = await pipeline.purge_due(time.time())
            if purged:
                log.info("recordings_purged", count=len(purged))
            due = await pipeline.next_purge_at()
        except Exception as exc:  # the database away: try again later
            log.warning("recording_purge_failed", error=f"{type(exc).__name__}: {exc}")
            due = None
        wait = PURGE_EVERY_S if due is None else min(PURGE_EVERY_S, max(1.0, due - time.time()))
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    pool = await create_pool(settings.database_url, min_size=1, max_size=5)
    store = store_from(settings)
    keys = keyring_from(settings)
    voicemails = VoicemailVault(
        bus, pool, keys, store, settings.data_dir, replicas=settings.jetstream_replicas
    )
    # SB_RECORDING_DURABLE names the JetStream consumers (tests give each stack its own).
    pipeline = RecordingPipeline(
        bus,
        pool,
        keys,
        store,
        durable=os.environ.get("SB_RECORDING_DURABLE", CONSUMER),
        replicas=settings.jetstream_replicas,
        voicemails=voicemails,
    )
    purge = None
    try:
        await pipeline.start()
        if pipeline.keys.previous:  # a master key rotation under way: finish it
            try:
                moved = await rewrap_all(pool, pipeline.keys)
            except Exception as exc:  # reads still work through the old masters: say so, keep recording
                get_logger().error("recording_rewrap_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                get_logger().info("recording_keys_rewrapped", tenants=len(moved), keys=sum(moved.values()))
        try:  # messages still in plain from before voicemails were sealed, or whose event was missed
            swept = await voicemails.sweep()
        except Exception as exc:  # they wait for the next start; new messages are sealed meanwhile
            get_logger().error("voicemail_sweep_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if swept:
                get_logger().info("voicemails_sealed_at_start", count=swept)
        purge = asyncio.create_task(_purge_loop(pipeline, stop))
        await until_stopped(stop)
    finally:
        if purge is not None:  # cancelled, not awaited to its end: a purge step may wait on a dead database
            purge.cancel()
            await asyncio.gather(purge, return_exceptions=True)
        await pipeline.stop()
        await store.close()
        await close_pool(pool)


if __name__ == "__main__":
    run_service("recording", main)
