"""Planning from history: the forecast of the next days per interval, the what-if replay of a tenant's own
traffic, and the per-site report. Each takes a connection inside `tenant_tx`; the staffing math is the SDK's
(switchboard.staffing), the same the CLI uses offline.

Forecast (docs/reporting.md): an interval's offered contacts are the mean of the same local weekday and
time over the last `weeks` complete weeks (fewer when the queue is younger: weeks before its first contact
do not count as quiet weeks); its AHT is the handle time summed over those same intervals / contacts
handled (the whole history's AHT where they handled none; 180 s with no history at all). Erlang C on them
gives the agents needed for the target.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from switchboard import staffing

from .queries import SL_FORMULA, ReportError, _check, agent_report, intervals, queue_report, tenant_zone

__all__ = ["DEFAULT_AHT_S", "forecast", "replay", "site_report"]

DEFAULT_AHT_S = 180.0
MAX_FORECAST_DAYS = 31
MAX_HISTORY_WEEKS = 26
FORECAST_METHOD = (
    "offered: mean of the same local weekday and time over the last complete weeks (from the queue's first"
    " contact); AHT: handle time / contacts handled in those intervals; agents: Erlang C for the target"
)

_HISTORY_SQL = """
SELECT m.interval_start AS bucket, sum(offered) AS offered, sum(handle_sum) AS handle_sum,
       sum(handled) AS handled
FROM rpt_queue_rollup r JOIN unnest($3::timestamptz[], $4::timestamptz[]) AS m(bucket, interval_start)
    ON m.bucket = r.bucket
WHERE r.queue_id = $5 AND r.bucket >= $1 AND r.bucket < $2
GROUP BY 1 HAVING sum(offered) > 0
"""

_QUEUE_SQL = "SELECT id::text AS id, name, sl_percent, sl_seconds, short_abandon_seconds FROM queues WHERE id::text = $1"


async def _queue(conn: asyncpg.Connection, queue_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(_QUEUE_SQL, queue_id)
    if row is None:
        raise LookupError(f"no queue {queue_id}")
    return row


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _slot(moment: datetime, zone: ZoneInfo) -> tuple[int, int, int]:
    local = moment.astimezone(zone)
    return local.weekday(), local.hour, local.minute


async def forecast(
    conn: asyncpg.Connection,
    queue_id: str,
    *,
    now: datetime,
    first_day: date | None = None,
    days: int = 7,
    interval: str = "30m",
    weeks: int = 8,
    target: tuple[int, int] | None = None,
    shrinkage: float = 0.0,
) -> dict[str, Any]:
    """Offered, AHT and agents needed per interval of `days` days from `first_day` (default tomorrow in the
    tenant's time zone)."""
    if interval not in ("15m", "30m", "60m"):
        raise ReportError("a forecast takes 15m, 30m or 60m intervals")
    if not 1 <= days <= MAX_FORECAST_DAYS:
        raise ReportError(f"days: 1 to {MAX_FORECAST_DAYS}")
    if not 1 <= weeks <= MAX_HISTORY_WEEKS:
        raise ReportError(f"weeks: 1 to {MAX_HISTORY_WEEKS}")
    if not 0 <= shrinkage < 1:
        raise ReportError("shrinkage: a share from 0 to below 1")
    queue = await _queue(conn, queue_id)
    percent, seconds = target or (queue["sl_percent"], queue["sl_seconds"])
    if not 0 < percent < 100:
        raise ReportError("target: a service level from 1 to 99 percent")
    zone_name = await tenant_zone(conn)
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    first_day = first_day or today + timedelta(days=1)
    history_end = _local_midnight(today, zone)  # complete days only
    history_start = _local_midnight(today - timedelta(days=7 * weeks), zone)
    rows = await conn.fetch(
        _HISTORY_SQL,
        history_start,
        history_end,
        *intervals(history_start, history_end, interval, zone_name),
        queue_id,
    )
    weeks_used = 0
    if rows:
        first = min(r["bucket"] for r in rows)
        weeks_used = min(weeks, max(1, math.ceil((history_end - first) / timedelta(days=7))))
    offered: dict[tuple[int, int, int], float] = defaultdict(float)
    handle: dict[tuple[int, int, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    total_handle = total_handled = 0.0
    for r in rows:
        key = _slot(r["bucket"], zone)
        offered[key] += r["offered"]
        handle[key][0] += float(r["handle_sum"])
        handle[key][1] += r["handled"]
        total_handle += float(r["handle_sum"])
        total_handled += r["handled"]
    overall_aht = total_handle / total_handled if total_handled else DEFAULT_AHT_S
    period_s = {"15m": 900, "30m": 1800, "60m": 3600}[interval]
    start = _local_midnight(first_day, zone)
    end = _local_midnight(first_day + timedelta(days=days), zone)
    _, starts = intervals(start, end, interval, zone_name)
    out = []
    for at in sorted(set(starts)):
        key = _slot(at, zone)
        calls = offered.get(key, 0.0) / weeks_used if weeks_used else 0.0
        summed, handled = handle.get(key, (0.0, 0.0))
        aht = summed / handled if handled else overall_aht
        load = staffing.traffic_erlangs(calls, period_s, aht)
        plan = staffing.agents_for_target(load, aht, percent / 100, seconds)
        out.append(
            {
                "interval_start": at,
                "offered": round(calls, 2),
                "aht_s": round(aht, 1),
                "load_erlangs": round(load, 3),
                "agents": plan.agents,
                "scheduled": staffing.scheduled_with_shrinkage(plan.agents, shrinkage),
                "service_level": round(plan.service_level, 3) if plan.agents else None,
            }
        )
    return {
        "queue_id": queue["id"],
        "queue_name": queue["name"],
        "method": FORECAST_METHOD,
        "history": {"from": history_start, "to": history_end, "weeks_used": weeks_used},
        "target": {"percent": percent, "seconds": seconds},
        "shrinkage": shrinkage,
        "interval": interval,
        "timezone": zone_name,
        "rows": out,
    }


_CONTACTS_SQL = """
SELECT queued_at, answered_at, abandon_wait_s, handle_s, talk_s FROM rpt_contacts
WHERE queue_id = $1 AND queued_at >= $2 AND queued_at < $3
  AND month >= (date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
  AND month <= (date_trunc('month', $3::timestamptz AT TIME ZONE 'UTC'))::date
ORDER BY queued_at
"""
MAX_REPLAY_CONTACTS = 200_000


async def replay(
    conn: asyncpg.Connection, queue_id: str, start: datetime, end: datetime, agents: list[int]
) -> dict[str, Any]:
    """The queue's own contacts of [start, end) (their arrival times and handle times) replayed through a
    first-come first-served queue with each number of agents in `agents`; a caller who hung up is given
    the patience they showed, one who was answered waits as long as it takes. Figures by the one
    service-level formula, with the queue's thresholds, beside what really happened."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ReportError("from and to: a range with time zones, `to` after `from`")
    if end - start > timedelta(days=31):
        raise ReportError("a replay covers at most 31 days")
    if not agents or any(not 1 <= n <= 10_000 for n in agents) or len(agents) > 50:
        raise ReportError("agents: 1 to 50 numbers from 1 to 10000")
    queue = await _queue(conn, queue_id)
    rows = await conn.fetch(_CONTACTS_SQL, queue_id, start, end)
    if len(rows) > MAX_REPLAY_CONTACTS:
        raise ReportError(f"more than {MAX_REPLAY_CONTACTS} contacts: replay a shorter range")
    sl_s, short_s = float(queue["sl_seconds"]), float(queue["short_abandon_seconds"])
    handles = [float(r["handle_s"] or r["talk_s"] or 0.0) for r in rows]
    known = [h for h in handles if h > 0]
    fallback = sum(known) / len(known) if known else DEFAULT_AHT_S
    arrivals = [r["queued_at"].timestamp() for r in rows]
    handle_s = [h if h > 0 else fallback for h in handles]
    patience = [
        float(r["abandon_wait_s"])
        if r["answered_at"] is None and r["abandon_wait_s"] is not None
        else math.inf
        for r in rows
    ]
    results = []
    for n in sorted(set(agents)):
        sim = staffing.simulate(arrivals, handle_s, n, sl_s, patience_s=patience, short_abandon_s=short_s)
        results.append(
            {
                "agents": n,
                "offered": sim.offered,
                "answered": sim.answered,
                "answered_within": sim.answered_within,
                "abandoned_short": sim.abandoned - sim.abandoned_long,
                "abandoned_long": sim.abandoned_long,
                "service_level": _sl(sim.answered_within, sim.answered + sim.abandoned_long),
                "asa_s": round(sim.asa_s, 3),
                "occupancy": round(sim.occupancy, 3),
            }
        )
    answered = sum(1 for r in rows if r["answered_at"] is not None)
    within = sum(
        1
        for r in rows
        if r["answered_at"] is not None and (r["answered_at"] - r["queued_at"]).total_seconds() <= sl_s
    )
    long_ = sum(
        1
        for r in rows
        if r["answered_at"] is None and r["abandon_wait_s"] is not None and r["abandon_wait_s"] >= short_s
    )
    return {
        "queue_id": queue["id"],
        "queue_name": queue["name"],
        "from": start,
        "to": end,
        "sl_seconds": queue["sl_seconds"],
        "short_abandon_seconds": queue["short_abandon_seconds"],
        "formula": {"service_level": SL_FORMULA},
        "method": "the queue's own arrivals and handle times, first come first served; a caller who hung up"
        " waits as long as they did, one who was answered as long as it takes",
        "actual": {
            "offered": len(rows),
            "answered": answered,
            "answered_within": within,
            "abandoned_long": long_,
            "service_level": _sl(within, answered + long_),
        },
        "rows": results,
    }


def _sl(within: int, denominator: int) -> float | None:
    return round(within / denominator, 4) if denominator else None


async def site_report(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    now: datetime,
    zone: str | None = None,
    site_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Per site and interval: the queue figures of the site's queues (each contact classified with its own
    queue's thresholds) and the agent figures of the site's agents. Queues and agents with no site are
    reported under `site_id` null."""
    zone = zone or await tenant_zone(conn)
    _check(start, end, interval, zone)
    sites = {r["id"]: r["name"] for r in await conn.fetch("SELECT id::text AS id, name FROM sites")}
    queue_site = {
        r["id"]: r["site"]
        for r in await conn.fetch("SELECT id::text AS id, site_id::text AS site FROM queues")
    }
    agent_site = {
        r["id"]: r["site"]
        for r in await conn.fetch("SELECT id::text AS id, site_id::text AS site FROM agents")
    }
    queues = await queue_report(conn, start, end, interval, zone=zone)
    agents = await agent_report(conn, start, end, interval, now=now, zone=zone)
    table: dict[tuple[datetime, str | None], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in queues["rows"]:
        acc = table[(r["interval_start"], queue_site.get(r["queue_id"]))]
        for key in (
            "offered",
            "answered",
            "answered_within",
            "abandoned_short",
            "abandoned_long",
            "transfers",
        ):
            acc[key] += r[key]
        acc["wait_sum"] += (r["asa_s"] or 0.0) * r["answered"]
        acc["handle_sum"] += (r["aht_s"] or 0.0) * r["handled"]
        acc["handled"] += r["handled"]
    for r in agents["rows"]:
        acc = table[(r["interval_start"], agent_site.get(r["agent_id"]))]
        states = r["state_seconds"]
        busy = states.get("on_contact", 0.0) + states.get("wrap_up", 0.0)
        acc["busy_s"] += busy
        acc["working_s"] += busy + states.get("available", 0.0) + states.get("reserved", 0.0)
        acc["agents"] += 1
    rows = []
    for (bucket, site), acc in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if site_ids is not None and site not in site_ids:
            continue
        answered, long_ = int(acc["answered"]), int(acc["abandoned_long"])
        rows.append(
            {
                "interval_start": bucket,
                "site_id": site,
                "site_name": sites.get(site) if site else None,
                "offered": int(acc["offered"]),
                "answered": answered,
                "answered_within": int(acc["answered_within"]),
                "abandoned_short": int(acc["abandoned_short"]),
                "abandoned_long": long_,
                "service_level": acc["answered_within"] / (answered + long_) if answered + long_ else None,
                "asa_s": round(acc["wait_sum"] / answered, 3) if answered else None,
                "aht_s": round(acc["handle_sum"] / acc["handled"], 3) if acc["handled"] else None,
                "transfers": int(acc["transfers"]),
                "agents": int(acc["agents"]),
                "occupancy": acc["busy_s"] / acc["working_s"] if acc["working_s"] else None,
            }
        )
    return {
        "formula": {
            **queues["formula"],
            "occupancy": "(on_contact + wrap_up) / (available + reserved + on_contact + wrap_up)",
        },
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": rows,
    }
