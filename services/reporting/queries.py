"""Reading the facts: interval reports per queue, agent and IVR flow, and the real-time view.

Every function takes a connection already inside `tenant_tx` (row-level security sees one tenant). The
real-time queue figures are the history query over "today so far" in the tenant's time zone: live and
history are one formula over the same rows, so they agree by construction (and a test checks it).

The service level (docs/reporting.md):
    SL = answered within T / (answered + abandoned after the short-abandon threshold)
with T = the queue's `sl_seconds` and the threshold its `short_abandon_seconds`. A contact counts in the
interval in which it was first queued.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

__all__ = [
    "INTERVALS",
    "SL_FORMULA",
    "ReportError",
    "agent_report",
    "ivr_report",
    "queue_report",
    "realtime_agents",
    "realtime_queues",
    "tenant_zone",
    "today_start",
]

SL_FORMULA = "answered within T / (answered + abandoned after the short-abandon threshold)"
# Fixed intervals in seconds, and calendar ones cut in the tenant's time zone.
INTERVALS: dict[str, int | str] = {
    "15m": 900,
    "30m": 1800,
    "60m": 3600,
    "1h": 3600,
    "day": "day",
    "week": "week",
    "month": "month",
}
MAX_BUCKETS = 10_000


class ReportError(ValueError):
    """A report asked for something that cannot be answered (bad interval, range, zone)."""


async def tenant_zone(conn: asyncpg.Connection) -> str:
    zone = await conn.fetchval("SELECT timezone FROM tenants WHERE id = current_tenant()")
    return str(zone or "UTC")


def today_start(now: datetime, zone: str) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _bucket_sql(column: str, interval: str, param: str = "$4") -> str:
    """SQL for the start of the bucket holding `column`. `param` is the bucket's length in seconds for a
    fixed interval, the time zone for a calendar one (`_bucket_arg` gives its value)."""
    kind = INTERVALS.get(interval)
    if kind is None:
        raise ReportError(f"interval {interval!r}: use one of {', '.join(INTERVALS)}")
    if isinstance(kind, int):
        return f"to_timestamp(floor(extract(epoch FROM {column}) / {param}::float8) * {param}::float8)"
    return f"(date_trunc('{kind}', {column} AT TIME ZONE {param}::text) AT TIME ZONE {param}::text)"


def _bucket_arg(interval: str, zone: str) -> float | str:
    kind = INTERVALS[interval]
    return float(kind) if isinstance(kind, int) else zone


def _check(start: datetime, end: datetime, interval: str, zone: str) -> int:
    if start.tzinfo is None or end.tzinfo is None:
        raise ReportError("from and to need a time zone (UTC when in doubt)")
    if end <= start:
        raise ReportError("`to` must be after `from`")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {zone!r}") from None
    kind = INTERVALS.get(interval)
    if kind is None:
        raise ReportError(f"interval {interval!r}: use one of {', '.join(INTERVALS)}")
    seconds = kind if isinstance(kind, int) else 86400
    if (end - start).total_seconds() / seconds > MAX_BUCKETS:
        raise ReportError(
            f"{interval} buckets over that range are more than {MAX_BUCKETS}: use a larger interval"
        )
    return kind if isinstance(kind, int) else 0


async def _plan_for_scans(conn: asyncpg.Connection) -> None:
    """The tenant filter is `current_tenant()`, unknown when the plan is made, so PostgreSQL estimates one
    row and joins the queues by nested loop (100,000 contacts x 20 queues took 2 s). A report scans many
    rows: hash joins and sorts in memory, for this transaction only."""
    await conn.execute("SET LOCAL enable_nestloop = off")
    await conn.execute("SET LOCAL work_mem = '64MB'")


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


_QUEUE_SQL = """
WITH c AS (
    SELECT {bucket} AS bucket, c.queue_id, c.queued_at, c.answered_at, c.abandon_wait_s, c.handle_s,
           c.transfers, q.sl_seconds, q.short_abandon_seconds, q.name
    FROM rpt_contacts c
    JOIN queues q ON q.id::text = c.queue_id
    WHERE c.queued_at >= $1 AND c.queued_at < $2
      AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
      AND c.month <= (date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC'))::date
      AND ($3::text[] IS NULL OR c.queue_id = ANY($3))
)
SELECT bucket, queue_id, min(name) AS queue_name, min(sl_seconds) AS sl_seconds,
       min(short_abandon_seconds) AS short_abandon_seconds,
       count(*) AS offered,
       count(answered_at) AS answered,
       count(*) FILTER (WHERE answered_at - queued_at <= make_interval(secs => sl_seconds)) AS answered_within,
       count(*) FILTER (WHERE answered_at IS NULL AND abandon_wait_s IS NOT NULL
                              AND abandon_wait_s < short_abandon_seconds) AS abandoned_short,
       count(*) FILTER (WHERE answered_at IS NULL AND abandon_wait_s IS NOT NULL
                              AND abandon_wait_s >= short_abandon_seconds) AS abandoned_long,
       sum(extract(epoch FROM answered_at - queued_at)) FILTER (WHERE answered_at IS NOT NULL) AS wait_sum,
       sum(handle_s) AS handle_sum, count(handle_s) AS handled,
       sum(transfers) AS transfers
FROM c GROUP BY bucket, queue_id ORDER BY bucket, queue_id
"""


# Agents logged in to the queue (routing's queue.stats: agents by state), averaged over the interval's
# snapshots. A snapshot is sent on each change, so this is an average of changes, not of time.
_LOGGED_IN_SQL = """
SELECT {bucket} AS bucket, queue_id, avg(total)::float8 AS logged_in, max(total) AS logged_in_max
FROM (SELECT at, queue_id, (SELECT coalesce(sum(value::int), 0) FROM jsonb_each_text(agents)) AS total
      FROM rpt_queue_stats WHERE at >= $1 AND at < $2 AND ($3::text[] IS NULL OR queue_id = ANY($3))) s
GROUP BY 1, 2
"""


def _queue_row(r: asyncpg.Record) -> dict[str, Any]:
    answered, long_ = r["answered"], r["abandoned_long"]
    return {
        "interval_start": r["bucket"],
        "queue_id": r["queue_id"],
        "queue_name": r["queue_name"],
        "offered": r["offered"],
        "answered": answered,
        "answered_within": r["answered_within"],
        "abandoned_short": r["abandoned_short"],
        "abandoned_long": long_,
        "service_level": _ratio(r["answered_within"], answered + long_),
        "asa_s": _ratio(float(r["wait_sum"] or 0), answered),
        "aht_s": _ratio(float(r["handle_sum"] or 0), r["handled"]),
        "transfers": int(r["transfers"] or 0),
        "sl_seconds": r["sl_seconds"],
        "short_abandon_seconds": r["short_abandon_seconds"],
    }


async def queue_report(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    zone: str | None = None,
    queue_ids: list[str] | None = None,
) -> dict[str, Any]:
    zone = zone or await tenant_zone(conn)
    _check(start, end, interval, zone)
    await _plan_for_scans(conn)
    sql = _QUEUE_SQL.format(bucket=_bucket_sql("c.queued_at", interval))
    rows = await conn.fetch(sql, start, end, queue_ids, _bucket_arg(interval, zone))
    staffing = {
        (r["bucket"], r["queue_id"]): r
        for r in await conn.fetch(
            _LOGGED_IN_SQL.format(bucket=_bucket_sql("at", interval)),
            start,
            end,
            queue_ids,
            _bucket_arg(interval, zone),
        )
    }
    out = []
    for r in rows:
        row = _queue_row(r)
        logged = staffing.get((r["bucket"], r["queue_id"]))
        row["logged_in_avg"] = logged["logged_in"] if logged else None
        row["logged_in_max"] = logged["logged_in_max"] if logged else None
        out.append(row)
    return {
        "formula": {
            "service_level": SL_FORMULA,
            "thresholds": "per queue: sl_seconds (T), short_abandon_seconds",
        },
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": out,
    }


# Agent state time within [start, end): each state row runs to the agent's next one (or to `now`), and the
# row in effect at `start` is found per agent with an index lookup.
_AGENT_SQL = """
WITH rows AS (
    SELECT agent_id, at, event_id, state FROM rpt_agent_states
    WHERE at >= $1 AND at < $2 AND ($3::text[] IS NULL OR agent_id = ANY($3))
    UNION ALL
    SELECT a.id::text, l.at, l.event_id, l.state FROM agents a
    CROSS JOIN LATERAL (
        SELECT at, event_id, state FROM rpt_agent_states s
        WHERE s.agent_id = a.id::text AND s.at < $1 ORDER BY s.at DESC, s.event_id DESC LIMIT 1) l
    WHERE $3::text[] IS NULL OR a.id::text = ANY($3)
), spans AS (
    SELECT agent_id, state, greatest(at, $1) AS since,
           least(coalesce(lead(at) OVER (PARTITION BY agent_id ORDER BY at, event_id), $5), $2, $5) AS until
    FROM rows
), cut AS (
    -- Split each span at bucket edges so each bucket gets its share.
    SELECT agent_id, state, greatest(since, b) AS s, least(until, b + make_interval(secs => $4)) AS u, b
    FROM spans, LATERAL (
        SELECT generate_series({first}, until - interval '1 microsecond', make_interval(secs => $4)) AS b
    ) g WHERE until > since
)
SELECT b AS bucket, agent_id, state, sum(extract(epoch FROM u - s)) AS seconds
FROM cut WHERE u > s GROUP BY b, agent_id, state
"""

_AGENT_CONTACTS_SQL = """
SELECT {bucket} AS bucket, agent_id, count(*) AS handled, sum(handle_s) AS handle_sum,
       count(handle_s) AS wrapped, sum(talk_s) AS talk_sum, sum(transfers) AS transfers
FROM rpt_contacts c
WHERE answered_at >= $1 AND answered_at < $2 AND agent_id IS NOT NULL
  AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
  AND c.month <= (date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC'))::date
  AND ($3::text[] IS NULL OR agent_id = ANY($3))
GROUP BY 1, 2
"""

WORKING = ("available", "reserved", "on_contact", "wrap_up")
BUSY = ("on_contact", "wrap_up")


async def agent_report(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    now: datetime,
    zone: str | None = None,
    agent_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Per agent and interval: handled, AHT (talk + hold + wrap-up), time per state, occupancy =
    (on contact + wrap-up) / (available + reserved + on contact + wrap-up)."""
    zone = zone or await tenant_zone(conn)
    seconds = _check(start, end, interval, zone)
    if not seconds:
        raise ReportError("agent reports take fixed intervals (15m, 30m, 60m)")
    await conn.execute("SET LOCAL work_mem = '64MB'")  # the per-state aggregate stays in memory
    sql = _AGENT_SQL.format(first=_bucket_sql("since", interval))
    state_rows = await conn.fetch(sql, start, end, agent_ids, float(seconds), now)
    sql = _AGENT_CONTACTS_SQL.format(bucket=_bucket_sql("answered_at", interval))
    contact_rows = await conn.fetch(sql, start, end, agent_ids, float(seconds))
    table: dict[tuple[datetime, str], dict[str, Any]] = {}

    def entry(bucket: datetime, agent: str) -> dict[str, Any]:
        key = (bucket, agent)
        if key not in table:
            table[key] = {
                "interval_start": bucket,
                "agent_id": agent,
                "handled": 0,
                "aht_s": None,
                "transfers": 0,
                "state_seconds": {},
                "occupancy": None,
            }
        return table[key]

    for r in state_rows:
        entry(r["bucket"], r["agent_id"])["state_seconds"][r["state"]] = float(r["seconds"])
    for r in contact_rows:
        e = entry(r["bucket"], r["agent_id"])
        e["handled"] = r["handled"]
        e["aht_s"] = _ratio(float(r["handle_sum"] or 0), r["wrapped"])
        e["transfers"] = int(r["transfers"] or 0)
    for e in table.values():
        states = e["state_seconds"]
        e["occupancy"] = _ratio(
            sum(states.get(s, 0.0) for s in BUSY), sum(states.get(s, 0.0) for s in WORKING)
        )
    rows = sorted(table.values(), key=lambda e: (e["interval_start"], e["agent_id"]))
    return {
        "formula": {
            "aht": "(talk + hold + wrap-up) / contacts wrapped up",
            "occupancy": "(on_contact + wrap_up) / (available + reserved + on_contact + wrap_up)",
        },
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": rows,
    }


_IVR_SQL = """
WITH c AS (
    SELECT {bucket} AS bucket, ivr_flow, ivr_outcome FROM rpt_contacts c
    WHERE ivr_flow IS NOT NULL AND ($3::text[] IS NULL OR ivr_flow = ANY($3)) AND coalesce(arrived_at, queued_at) >= $1 AND coalesce(arrived_at, queued_at) < $2
      AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
      AND c.month <= (date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC'))::date
)
SELECT bucket, ivr_flow AS flow, count(*) AS completed,
       count(*) FILTER (WHERE ivr_outcome = 'self_served') AS self_served,
       count(*) FILTER (WHERE ivr_outcome = 'transferred') AS transferred,
       count(*) FILTER (WHERE ivr_outcome = 'abandoned') AS abandoned
FROM c GROUP BY 1, 2 ORDER BY 1, 2
"""

_NODES_SQL = """
SELECT {bucket} AS bucket, flow, node, count(DISTINCT contact_id) AS reached, count(*) AS visits,
       count(*) FILTER (WHERE result IN ('timeout', 'invalid', 'error')) AS failed, avg(seconds) AS avg_s
FROM rpt_ivr_visits WHERE at >= $1 AND at < $2 AND ($3::text[] IS NULL OR flow = ANY($3))
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


async def ivr_report(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    zone: str | None = None,
    flows: list[str] | None = None,
) -> dict[str, Any]:
    zone = zone or await tenant_zone(conn)
    _check(start, end, interval, zone)
    arg = _bucket_arg(interval, zone)
    sql = _IVR_SQL.format(bucket=_bucket_sql("coalesce(arrived_at, queued_at)", interval))
    flow_rows = await conn.fetch(sql, start, end, flows, arg)
    nodes = await conn.fetch(_NODES_SQL.format(bucket=_bucket_sql("at", interval)), start, end, flows, arg)
    by_flow: dict[tuple[datetime, str], dict[str, Any]] = {}
    for r in flow_rows:
        by_flow[(r["bucket"], r["flow"])] = {
            "interval_start": r["bucket"],
            "flow": r["flow"],
            "completed": r["completed"],
            "self_served": r["self_served"],
            "transferred": r["transferred"],
            "abandoned": r["abandoned"],
            "containment": _ratio(r["self_served"], r["completed"]),
            "nodes": [],
        }
    for r in nodes:
        row = by_flow.setdefault(
            (r["bucket"], r["flow"]),
            {
                "interval_start": r["bucket"],
                "flow": r["flow"],
                "completed": 0,
                "self_served": 0,
                "transferred": 0,
                "abandoned": 0,
                "containment": None,
                "nodes": [],
            },
        )
        row["nodes"].append(
            {
                "node": r["node"],
                "reached": r["reached"],
                "visits": r["visits"],
                "failed": r["failed"],
                "avg_s": float(r["avg_s"] or 0),
            }
        )
    return {
        "formula": {
            "containment": "self_served / completed",
            "reach": "distinct contacts that left the node",
        },
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": [by_flow[k] for k in sorted(by_flow)],
    }


# -- real time -------------------------------------------------------------------------------------------


async def realtime_queues(conn: asyncpg.Connection, now: datetime) -> dict[str, Any]:
    """Per queue: waiting now, longest wait, agents by state (routing's latest queue.stats) and offered,
    answered, abandoned, SL and ASA since midnight in the tenant's time zone (the history query)."""
    zone = await tenant_zone(conn)
    start = today_start(now, zone)
    today = await queue_report(conn, start, now + timedelta(microseconds=1), "day", zone=zone)
    totals = {row["queue_id"]: row for row in today["rows"]}
    snapshot = {
        r["queue_id"]: r
        for r in await conn.fetch(
            "SELECT queue_id, at, waiting, longest_wait_s, ready, agents FROM rpt_queue_now"
        )
    }
    queues = await conn.fetch(
        "SELECT id::text, name, sl_seconds, sl_percent, short_abandon_seconds FROM queues ORDER BY name"
    )
    out = []
    for q in queues:
        snap, day = snapshot.get(q["id"]), totals.get(q["id"], {})
        longest = 0.0
        if snap is not None and snap["waiting"]:
            longest = float(snap["longest_wait_s"]) + max(0.0, (now - snap["at"]).total_seconds())
        out.append(
            {
                "queue_id": q["id"],
                "queue_name": q["name"],
                "waiting": snap["waiting"] if snap else 0,
                "longest_wait_s": longest,
                "agents": _json(snap["agents"]) if snap else {},
                "ready": snap["ready"] if snap else 0,
                "snapshot_at": snap["at"] if snap else None,
                "offered": day.get("offered", 0),
                "answered": day.get("answered", 0),
                "abandoned_short": day.get("abandoned_short", 0),
                "abandoned_long": day.get("abandoned_long", 0),
                "service_level": day.get("service_level"),
                "asa_s": day.get("asa_s"),
                "sl_seconds": q["sl_seconds"],
                "sl_target": q["sl_percent"] / 100,  # the queue's own target, for its service level
                "short_abandon_seconds": q["short_abandon_seconds"],
            }
        )
    return {"formula": today["formula"], "since": start, "at": now, "timezone": zone, "queues": out}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


_AGENTS_NOW_SQL = """
SELECT a.id::text AS agent_id, a.name, a.email, l.state, l.reason, l.at AS since,
       cur.contact_id AS current_contact, cur.queue_id AS current_queue,
       coalesce(d.handled, 0) AS handled, d.handle_sum, d.wrapped
FROM agents a
LEFT JOIN LATERAL (
    SELECT state, reason, at FROM rpt_agent_states s WHERE s.agent_id = a.id::text
    ORDER BY s.at DESC, s.event_id DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (
    SELECT contact_id, queue_id FROM rpt_contacts c
    WHERE c.agent_id = a.id::text AND c.answered_at >= $1::timestamptz - interval '1 day' AND c.ended_at IS NULL
      AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
    ORDER BY c.answered_at DESC LIMIT 1) cur ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS handled, sum(handle_s) AS handle_sum, count(handle_s) AS wrapped FROM rpt_contacts c
    WHERE c.agent_id = a.id::text AND c.answered_at >= $1 AND c.answered_at < $2
      AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date) d ON true
ORDER BY a.name, a.id
"""


async def realtime_agents(conn: asyncpg.Connection, now: datetime) -> dict[str, Any]:
    """Per agent: state, reason, time in state, current contact, handled today, AHT today."""
    zone = await tenant_zone(conn)
    start = today_start(now, zone)
    rows = await conn.fetch(_AGENTS_NOW_SQL, start, now + timedelta(microseconds=1))
    agents = [
        {
            "agent_id": r["agent_id"],
            "name": r["name"],
            "email": r["email"],
            "state": r["state"] or "logged_out",
            "reason": r["reason"],
            "since": r["since"],
            "time_in_state_s": max(0.0, (now - r["since"]).total_seconds()) if r["since"] else None,
            "current_contact": str(r["current_contact"]) if r["current_contact"] else None,
            "current_queue": r["current_queue"],
            "handled_today": r["handled"],
            "aht_s": _ratio(float(r["handle_sum"] or 0), r["wrapped"] or 0),
        }
        for r in rows
    ]
    return {"since": start, "at": now, "timezone": zone, "agents": agents}
