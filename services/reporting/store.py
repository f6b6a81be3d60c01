"""Writing facts: one transaction per tenant per batch, under that tenant's row-level security.

Bulk writes are multi-row statements over arrays (`INSERT ... SELECT FROM unnest($n::type[], ...)`): one
round trip per table per batch. COPY is refused on tables whose row-level security applies to the writer
(STACK-NOTES), and a staging table per batch then `INSERT ... SELECT` costs a CREATE and a second pass for
nothing `unnest` does not already give (tests/bench/bench_reporting.py measures the path used here).

Idempotency: the batch's event ids go into `rpt_ingested` first (`ON CONFLICT DO NOTHING RETURNING`); only
the ids it returns are folded into facts, in the same transaction. A replay (or a redelivery) of an event
therefore changes nothing, counters included.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

import asyncpg

from services.kernel.db import tenant_tx
from services.kernel.messages import Event

from .facts import CONTACT_COLUMNS, Batch, fold, month_of

__all__ = ["FactStore"]

_CONTACT_TYPES = {
    "contact_id": "uuid",
    "month": "date",
    "queue_id": "text",
    "outcome_queue": "boolean",
    "agent_id": "text",
    "caller": "text",
    "arrived_at": "timestamptz",
    "queued_at": "timestamptz",
    "answered_at": "timestamptz",
    "abandoned_at": "timestamptz",
    "abandon_wait_s": "float8",
    "ended_at": "timestamptz",
    "wrapped_at": "timestamptz",
    "talk_s": "float8",
    "handle_s": "float8",
    "holds": "int4",
    "transfers": "int4",
    "ivr_flow": "text",
    "ivr_outcome": "text",
    "ivr_s": "float8",
}
_STORED = [c for c in CONTACT_COLUMNS if c != "outcome_queue"]
_UNNEST = ", ".join(f"${i + 2}::{_CONTACT_TYPES[c]}[]" for i, c in enumerate(CONTACT_COLUMNS))

# The merge of a batch's contact row (s) with the stored one (c): earliest times win, sums add, the
# queue and agent are those of the earliest answer, else of the earliest abandon, else the latest queued.
_CONTACTS_SQL = f"""
WITH s AS (SELECT * FROM unnest({_UNNEST}) AS s({", ".join(CONTACT_COLUMNS)}))
INSERT INTO rpt_contacts AS c (tenant_id, {", ".join(_STORED)})
SELECT $1, {", ".join(_STORED)} FROM s
ON CONFLICT (tenant_id, contact_id, month) DO UPDATE SET
    queue_id = CASE
        WHEN EXCLUDED.answered_at IS NOT NULL AND (c.answered_at IS NULL OR EXCLUDED.answered_at < c.answered_at)
            THEN EXCLUDED.queue_id
        WHEN c.answered_at IS NOT NULL THEN c.queue_id
        WHEN EXCLUDED.abandoned_at IS NOT NULL AND (c.abandoned_at IS NULL OR EXCLUDED.abandoned_at < c.abandoned_at)
            THEN EXCLUDED.queue_id
        WHEN c.abandoned_at IS NOT NULL THEN c.queue_id
        ELSE COALESCE(EXCLUDED.queue_id, c.queue_id) END,
    agent_id = CASE
        WHEN EXCLUDED.answered_at IS NOT NULL AND (c.answered_at IS NULL OR EXCLUDED.answered_at < c.answered_at)
            THEN EXCLUDED.agent_id
        ELSE c.agent_id END,
    abandon_wait_s = CASE
        WHEN EXCLUDED.abandoned_at IS NOT NULL AND (c.abandoned_at IS NULL OR EXCLUDED.abandoned_at < c.abandoned_at)
            THEN EXCLUDED.abandon_wait_s
        ELSE c.abandon_wait_s END,
    caller = COALESCE(c.caller, EXCLUDED.caller),
    arrived_at = LEAST(c.arrived_at, EXCLUDED.arrived_at),
    queued_at = LEAST(c.queued_at, EXCLUDED.queued_at),
    answered_at = LEAST(c.answered_at, EXCLUDED.answered_at),
    abandoned_at = LEAST(c.abandoned_at, EXCLUDED.abandoned_at),
    ended_at = LEAST(c.ended_at, EXCLUDED.ended_at),
    wrapped_at = LEAST(c.wrapped_at, EXCLUDED.wrapped_at),
    talk_s = CASE WHEN EXCLUDED.talk_s IS NULL THEN c.talk_s ELSE COALESCE(c.talk_s, 0) + EXCLUDED.talk_s END,
    handle_s = CASE WHEN EXCLUDED.handle_s IS NULL THEN c.handle_s
                    ELSE COALESCE(c.handle_s, 0) + EXCLUDED.handle_s END,
    holds = c.holds + EXCLUDED.holds,
    transfers = c.transfers + EXCLUDED.transfers,
    ivr_flow = COALESCE(EXCLUDED.ivr_flow, c.ivr_flow),
    ivr_outcome = COALESCE(EXCLUDED.ivr_outcome, c.ivr_outcome),
    ivr_s = COALESCE(EXCLUDED.ivr_s, c.ivr_s)
"""

_INGESTED_SQL = """
INSERT INTO rpt_ingested (tenant_id, event_id, at)
SELECT $1, * FROM unnest($2::uuid[], $3::timestamptz[])
ON CONFLICT DO NOTHING RETURNING event_id
"""

_AGENT_STATES_SQL = """
INSERT INTO rpt_agent_states (tenant_id, agent_id, at, event_id, state, reason)
SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::uuid[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING
"""

_IVR_SQL = """
INSERT INTO rpt_ivr_visits (tenant_id, at, event_id, contact_id, flow, version, node, result, seconds)
SELECT $1, * FROM unnest($2::timestamptz[], $3::uuid[], $4::uuid[], $5::text[], $6::int4[], $7::text[],
                         $8::text[], $9::float8[])
ON CONFLICT DO NOTHING
"""

_QUEUE_STATS_SQL = """
INSERT INTO rpt_queue_stats (tenant_id, queue_id, at, event_id, waiting, longest_wait_s, ready, agents)
SELECT $1, q, a, e, w, l, r, g::jsonb
FROM unnest($2::text[], $3::timestamptz[], $4::uuid[], $5::int4[], $6::float8[], $7::int4[], $8::text[])
    AS s(q, a, e, w, l, r, g)
ON CONFLICT DO NOTHING
"""

_QUEUE_NOW_SQL = """
INSERT INTO rpt_queue_now AS n (tenant_id, queue_id, at, waiting, longest_wait_s, ready, agents)
SELECT $1, q, a, w, l, r, g::jsonb
FROM unnest($2::text[], $3::timestamptz[], $4::int4[], $5::float8[], $6::int4[], $7::text[])
    AS s(q, a, w, l, r, g)
ON CONFLICT (tenant_id, queue_id) DO UPDATE SET
    at = EXCLUDED.at, waiting = EXCLUDED.waiting, longest_wait_s = EXCLUDED.longest_wait_s,
    ready = EXCLUDED.ready, agents = EXCLUDED.agents
WHERE EXCLUDED.at >= n.at
"""


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class FactStore:
    """Writes events' facts for one tenant at a time; makes monthly partitions as months appear."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._months: set[date] = set()

    async def ensure_months(self, months: set[date]) -> None:
        missing = sorted(months - self._months)
        if not missing:
            return
        async with self.pool.acquire() as conn:
            for month in missing:
                await conn.execute("SELECT rpt_ensure_month($1)", month)
        self._months.update(missing)

    async def write(self, tenant_id: uuid.UUID, events: Sequence[Event]) -> int:
        """Ingest one tenant's events; returns how many were new."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return 0
        # Months first, in their own transactions: a partition is made before any row needs it.
        months = {month_of(e.ts) for e in unique}
        preview = fold(unique)
        await self.ensure_months(months | preview.months())
        async with tenant_tx(self.pool, tenant_id) as conn:
            fresh_ids = {
                r["event_id"]
                for r in await conn.fetch(
                    _INGESTED_SQL,
                    tenant_id,
                    [e.id for e in unique],
                    [datetime.fromtimestamp(e.ts, UTC) for e in unique],
                )
            }
            if not fresh_ids:
                return 0
            batch = (
                preview if len(fresh_ids) == len(unique) else fold([e for e in unique if e.id in fresh_ids])
            )
            await self._write_batch(conn, tenant_id, batch)
        return len(fresh_ids)

    async def _write_batch(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, batch: Batch) -> None:
        if batch.contacts:
            rows = [row.record() for row in batch.contacts.values()]
            await conn.execute(_CONTACTS_SQL, tenant_id, *_columns(rows, len(CONTACT_COLUMNS)))
        if batch.agent_states:
            rows = [(r.agent_id, r.at, r.event_id, r.state, r.reason) for r in batch.agent_states]
            await conn.execute(_AGENT_STATES_SQL, tenant_id, *_columns(rows, 5))
        if batch.ivr_visits:
            rows = [
                (r.at, r.event_id, r.contact_id, r.flow, r.version, r.node, r.result, r.seconds)
                for r in batch.ivr_visits
            ]
            await conn.execute(_IVR_SQL, tenant_id, *_columns(rows, 8))
        if batch.queue_stats:
            stats = [
                (r.queue_id, r.at, r.event_id, r.waiting, r.longest_wait_s, r.ready, json.dumps(r.agents))
                for r in batch.queue_stats
            ]
            await conn.execute(_QUEUE_STATS_SQL, tenant_id, *_columns(stats, 7))
            latest: dict[str, tuple[object, ...]] = {}
            for s in sorted(stats, key=lambda s: s[1]):  # type: ignore[arg-type, return-value]
                latest[str(s[0])] = (s[0], s[1], s[3], s[4], s[5], s[6])
            await conn.execute(_QUEUE_NOW_SQL, tenant_id, *_columns(list(latest.values()), 6))
