"""Records that tell the truth after a crash of the whole platform.

The coordinator keeps, for each live contact, the last moment it knew it alive (`Contact.alive_at`: every
step, and a checkpoint every CHECKPOINT_S). After a restart, a contact resumed from `sb_contacts` whose
call was held by media processes that are all gone (every live media process started after that moment)
cannot be alive any more: its record ends at `alive_at` with outcome platform_failure (connected: with its
agent and the talk time up to then), never as abandoned and never at the restart time. A coordinator that
restarts alone finds media processes older than its contacts and changes nothing.
"""

from __future__ import annotations

import time

import msgspec

from services.kernel.bus import Bus
from services.kernel.service import HEARTBEAT_S, Health
from services.kernel.subjects import HEALTH_BUCKET

__all__ = ["CHECKPOINT_S", "RECONCILE_AFTER_S", "media_started_after"]

CHECKPOINT_S = 10.0
# Long enough for every restarted media process to have put its first beat (every HEARTBEAT_S).
RECONCILE_AFTER_S = 2 * HEARTBEAT_S + 2.0


async def media_started_after(bus: Bus) -> float | None:
    """When the oldest live media process started; None when no media process is alive (then nothing can
    be decided: media may simply be slow to come back)."""
    now = time.time()
    starts = []
    for _key, value in await bus.kv_latest(HEALTH_BUCKET):
        try:
            beat = msgspec.json.decode(value, type=Health)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if beat.service == "media" and now - beat.ts < 3 * HEARTBEAT_S:
            starts.append(beat.started_at)
    return min(starts) if starts else None
