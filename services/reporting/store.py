"""Writing facts and their rollups: one transaction per tenant per batch, under that tenant's row-level
security.

Bulk writes are multi-row statements over arrays (`INSERT ... SELECT FROM unnest($n::type[], ...)`): one
round trip per table per batch. COPY is refused on tables whose row-level security applies to the writer
(STACK-NOTES), and a staging table per batch then `INSERT ... SELECT` costs a CREATE and a second pass for
nothing `unnest` does not already give (tests/bench/bench_reporting.py measures the path used here).

A batch's contacts are read with `FOR UPDATE`, its new events applied to them in Python (facts.apply), and
the rollups (rollups.py) get each row's contribution after minus before, aggregated per key over the batch:
one upsert per rollup table. Idempotency: a contact row holds the ids of the events folded into it; agent
states, IVR visits and queue snapshots are keyed by event id (`ON CONFLICT DO NOTHING RETURNING` says which
are new). A replay (or a redelivery) therefore changes nothing, counters included.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import asyncpg
import msgspec

from services.kernel.db import tenant_tx
from services.kernel.messages import Event

from .facts import (
    CONTACT_COLUMNS,
    REPEAT_WINDOW,
    AgentStateRow,
    Batch,
    ContactRow,
    apply,
    contact_month,
    mark_repeats,
    month_of,
    split,
)
from .rollups import (
    AGENT_FIELDS,
    IVR_FIELDS,
    NODE_FIELDS,
    QUEUE_FIELDS,
    Deltas,
    bucket_of,
    contact_deltas,
    epoch,
    state_deltas,
)

__all__ = ["STATS_ROLLUP_SQL", "FactStore", "lock_rollups", "write_rollups"]

_CONTACT_TYPES = {
    "contact_id": "uuid",
    "month": "date",
    "queue_id": "text",
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
    "requeued_at": "timestamptz",
    "sl_met": "bool",
    "abandon_long": "bool",
    "repeat_24h": "bool",
    "repeat_7d": "bool",
    "survey_score": "float8",
    "survey_n": "int4",
    "events": "uuid[]",
}
_RECORD = ", ".join(f"{c} {_CONTACT_TYPES[c]}" for c in CONTACT_COLUMNS)

# Each of the batch's contacts looked up by its key (id and month) through the primary key. Written as a join
# with the batch's keys rather than `contact_id = ANY($1)`: with the tenant's rows underestimated (a partition
# the statistics have not caught up with, as while a backlog is drained) the planner read every row of the
# tenant and compared it with each of the batch's ids, a cost growing with the table times the batch.
_READ_CONTACTS_SQL = f"""
SELECT {", ".join(f"c.{c}" for c in CONTACT_COLUMNS)}
FROM unnest($1::uuid[], $2::date[]) AS k(contact_id, month)
JOIN rpt_contacts c ON c.contact_id = k.contact_id AND c.month = k.month
FOR UPDATE OF c
"""

# The rows go in as one JSON document (msgspec encodes the dataclasses): 26 columns as arrays cost asyncpg a
# type check per element, more than the rest of the batch's Python. Rows read above are overwritten whole
# (they are locked). A row this batch believed new, that another writer inserted meanwhile, holds events
# this batch never read: it is left alone (`<@`) and, missing from what is returned, makes the batch start
# again.
_WRITE_CONTACTS_SQL = f"""
INSERT INTO rpt_contacts AS c (tenant_id, {", ".join(CONTACT_COLUMNS)})
SELECT current_tenant(), {", ".join(CONTACT_COLUMNS)} FROM json_to_recordset($1::json) AS s({_RECORD})
ON CONFLICT (tenant_id, contact_id, month) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in CONTACT_COLUMNS if c not in ("contact_id", "month"))}
WHERE c.events <@ EXCLUDED.events
RETURNING contact_id
"""

# A caller's contacts near the batch's (first-contact resolution), but for the batch's own; `month` bounds the
# partitions scanned. Joins with the callers and ids for the same reason as above: with `caller = ANY($1)` the
# planner scanned the tenant's arrivals in the window and compared each with every caller of the batch (text
# comparisons, a tenth of PostgreSQL's time in the benchmark), and `NOT contact_id = ANY($4)` compares each
# row found with every id of the batch.
_CALLER_CONTACTS_SQL = f"""
SELECT {", ".join(f"c.{c}" for c in CONTACT_COLUMNS)}
FROM unnest($1::text[]) AS k(caller)
JOIN rpt_contacts c ON c.caller = k.caller
WHERE c.caller IS NOT NULL AND c.arrived_at >= $2 AND c.arrived_at <= $3 AND c.month >= $5 AND c.month <= $6
  AND NOT EXISTS (SELECT 1 FROM unnest($4::uuid[]) AS b(contact_id) WHERE b.contact_id = c.contact_id)
FOR UPDATE OF c
"""

_THRESHOLDS_SQL = """
SELECT id::text AS id, sl_seconds, short_abandon_seconds FROM queues WHERE id::text = ANY($1::text[])
"""
# A queue the tenant no longer has (or never had) is classified with the queues table's defaults.
_DEFAULT_THRESHOLDS = (20.0, 5.0)

# The batch's state rows inserted (those returned are new) and, in the same round trip, the latest stored
# state of each of the batch's agents, locked: `fresh` tells the two kinds of row apart.
_AGENT_STATES_SQL = """
WITH ins AS (
    INSERT INTO rpt_agent_states (tenant_id, agent_id, at, event_id, state, reason)
    SELECT current_tenant(), * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[])
    ON CONFLICT DO NOTHING RETURNING event_id
), latest AS (
    SELECT agent_id, at, event_id, state FROM rpt_agent_now WHERE agent_id = ANY($6::text[]) FOR UPDATE
)
SELECT true AS fresh, NULL::text AS agent_id, NULL::timestamptz AS at, event_id, NULL::text AS state FROM ins
UNION ALL
SELECT false, agent_id, at, event_id, state FROM latest
"""

_AGENT_NOW_WRITE_SQL = """
INSERT INTO rpt_agent_now AS n (tenant_id, agent_id, at, event_id, state, reason)
SELECT current_tenant(), * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[])
ON CONFLICT (tenant_id, agent_id) DO UPDATE SET
    at = EXCLUDED.at, event_id = EXCLUDED.event_id, state = EXCLUDED.state, reason = EXCLUDED.reason
"""

# A late state row (older than the agent's latest): the stored rows it falls among.
_AGENT_CONTEXT_SQL = """
(SELECT at, event_id, state FROM rpt_agent_states
 WHERE agent_id = $1 AND (at, event_id) < ($2, $3) ORDER BY at DESC, event_id DESC LIMIT 1)
UNION ALL
(SELECT at, event_id, state FROM rpt_agent_states
 WHERE agent_id = $1 AND (at, event_id) >= ($2, $3) AND NOT event_id = ANY($4::uuid[]))
"""

_IVR_SQL = """
INSERT INTO rpt_ivr_visits (tenant_id, at, event_id, contact_id, flow, version, node, result, seconds)
SELECT current_tenant(), * FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::int4[],
                                      $6::text[], $7::text[], $8::float8[])
ON CONFLICT DO NOTHING RETURNING event_id
"""

# The nodes these contacts visited before the batch's new visits (joins, as for the contacts above).
_IVR_SEEN_SQL = """
SELECT DISTINCT v.contact_id, v.node
FROM unnest($1::uuid[]) AS k(contact_id)
JOIN rpt_ivr_visits v ON v.contact_id = k.contact_id
WHERE NOT EXISTS (SELECT 1 FROM unnest($2::uuid[]) AS n(event_id) WHERE n.event_id = v.event_id)
"""
FAILED_RESULTS = frozenset({"timeout", "invalid", "error"})

_QUEUE_STATS_SQL = """
INSERT INTO rpt_queue_stats (tenant_id, queue_id, at, event_id, waiting, longest_wait_s, ready, agents)
SELECT current_tenant(), q, a, e, w, l, r, g::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::int4[], $5::float8[], $6::int4[], $7::text[])
    AS s(q, a, e, w, l, r, g)
ON CONFLICT DO NOTHING RETURNING event_id
"""

_QUEUE_NOW_SQL = """
INSERT INTO rpt_queue_now AS n (tenant_id, queue_id, at, waiting, longest_wait_s, ready, agents)
SELECT current_tenant(), q, a, w, l, r, g::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::int4[], $4::float8[], $5::int4[], $6::text[])
    AS s(q, a, w, l, r, g)
ON CONFLICT (tenant_id, queue_id) DO UPDATE SET
    at = EXCLUDED.at, waiting = EXCLUDED.waiting, longest_wait_s = EXCLUDED.longest_wait_s,
    ready = EXCLUDED.ready, agents = EXCLUDED.agents
WHERE EXCLUDED.at >= n.at
"""

STATS_ROLLUP_SQL = """
INSERT INTO rpt_queue_rollup AS r (tenant_id, queue_id, bucket, stats_n, logged_in_sum, logged_in_max)
SELECT current_tenant(), * FROM unnest($1::text[], $2::timestamptz[], $3::int4[], $4::int8[], $5::int4[])
ON CONFLICT (tenant_id, bucket, queue_id) DO UPDATE SET
    stats_n = r.stats_n + EXCLUDED.stats_n, logged_in_sum = r.logged_in_sum + EXCLUDED.logged_in_sum,
    logged_in_max = greatest(r.logged_in_max, EXCLUDED.logged_in_max)
"""


# The tenant's rollups: ingest writes hold this lock shared (they add to the rollups side by side); a
# backfill holds it alone while it recomputes a day from the facts (backfill.py), so no write lands between
# its read of the facts and its replacement of the day's rollups.
_ROLLUP_LOCK = "hashtextextended('rpt_rollups:' || current_tenant()::text, 0)"
_SHARED_LOCK_SQL = f"SELECT pg_advisory_xact_lock_shared({_ROLLUP_LOCK})"
_EXCLUSIVE_LOCK_SQL = f"SELECT pg_advisory_xact_lock({_ROLLUP_LOCK})"


async def lock_rollups(conn: asyncpg.Connection) -> None:
    """The tenant's rollups to this transaction alone, until it ends (the backfill's)."""
    await conn.execute(_EXCLUSIVE_LOCK_SQL)


def _is_count(name: str) -> bool:
    return not name.endswith(("_sum", "_s"))


def _rollup_sql(table: str, keys: Sequence[tuple[str, str]], names: Sequence[str], first: int) -> str:
    """An additive upsert: the batch's summed change per key added to the stored counters (its arrays are
    the statement's parameters from `first` + 1 on)."""
    columns = [k for k, _ in keys] + list(names)
    types = [t for _, t in keys] + ["int4" if _is_count(n) else "float8" for n in names]
    args = ", ".join(f"${first + i + 1}::{t}[]" for i, t in enumerate(types))
    pk = ", ".join(["tenant_id", "bucket", *(k for k, _ in keys if k != "bucket")])
    return f"""
INSERT INTO {table} AS r (tenant_id, {", ".join(columns)})
SELECT current_tenant(), * FROM unnest({args})
ON CONFLICT ({pk}) DO UPDATE SET {", ".join(f"{n} = r.{n} + EXCLUDED.{n}" for n in names)}
"""


# Each rollup table: its keys (the bucket last) and additive columns, in the order Deltas holds them.
_ROLLUPS: tuple[tuple[str, Sequence[tuple[str, str]], Sequence[str]], ...] = (
    ("rpt_queue_rollup", [("queue_id", "text"), ("bucket", "timestamptz")], QUEUE_FIELDS),
    ("rpt_agent_rollup", [("agent_id", "text"), ("bucket", "timestamptz")], AGENT_FIELDS),
    ("rpt_ivr_rollup", [("flow", "text"), ("bucket", "timestamptz")], IVR_FIELDS),
    ("rpt_ivr_node_rollup", [("flow", "text"), ("node", "text"), ("bucket", "timestamptz")], NODE_FIELDS),
)


_AGENT_DAY_SQL = "SELECT rpt_agent_day_refresh($1::text[], $2::timestamptz[])"


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class _Raced(Exception):
    """Another writer inserted a contact this batch read as absent: the transaction is rolled back."""


class FactStore:
    """Writes events' facts and rollups for one tenant at a time; makes monthly partitions as months appear."""

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
        batch = split(list(events))
        if not (batch.contact_events or batch.agent_states or batch.ivr_visits or batch.queue_stats):
            return 0
        # Months first, in their own transactions: a partition is made before any row needs it.
        await self.ensure_months(batch.months())
        for _ in range(3):
            try:
                async with tenant_tx(self.pool, tenant_id) as conn:
                    return await self._write(conn, batch)
            except _Raced:
                continue
        raise RuntimeError("three writers raced for the same contacts: the batch comes back later")

    async def _write(self, conn: asyncpg.Connection, batch: Batch) -> int:
        await conn.execute(_SHARED_LOCK_SQL)
        deltas = Deltas()
        written = 0
        if batch.contact_events:
            written += await self._contacts(conn, batch.contact_events, deltas)
        if batch.agent_states:
            written += await self._agent_states(conn, batch.agent_states, deltas)
        if batch.ivr_visits:
            written += await self._ivr_visits(conn, batch, deltas)
        if batch.queue_stats:
            written += await self._queue_stats(conn, batch)
        await write_rollups(conn, deltas)
        return written

    async def _contacts(
        self, conn: asyncpg.Connection, by_contact: dict[uuid.UUID, list[Event]], deltas: Deltas
    ) -> int:
        ids = list(by_contact)
        stored = {
            r[0]: ContactRow(*r)  # selected in the field order (CONTACT_COLUMNS)
            for r in await conn.fetch(_READ_CONTACTS_SQL, ids, [contact_month(i) for i in ids])
        }
        changed: list[tuple[ContactRow | None, ContactRow]] = []
        written = 0
        for contact_id, events in by_contact.items():
            old = stored.get(contact_id)
            row = old.copy() if old is not None else ContactRow(contact_id, contact_month(contact_id))
            new = apply(row, events)
            if new:
                written += new
                changed.append((old, row))
        if not changed:
            return 0
        queues = sorted({row.queue_id for _, row in changed if row.queue_id is not None})
        thresholds = {
            r["id"]: (float(r["sl_seconds"]), float(r["short_abandon_seconds"]))
            for r in (await conn.fetch(_THRESHOLDS_SQL, queues) if queues else [])
        }
        for _, row in changed:
            row.classify(*thresholds.get(row.queue_id or "", _DEFAULT_THRESHOLDS))
        changed += await self._repeats(conn, changed)
        for old, row in changed:
            contact_deltas(deltas, old, row)
        rows = sorted((row for _, row in changed), key=lambda r: r.contact_id)  # one lock order for all
        result = await conn.fetch(_WRITE_CONTACTS_SQL, msgspec.json.encode(rows).decode())
        if len(result) != len(rows):
            raise _Raced()
        return written

    async def _repeats(
        self, conn: asyncpg.Connection, changed: list[tuple[ContactRow | None, ContactRow]]
    ) -> list[tuple[ContactRow | None, ContactRow]]:
        """First-contact resolution: a contact whose caller called again within 24 h (7 days) is a repeat.
        A contact whose caller and arrival became known in this batch can make its caller's earlier
        contacts repeats, and be one itself: the caller's stored contacts within 7 days either side are
        read (locked), the flags set again over all of them, and the stored ones whose flags moved are
        returned to be written with their rollup change."""
        arrivals = [
            row
            for old, row in changed
            if row.caller
            and row.arrived_at
            and (old is None or (old.caller, old.arrived_at) != (row.caller, row.arrived_at))
        ]
        if not arrivals:
            return []
        first = min(r.arrived_at for r in arrivals if r.arrived_at) - REPEAT_WINDOW
        last = max(r.arrived_at for r in arrivals if r.arrived_at) + REPEAT_WINDOW
        callers = {r.caller for r in arrivals}
        # Only these callers' contacts are all at hand: other rows of the batch keep their flags.
        batch = {row.contact_id: row for _, row in changed if row.caller in callers}
        records = await conn.fetch(
            _CALLER_CONTACTS_SQL,
            sorted(c for c in callers if c),
            first,
            last,
            [row.contact_id for _, row in changed],
            month_of(first.timestamp() - 31 * 86400),
            month_of(last.timestamp()),
        )
        others = {r[0]: ContactRow(*r) for r in records}
        befores = {i: row.copy() for i, row in others.items()}
        mark_repeats([*batch.values(), *others.values()], upto=last - REPEAT_WINDOW)
        return [
            (befores[i], row)
            for i, row in others.items()
            if (row.repeat_24h, row.repeat_7d) != (befores[i].repeat_24h, befores[i].repeat_7d)
        ]

    async def _agent_states(self, conn: asyncpg.Connection, rows: list[AgentStateRow], deltas: Deltas) -> int:
        rows = sorted(rows, key=lambda r: (r.agent_id, r.at, r.event_id))
        found = await conn.fetch(
            _AGENT_STATES_SQL,
            *_columns([(r.agent_id, r.at, r.event_id, r.state, r.reason) for r in rows], 5),
            sorted({r.agent_id for r in rows}),
        )
        fresh = {r["event_id"] for r in found if r["fresh"]}
        by_agent: dict[str, list[AgentStateRow]] = defaultdict(list)
        for r in rows:
            if r.event_id in fresh:
                by_agent[r.agent_id].append(r)
        if not by_agent:
            return 0
        latest = {r["agent_id"]: r for r in found if not r["fresh"]}
        moved: list[AgentStateRow] = []
        for agent, new in by_agent.items():
            first = new[0]
            now = latest.get(agent)
            stored: list[tuple[float, object, str]] = []
            if now is not None and (now["at"], now["event_id"]) < (first.at, first.event_id):
                stored = [(now["at"].timestamp(), now["event_id"], now["state"])]
            elif now is not None:  # late rows: among stored ones (rare; one look-up per agent)
                context = await conn.fetch(
                    _AGENT_CONTEXT_SQL, agent, first.at, first.event_id, [r.event_id for r in new]
                )
                stored = sorted((c["at"].timestamp(), c["event_id"], c["state"]) for c in context)
            state_deltas(deltas, agent, stored, [(r.at.timestamp(), r.event_id, r.state) for r in new])
            last = new[-1]
            if now is None or (now["at"], now["event_id"]) < (last.at, last.event_id):
                moved.append(last)
        if moved:
            await conn.execute(
                _AGENT_NOW_WRITE_SQL,
                *_columns([(r.agent_id, r.at, r.event_id, r.state, r.reason) for r in moved], 5),
            )
        return len(fresh)

    async def _ivr_visits(self, conn: asyncpg.Connection, batch: Batch, deltas: Deltas) -> int:
        visits = sorted(batch.ivr_visits, key=lambda r: (r.at, r.event_id))
        rows = [
            (r.at, r.event_id, r.contact_id, r.flow, r.version, r.node, r.result, r.seconds) for r in visits
        ]
        fresh = {r["event_id"] for r in await conn.fetch(_IVR_SQL, *_columns(rows, 8))}
        new = [v for v in visits if v.event_id in fresh]
        if not new:
            return 0
        contacts = sorted({v.contact_id for v in new})
        seen = {
            (r["contact_id"], r["node"])
            for r in await conn.fetch(_IVR_SEEN_SQL, contacts, [v.event_id for v in new])
        }
        for v in new:
            first = (v.contact_id, v.node) not in seen
            seen.add((v.contact_id, v.node))
            vector = (1, int(first), int(v.result in FAILED_RESULTS), v.seconds)
            Deltas._add(deltas.node, (v.flow, v.node, bucket_of(v.at.timestamp())), vector, +1)
        return len(new)

    async def _queue_stats(self, conn: asyncpg.Connection, batch: Batch) -> int:
        stats = [
            (r.queue_id, r.at, r.event_id, r.waiting, r.longest_wait_s, r.ready, json.dumps(r.agents))
            for r in sorted(batch.queue_stats, key=lambda r: r.at)
        ]
        fresh = {r["event_id"] for r in await conn.fetch(_QUEUE_STATS_SQL, *_columns(stats, 7))}
        latest: dict[str, tuple[object, ...]] = {}
        rollup: dict[tuple[str, float], list[int]] = {}
        for r in sorted(batch.queue_stats, key=lambda r: r.at):
            if r.event_id not in fresh:
                continue
            latest[r.queue_id] = (
                r.queue_id,
                r.at,
                r.waiting,
                r.longest_wait_s,
                r.ready,
                json.dumps(r.agents),
            )
            logged_in = sum(r.agents.values())
            acc = rollup.setdefault((r.queue_id, bucket_of(r.at.timestamp())), [0, 0, 0])
            acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + logged_in, max(acc[2], logged_in)
        if latest:
            await conn.execute(_QUEUE_NOW_SQL, *_columns(list(latest.values()), 6))
            rows = [(q, epoch(b), *acc) for (q, b), acc in sorted(rollup.items())]
            await conn.execute(STATS_ROLLUP_SQL, *_columns(rows, 5))
        return len(fresh)


async def write_rollups(conn: asyncpg.Connection, deltas: Deltas) -> None:
    """Add `deltas` to the stored rollups (a row not there yet starts at the delta): every table changed in
    one statement, an upsert each in its own WITH clause (one round trip instead of up to four)."""
    clauses: list[str] = []
    args: list[list[object]] = []
    for (table, keys, names), changes in zip(
        _ROLLUPS, (deltas.queue, deltas.agent, deltas.ivr, deltas.node), strict=True
    ):
        rows = Deltas.rows(changes)
        if not rows:
            continue
        counts = [_is_count(n) for n in names]
        records = []
        for key, vector in sorted(rows, key=lambda kv: (kv[0][-1], kv[0])):
            *ids, bucket = key
            values = [round(v) if c else v for v, c in zip(vector, counts, strict=True)]
            records.append((*ids, epoch(bucket), *values))
        clauses.append(f"w{len(clauses)} AS ({_rollup_sql(table, keys, names, len(args))})")
        args += _columns(records, len(records[0]))
    if clauses:
        await conn.execute(f"WITH {', '.join(clauses)} SELECT 1", *args)
    changed = Deltas.rows(deltas.agent)
    if changed:
        # The CSV lines of the half hours these buckets fall in (migration 0039), from the rollups as now
        # written: a separate statement, since a statement's parts do not see each other's writes.
        await conn.execute(
            _AGENT_DAY_SQL, [key[0] for key, _ in changed], [epoch(key[-1]) for key, _ in changed]
        )
