"""A master key rotation: every tenant's data keys wrapped again under the current master key.

The operator makes a new master key file, points SB_RECORDING_KEY_FILE at it and lists the old one in
SB_RECORDING_OLD_KEY_FILES; from then on new data keys are wrapped by the new master, old ones still unwrap
with the old, and `rewrap_all` (run by the recording service at start, or by `switchboard recordings
rewrap`) moves each remaining data key under the new master. Data keys themselves do not change, so every
recording stays readable before, during and after; once nothing is left under the old master its file can
go."""

from __future__ import annotations

import uuid

import asyncpg

from services.kernel.db import tenant_tx

from .vault import KeyRing

__all__ = ["rewrap_all"]


async def rewrap_all(
    pool: asyncpg.Pool, keys: KeyRing, *, only: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """Keys re-wrapped per tenant (`only` these tenants when given). Each tenant in its own transaction: a
    failure leaves the tenants done so far done, and a rerun finishes the rest."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('app.recording_key_scan', 'on', true)")
        tenants = await conn.fetch(
            "SELECT DISTINCT tenant_id FROM recording_keys WHERE master_key_id <> $1 ORDER BY tenant_id",
            keys.master.key_id,
        )
    done: dict[uuid.UUID, int] = {}
    for row in tenants:
        tenant = row["tenant_id"]
        if only is not None and tenant not in only:
            continue
        async with tenant_tx(pool, tenant) as conn:
            done[tenant] = await keys.rewrap(conn, tenant)
    return done
