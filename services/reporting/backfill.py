"""Rollup backfill: a tenant's rollups recomputed from its facts, one UTC day at a time.

The ingest keeps the rollups (rollups.py) as it writes facts, but only from the moment they exist: facts
written before migration 0024, and every day when a rollup is added or its definition changes
(ROLLUP_VERSION), need theirs computed from the facts. A day's rebuild is one transaction under the
tenant's row-level security: it takes the tenant's rollup lock alone (ingest writes hold it shared, so none
lands between the read of the facts and the replacement), deletes the day's rollup rows, adds what the
day's facts contribute through the same functions the ingest uses, and records the day as built at the
current version in `rpt_rollup_builds`. Running it again gives the same rows (idempotent); a run that
stopped goes on with the first day not built yet (resumable). The reporting service runs it at start-up
in the background; `python -m services.reporting.backfill` runs it by hand.

Where facts and rollups meet: a contact's parts go to the buckets of its queued, answered and arrival
times (contact_deltas), each in the day holding that bucket; an agent's state spans are cut at bucket
edges, and a span running into the day from the day before (or through it) is counted from the last state
row before midnight; the latest span of an agent stays open (reports add it at read time). A node visit
counts as a reach when no visit of the same contact and node came before it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from services.kernel.db import tenant_tx
from services.kernel.log import get_logger

from .facts import CONTACT_COLUMNS, ContactRow, month_of
from .rollups import Deltas, bucket_of, contact_deltas, state_deltas
from .store import FAILED_RESULTS, STATS_ROLLUP_SQL, lock_rollups, write_rollups

__all__ = ["ROLLUP_VERSION", "backfill", "rebuild_day", "tenant_days"]

# Raise when a rollup is added or what a fact contributes changes: every day is built again.
ROLLUP_VERSION = 1
_DAY = timedelta(days=1)

log = get_logger()

_CONTACTS_SQL = f"""
SELECT {", ".join(CONTACT_COLUMNS)} FROM rpt_contacts
WHERE (month >= $3 AND month <= $4 OR month = '1970-01-01')  -- ids that are not UUIDv7 (facts.py)
  AND ((queued_at >= $1 AND queued_at < $2) OR (answered_at >= $1 AND answered_at < $2)
       OR (arrived_at >= $1 AND arrived_at < $2))
"""

# Every agent that has a state row has its latest in rpt_agent_now: per agent, the last row before the
# day, the day's rows and the first row after it (the index on agent and time answers each).
_STATES_SQL = """
SELECT n.agent_id, s.at, s.event_id, s.state FROM rpt_agent_now n
CROSS JOIN LATERAL (
    (SELECT at, event_id, state FROM rpt_agent_states
     WHERE agent_id = n.agent_id AND at < $1 ORDER BY at DESC, event_id DESC LIMIT 1)
    UNION ALL
    (SELECT at, event_id, state FROM rpt_agent_states WHERE agent_id = n.agent_id AND at >= $1 AND at < $2)
    UNION ALL
    (SELECT at, event_id, state FROM rpt_agent_states
     WHERE agent_id = n.agent_id AND at >= $2 ORDER BY at, event_id LIMIT 1)
) s
"""

_VISITS_SQL = """
SELECT v.at, v.flow, v.node, v.result, v.seconds,
       NOT EXISTS (SELECT 1 FROM rpt_ivr_visits p
                   WHERE p.contact_id = v.contact_id AND p.node = v.node
                     AND (p.at, p.event_id) < (v.at, v.event_id)) AS first
FROM rpt_ivr_visits v WHERE v.at >= $1 AND v.at < $2
"""

_STATS_SQL = """
SELECT queue_id, to_timestamp(floor(extract(epoch FROM at) / 900) * 900) AS bucket, count(*)::int4 AS n,
       sum(logged_in)::int8 AS logged_in_sum, max(logged_in)::int4 AS logged_in_max
FROM (SELECT queue_id, at, (SELECT coalesce(sum(value::int), 0) FROM jsonb_each_text(agents)) AS logged_in
      FROM rpt_queue_stats WHERE at >= $1 AND at < $2) s
GROUP BY 1, 2 ORDER BY 2, 1
"""

_DELETE_SQL = [
    f"DELETE FROM {table} WHERE bucket >= $1 AND bucket < $2"
    for table in ("rpt_queue_rollup", "rpt_agent_rollup", "rpt_ivr_rollup", "rpt_ivr_node_rollup")
]
# The agents' CSV lines of the day (migration 0039): written again from the rebuilt rollups by write_rollups.
_DELETE_LINES_SQL = "DELETE FROM rpt_agent_day WHERE day = $1"

_BUILT_SQL = """
INSERT INTO rpt_rollup_builds (tenant_id, day, version) VALUES (current_tenant(), $1, $2)
ON CONFLICT (tenant_id, day) DO UPDATE SET version = EXCLUDED.version, built_at = now()
"""

# The first and last moment of the tenant's facts (each table's index on time answers its part).
_SPAN_SQL = """
SELECT least((SELECT min(queued_at) FROM rpt_contacts), (SELECT min(arrived_at) FROM rpt_contacts),
             (SELECT min(at) FROM rpt_agent_states), (SELECT min(at) FROM rpt_ivr_visits),
             (SELECT min(at) FROM rpt_queue_stats)) AS first,
       greatest((SELECT max(queued_at) FROM rpt_contacts), (SELECT max(answered_at) FROM rpt_contacts),
                (SELECT max(arrived_at) FROM rpt_contacts), (SELECT max(at) FROM rpt_agent_states),
                (SELECT max(at) FROM rpt_ivr_visits), (SELECT max(at) FROM rpt_queue_stats)) AS last
"""


def _within(deltas: Deltas, first: float, end: float) -> None:
    """Only the day's buckets: a fact's parts elsewhere belong to the rebuild of their own day."""
    for table in (deltas.queue, deltas.agent, deltas.ivr, deltas.node):
        for key in [k for k in table if not first <= k[-1] < end]:
            del table[key]


async def rebuild_day(conn: asyncpg.Connection, day: date, *, version: int = ROLLUP_VERSION) -> int:
    """Replace the rollups of one UTC day of the transaction's tenant with what its facts add up to;
    returns how many facts were read. `conn` is inside tenant_tx."""
    await lock_rollups(conn)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + _DAY
    first, last = start.timestamp(), end.timestamp()
    deltas = Deltas()
    contacts = await conn.fetch(_CONTACTS_SQL, start, end, month_of(first - 31 * 86400), month_of(last))
    for record in contacts:
        contact_deltas(deltas, None, ContactRow(**dict(record.items())))
    by_agent: dict[str, list[tuple[float, object, str]]] = {}
    states = await conn.fetch(_STATES_SQL, start, end)
    for r in states:
        by_agent.setdefault(r["agent_id"], []).append((r["at"].timestamp(), r["event_id"], r["state"]))
    for agent, rows in by_agent.items():
        state_deltas(deltas, agent, [], rows)  # sorted there; closed spans only
    visits = await conn.fetch(_VISITS_SQL, start, end)
    for v in visits:
        vector = (1, int(v["first"]), int(v["result"] in FAILED_RESULTS), v["seconds"])
        Deltas._add(deltas.node, (v["flow"], v["node"], bucket_of(v["at"].timestamp())), vector, +1)
    _within(deltas, first, last)
    for sql in _DELETE_SQL:
        await conn.execute(sql, start, end)
    await conn.execute(_DELETE_LINES_SQL, day)
    await write_rollups(conn, deltas)
    stats = await conn.fetch(_STATS_SQL, start, end)
    if stats:
        columns = [[r[i] for r in stats] for i in range(5)]
        await conn.execute(STATS_ROLLUP_SQL, *columns)
    await conn.execute(_BUILT_SQL, day, version)
    return len(contacts) + len(states) + len(visits) + len(stats)


async def tenant_days(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, *, version: int = ROLLUP_VERSION
) -> list[date]:
    """The UTC days holding the tenant's facts whose rollups are not built at `version` yet, oldest first."""
    async with tenant_tx(pool, tenant_id, readonly=True) as conn:
        span = await conn.fetchrow(_SPAN_SQL)
        if span is None or span["first"] is None:
            return []
        built = {
            r["day"]
            for r in await conn.fetch("SELECT day FROM rpt_rollup_builds WHERE version >= $1", version)
        }
    first, last = span["first"].astimezone(UTC).date(), span["last"].astimezone(UTC).date()
    return [d for d in (first + timedelta(days=i) for i in range((last - first).days + 1)) if d not in built]


async def backfill(
    pool: asyncpg.Pool,
    *,
    tenants: list[uuid.UUID] | None = None,
    version: int = ROLLUP_VERSION,
    days: tuple[date, date] | None = None,
) -> dict[str, int]:
    """Build every day not built at `version` of these tenants (default: all), oldest first; with `days`,
    rebuild those days (inclusive) whatever was built. Each day commits on its own."""
    if tenants is None:
        async with pool.acquire() as conn:
            tenants = [r[0] for r in await conn.fetch("SELECT * FROM rpt_tenant_ids()")]
    totals = {"tenants": 0, "days": 0, "facts": 0}
    for tenant_id in tenants:
        if days is None:
            todo = await tenant_days(pool, tenant_id, version=version)
        else:
            todo = [days[0] + timedelta(days=i) for i in range((days[1] - days[0]).days + 1)]
        for day in todo:
            async with tenant_tx(pool, tenant_id) as conn:
                totals["facts"] += await rebuild_day(conn, day, version=version)
            totals["days"] += 1
        if todo:
            totals["tenants"] += 1
            log.info("reporting_backfill_tenant", tenant_id=str(tenant_id), days=len(todo))
    return totals


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.reporting.backfill",
        description="Compute reporting rollups from the stored facts for days not built yet (or --from/--to "
        "again). Idempotent; a stopped run goes on where it stopped. Uses SB_DATABASE_URL.",
    )
    parser.add_argument("--tenant", action="append", type=uuid.UUID, help="only this tenant (repeatable)")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="rebuild from this UTC day")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="... to this UTC day (inclusive)")
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    if args.start is not None and args.end < args.start:
        parser.error("--to must not be before --from")
    return args


async def _main(argv: list[str]) -> int:
    from services.kernel.config import load_settings
    from services.kernel.db import create_pool
    from services.kernel.waits import close_pool

    args = _parse(argv)
    settings = load_settings()
    if not settings.database_url:
        print("SB_DATABASE_URL is not set: nothing to backfill", file=sys.stderr)
        return 2
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        days = (args.start, args.end) if args.start is not None else None
        totals: dict[str, Any] = await backfill(pool, tenants=args.tenant, days=days)
    finally:
        await close_pool(pool)
    print(f"built {totals['days']} days of {totals['tenants']} tenants from {totals['facts']} facts")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
