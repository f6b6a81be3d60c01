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

import bisect
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from .rollups import BUCKET_S, STATES

__all__ = [
    "AGENT_CSV_COLUMNS",
    "AGENT_FORMULA",
    "AGENT_PAGE_DEFAULT",
    "AGENT_PAGE_MAX",
    "INTERVALS",
    "SL_FORMULA",
    "ReportError",
    "agent_csv",
    "agent_page",
    "agent_report",
    "check_agent_csv",
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


def intervals(
    start: datetime, end: datetime, interval: str, zone: str
) -> tuple[list[datetime], list[datetime]]:
    """Each 15-minute rollup bucket in [start, end) and the start of the report interval holding it, cut in
    the tenant's time zone (every zone's offset is a multiple of 15 minutes, so a bucket never straddles
    two intervals). Reports join the rollups to this map: the zone arithmetic is done once per bucket
    here, not once per row in SQL."""
    kind = INTERVALS[interval]
    tz = ZoneInfo(zone)
    buckets: list[datetime] = []
    starts: list[datetime] = []
    at = _aligned(start)
    step = timedelta(seconds=BUCKET_S)
    cache: dict[tuple[int, int, int], datetime] = {}
    while at < end:
        local = at.astimezone(tz)
        if isinstance(kind, int):  # 15, 30 or 60 minutes: a part of the local hour
            first = at - timedelta(minutes=local.minute % (kind // 60))
        else:
            day = local.date()
            if kind == "week":
                day = day - timedelta(days=day.weekday())
            elif kind == "month":
                day = day.replace(day=1)
            key = (day.year, day.month, day.day)
            if key not in cache:
                cache[key] = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
            first = cache[key]
        buckets.append(at)
        starts.append(first)
        at += step
    return buckets, starts


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


def _aligned(start: datetime) -> datetime:
    """Reports sum whole 15-minute rollup buckets: the range starts at the bucket holding `from`."""
    ts = start.timestamp()
    return datetime.fromtimestamp(ts - ts % BUCKET_S, UTC)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _ms(seconds: float | None) -> float | None:
    """Seconds to the millisecond: sums of floats taken in another order differ in their last bits."""
    return None if seconds is None else round(seconds, 3)


# Summed per interval first, then joined to the tenant's few queues (a join per rollup row was a nested
# loop over every queue for each of them).
_QUEUE_SQL = """
WITH g AS (
SELECT m.interval_start AS bucket, r.queue_id,
       sum(offered) AS offered, sum(answered) AS answered, sum(answered_within) AS answered_within,
       sum(abandoned_short) AS abandoned_short, sum(abandoned_long) AS abandoned_long,
       sum(wait_sum) AS wait_sum, sum(handle_sum) AS handle_sum, sum(handled) AS handled,
       sum(transfers) AS transfers, sum(repeat_24h) AS repeat_24h, sum(repeat_7d) AS repeat_7d,
       sum(survey_n) AS survey_n, sum(survey_sum) AS survey_sum,
       sum(stats_n) AS stats_n, sum(logged_in_sum) AS logged_in_sum, max(logged_in_max) AS logged_in_max
FROM rpt_queue_rollup r JOIN unnest($4::timestamptz[], $5::timestamptz[]) AS m(bucket, interval_start)
    ON m.bucket = r.bucket
WHERE r.bucket >= $1 AND r.bucket < $2 AND ($3::text[] IS NULL OR r.queue_id = ANY($3))
GROUP BY 1, 2 HAVING sum(offered) > 0
)
SELECT g.*, q.name AS queue_name, q.sl_seconds, q.short_abandon_seconds
FROM g JOIN queues q ON q.id::text = g.queue_id ORDER BY 1, 2
"""


def _queue_row(r: asyncpg.Record) -> dict[str, Any]:
    answered, long_, handled = r["answered"], r["abandoned_long"], r["handled"]
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
        "asa_s": _ms(_ratio(float(r["wait_sum"]), answered)),
        "aht_s": _ms(_ratio(float(r["handle_sum"]), handled)),
        "transfers": int(r["transfers"]),
        "handled": r["handled"],
        "fcr_24h": _ratio(answered - r["repeat_24h"], answered),
        "fcr_7d": _ratio(answered - r["repeat_7d"], answered),
        "surveys": r["survey_n"],
        "survey_avg": _ms(_ratio(float(r["survey_sum"]), r["survey_n"])),
        "sl_seconds": r["sl_seconds"],
        "short_abandon_seconds": r["short_abandon_seconds"],
        "logged_in_avg": _ratio(float(r["logged_in_sum"]), r["stats_n"]),
        "logged_in_max": r["logged_in_max"] if r["stats_n"] else None,
    }


QUEUE_FORMULA = {
    "service_level": SL_FORMULA,
    "thresholds": "per queue: sl_seconds (T), short_abandon_seconds",
    "fcr": "answered contacts whose caller did not call again within 24 h (7 days) / answered",
    "survey_avg": "mean of the survey answers, each scaled to 0-1: (score - min) / (max - min)",
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
    await conn.execute("SET LOCAL work_mem = '64MB'")  # the aggregate stays in memory
    rows = await conn.fetch(
        _QUEUE_SQL, _aligned(start), end, queue_ids, *intervals(start, end, interval, zone)
    )
    return {
        "formula": QUEUE_FORMULA,
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": [_queue_row(r) for r in rows],
    }


_STATE_SUMS = ", ".join(f"sum({s}_s) AS {s}_s" for s in STATES)
_OPEN_STATES = ", ".join(f"CASE WHEN state = '{s}' THEN secs ELSE 0 END" for s in STATES)

# The rollups hold every closed span; each agent's latest state is open until `now` ($4) and is cut into
# 15-minute pieces here, so the report's own bucketing applies to both alike.
_AGENT_AGG = """
WITH open AS (
    SELECT agent_id, state, greatest(at, $1::timestamptz) AS s, least($2::timestamptz, $4::timestamptz) AS u
    FROM {latest} WHERE at < least($2::timestamptz, $4::timestamptz) AND state = ANY($5::text[])
), pieces AS (
    SELECT agent_id, state, b, extract(epoch FROM least(u, b + interval '15 minutes') - greatest(s, b)) AS secs
    FROM open, LATERAL generate_series(
        to_timestamp(floor(extract(epoch FROM s) / 900) * 900), u - interval '1 microsecond',
        interval '15 minutes') AS b
    WHERE u > s
), raw AS (
    {rollups}
    UNION ALL
    SELECT b, agent_id, 0, 0, 0, 0, 0, {open_states} FROM pieces
), agg AS (
SELECT m.interval_start AS bucket, agent_id, sum(handled) AS handled, sum(handle_sum) AS handle_sum,
       sum(wrapped) AS wrapped, sum(talk_sum) AS talk_sum, sum(transfers) AS transfers, {state_sums}
FROM raw r JOIN unnest($6::timestamptz[], $7::timestamptz[]) AS m(bucket, interval_start) ON m.bucket = r.bucket
GROUP BY 1, 2
)
"""
_STATE_COLUMNS = ", ".join(f"{s}_s" for s in STATES)
# Every agent's rollups of the range (the primary key leads with the bucket), or a page's agents' (one
# index seek each on rpt_agent_rollup_by_agent; OFFSET 0 keeps the planner from turning the seeks into a
# scan of the whole range, which its estimates under row-level security would favour).
_ALL_ROLLUPS = f"""SELECT bucket, agent_id, handled, handle_sum, wrapped, talk_sum, transfers, {_STATE_COLUMNS}
    FROM rpt_agent_rollup
    WHERE bucket >= $1 AND bucket < $2 AND ($3::text[] IS NULL OR agent_id = ANY($3))"""
_PAGE_ROLLUPS = f"""SELECT r.* FROM unnest($3::text[]) AS p(agent_id) CROSS JOIN LATERAL (
        SELECT bucket, agent_id, handled, handle_sum, wrapped, talk_sum, transfers, {_STATE_COLUMNS}
        FROM rpt_agent_rollup WHERE agent_id = p.agent_id AND bucket >= $1 AND bucket < $2 OFFSET 0) r"""
# Each agent's latest state: every agent's (filtered by $3 when given), or a page's, one seek each on the
# primary key (`agent_id = ANY($3)` read the whole table and compared each row with the whole page).
_ALL_LATEST = "(SELECT * FROM rpt_agent_now WHERE $3::text[] IS NULL OR agent_id = ANY($3)) n"
_PAGE_LATEST = """(SELECT n.* FROM unnest($3::text[]) AS p(agent_id) CROSS JOIN LATERAL (
        SELECT * FROM rpt_agent_now WHERE agent_id = p.agent_id OFFSET 0) n) n"""
_AGENT_SQL = (
    _AGENT_AGG.format(
        latest=_ALL_LATEST, rollups=_ALL_ROLLUPS, open_states=_OPEN_STATES, state_sums=_STATE_SUMS
    )
    + "SELECT * FROM agg ORDER BY 1, 2"
)

# The same figures as `agent_report`'s loop below, built by PostgreSQL as the text of one JSON array (a
# page of agents, ordered by agent then interval): rounded to the millisecond first, so occupancy comes
# from the rounded seconds exactly as in the loop; a state under half a millisecond is left out. The text
# is concatenated rather than built with json_build_object and json_strip_nulls: those cost 25-50 us a row
# here (the strip parses each object again), as much as everything else in the page. A float8's text is
# its shortest exact form, a valid JSON number; to_json quotes the id and the ISO 8601 time.
# Rounded in float8: a page builds 30 % faster than through numeric, with the same values (compared on
# 34,000 rows of the benchmark, and in the tests).
_ROUNDED = ", ".join(f"CASE WHEN {s}_s > 5e-4 THEN round({s}_s * 1000) / 1000 END AS {s}" for s in STATES)
_AGENT_JSON_SQL = (
    _AGENT_AGG.format(
        latest=_PAGE_LATEST, rollups=_PAGE_ROLLUPS, open_states=_OPEN_STATES, state_sums=_STATE_SUMS
    )
    + """, rounded AS (
    SELECT bucket, agent_id, handled, handle_sum, wrapped, transfers, {rounded} FROM agg
), fig AS (
    SELECT *, coalesce(on_contact, 0) + coalesce(wrap_up, 0) AS busy FROM rounded
    WHERE handled <> 0 OR {any_state}
)
SELECT '[' || coalesce(string_agg(
    '{{"interval_start":' || to_json(bucket)::text || ',"agent_id":' || to_json(agent_id)::text
    || ',"handled":' || handled
    || ',"aht_s":' || coalesce((round(handle_sum / nullif(wrapped, 0) * 1000) / 1000)::text, 'null')
    || ',"transfers":' || transfers
    || ',"state_seconds":{{' || concat_ws(',', {state_pairs}) || '}}'
    || ',"occupancy":' || coalesce((busy / nullif(busy + coalesce(available, 0) + coalesce(reserved, 0), 0))::text, 'null')
    || '}}', ',' ORDER BY agent_id, bucket), '') || ']'
FROM fig
""".format(
        rounded=_ROUNDED,
        any_state=" OR ".join(f"{s} IS NOT NULL" for s in STATES),
        state_pairs=", ".join(f"'\"{s}\":' || {s}" for s in STATES),
    )
)

AGENT_PAGE_DEFAULT = 500
AGENT_PAGE_MAX = 2000

# A page's agents: the first `limit + 1` ids after the cursor ($3) that have rollups in the range or an open
# state over it. The rollups' agents are walked in id order one index seek at a time (a DISTINCT over the
# range would read the whole day's rows for every page); each step's second seek asks whether the agent has
# a bucket in the range. The walk stops once `limit + 1` are found, so a page costs its own agents.
_PAGE_AGENTS_SQL = """
WITH RECURSIVE walk(agent_id, hit, hits) AS (
    SELECT $3::text, false, 0
  UNION ALL
    SELECT n.agent_id, n.hit, w.hits + n.hit::int FROM walk w, LATERAL (
        SELECT m.agent_id, coalesce((SELECT true FROM rpt_agent_rollup r
                                     WHERE r.agent_id = m.agent_id AND r.bucket >= $1 AND r.bucket < $2
                                     LIMIT 1), false) AS hit
        FROM (SELECT min(r.agent_id) AS agent_id FROM rpt_agent_rollup r WHERE r.agent_id > w.agent_id) m
        WHERE m.agent_id IS NOT NULL
    ) n
    WHERE w.hits <= $4
), open AS (
    SELECT agent_id FROM rpt_agent_now
    WHERE agent_id > $3 AND at < least($2::timestamptz, $5::timestamptz)
      AND $1 < least($2::timestamptz, $5::timestamptz) AND state = ANY($6::text[])
    ORDER BY agent_id LIMIT $4 + 1
)
SELECT agent_id FROM walk WHERE hit UNION SELECT agent_id FROM open ORDER BY agent_id LIMIT $4 + 1
"""

AGENT_FORMULA = {
    "aht": "(talk + hold + wrap-up) / contacts wrapped up",
    "occupancy": "(on_contact + wrap_up) / (available + reserved + on_contact + wrap_up)",
}


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
    (on contact + wrap-up) / (available + reserved + on contact + wrap-up). Every agent at once, as
    Python rows (the site report sums them); the API serves `agent_page`."""
    zone = zone or await tenant_zone(conn)
    _check(start, end, interval, zone)
    await conn.execute("SET LOCAL work_mem = '64MB'")  # the aggregate stays in memory
    records = await conn.fetch(
        _AGENT_SQL, _aligned(start), end, agent_ids, now, list(STATES), *intervals(start, end, interval, zone)
    )
    # Ten thousand agents a day make 170,000 rows: this loop is most of the report's time, hence the
    # positional unpacking (columns as selected: bucket, agent, 5 sums, then STATES in order).
    rows = []
    for bucket, agent, handled, handle_sum, wrapped, _talk, transfers, *seconds in records:
        states = {s: round(v, 3) for s, v in zip(STATES, seconds, strict=True) if v > 5e-4}
        if not states and not handled:
            continue  # a rollup row whose changes cancelled out
        busy = states.get("on_contact", 0.0) + states.get("wrap_up", 0.0)
        working = busy + states.get("available", 0.0) + states.get("reserved", 0.0)
        rows.append(
            {
                "interval_start": bucket,
                "agent_id": agent,
                "handled": int(handled),
                "aht_s": round(handle_sum / wrapped, 3) if wrapped else None,
                "transfers": int(transfers),
                "state_seconds": states,
                "occupancy": busy / working if working else None,
            }
        )
    return {
        "formula": AGENT_FORMULA,
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "rows": rows,
    }


async def agent_page(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    now: datetime,
    zone: str | None = None,
    agent_ids: list[str] | None = None,
    cursor: str | None = None,
    limit: int = AGENT_PAGE_DEFAULT,
) -> tuple[dict[str, Any], str]:
    """One page of the agent report (docs/reporting.md, "Agent report pages"): up to `limit` agents after
    `cursor` in id order, each with all its intervals. Returns the report's head (formula, range, zone, and
    `page`: limit, agents, next_cursor or None on the last page) and its rows as one JSON array built by
    PostgreSQL, ordered by agent then interval; the same figures as `agent_report`."""
    zone = zone or await tenant_zone(conn)
    _check(start, end, interval, zone)
    if not 1 <= limit <= AGENT_PAGE_MAX:
        raise ReportError(f"limit: a page holds 1 to {AGENT_PAGE_MAX} agents")
    after = cursor or ""
    if agent_ids is not None:
        agents = sorted({a for a in agent_ids if a > after})[: limit + 1]
    else:
        agents = [
            r["agent_id"]
            for r in await conn.fetch(_PAGE_AGENTS_SQL, _aligned(start), end, after, limit, now, list(STATES))
        ]
    page, more = agents[:limit], len(agents) > limit
    rows = "[]"
    if page:
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL TimeZone = 'UTC'")
        rows = await conn.fetchval(
            _AGENT_JSON_SQL,
            _aligned(start),
            end,
            page,
            now,
            list(STATES),
            *intervals(start, end, interval, zone),
        )
    head = {
        "formula": AGENT_FORMULA,
        "from": start,
        "to": end,
        "interval": interval,
        "timezone": zone,
        "page": {"limit": limit, "agents": len(page), "next_cursor": page[-1] if more else None},
    }
    return head, rows


# -- the whole agent report as CSV (docs/reporting.md, "The whole report at once: CSV") -------------------

AGENT_CSV_COLUMNS = (
    "interval_start",
    "agent_id",
    "handled",
    "aht_s",
    "occupancy",
    "transfers",
    *(f"{s}_s" for s in STATES),
)
_LINE = f"rpt_agent_csv_line(bucket, agent_id, handled, handle_sum, wrapped, transfers, {_STATE_COLUMNS})"
_CSV_FETCH = 1000  # rows per cursor fetch, joined into one chunk: memory stays flat over any range
# Agents are ordered by their ids' bytes (collation "C", that of rpt_agent_day's key, migration 0040), so
# that the two sorted streams below merge in Python exactly as PostgreSQL ordered them.
_LIVE_ORDER = 'ORDER BY agent_id COLLATE "C"'
_LIVE_LINES = (
    f"SELECT agent_id, convert_to(string_agg({_LINE}, '' ORDER BY bucket), 'UTF8') FROM agg GROUP BY 1"
)
# Any interval and range: every agent's lines computed from the rollups (as the one-piece report).
_AGENT_CSV_SQL = (
    _AGENT_AGG.format(
        latest=_ALL_LATEST, rollups=_ALL_ROLLUPS, open_states=_OPEN_STATES, state_sums=_STATE_SUMS
    )
    + f"{_LIVE_LINES} {_LIVE_ORDER}"
)
# The same for the agents with a state open over the range ($3) only.
_OPEN_CSV_SQL = (
    _AGENT_AGG.format(
        latest=_PAGE_LATEST, rollups=_PAGE_ROLLUPS, open_states=_OPEN_STATES, state_sums=_STATE_SUMS
    )
    + f"{_LIVE_LINES} {_LIVE_ORDER}"
)


def _kept_sql(one_day: bool) -> str:
    """Half hours cut as in UTC, from and to on half hours: each agent's lines kept by the ingest per UTC day
    (rpt_agent_day), sliced to the range: $1 and $2 the first day and its first half hour, $3 and $4 the
    last; $5 the agents asked for (NULL: all), $6 those left out (their state is open). Over one day the
    table's key gives the agents in order: the ready text is never sorted."""
    if one_day:
        text = "CASE WHEN $2 = 1 AND $4 = 48 THEN array_to_string(lines, '') ELSE array_to_string(lines[$2:$4], '') END"
        where, order = "day = $1 AND day = $3", "agent_id"
    else:
        text = "array_to_string(lines[CASE WHEN day = $1 THEN $2 ELSE 1 END : CASE WHEN day = $3 THEN $4 ELSE 48 END], '')"
        where, order = "day >= $1 AND day <= $3", "agent_id, day"
    return f"""SELECT agent_id, convert_to({text}, 'UTF8') FROM rpt_agent_day
WHERE {where} AND ($5::text[] IS NULL OR agent_id = ANY($5)) AND NOT agent_id = ANY($6::text[])
ORDER BY {order}"""


_KEPT_DAY_SQL, _KEPT_DAYS_SQL = _kept_sql(True), _kept_sql(False)
_OPEN_AGENTS_SQL = """
SELECT agent_id FROM rpt_agent_now
WHERE at < least($2::timestamptz, $4::timestamptz) AND $1 < least($2::timestamptz, $4::timestamptz)
  AND state = ANY($5::text[]) AND ($3::text[] IS NULL OR agent_id = ANY($3))
"""
_HALF_HOUR = 1800


def check_agent_csv(start: datetime, end: datetime, interval: str, zone: str) -> None:
    """What `agent_csv` refuses (ReportError), checked before a response starts."""
    _check(start, end, interval, zone)


def _slot(at: datetime) -> int:
    """The 1-based half hour of its UTC day that starts at `at`."""
    return 1 + int(at.timestamp() % 86400) // _HALF_HOUR


async def _merged(streams: list[tuple[Any, frozenset[str]]]) -> AsyncIterator[bytes]:
    """Cursors of (agent id, text) rows, each in agent order, with the agents each must leave out: their
    texts in agent order, an agent's rows in the order of the cursors (first half hour, the kept days, last
    half hour, open agents), in chunks. A cursor's rows that come before every other cursor's next row go
    out as one slice: an edge with nobody at work, or a handful of open agents, costs no step per row."""
    batches: list[list[asyncpg.Record]] = [[] for _ in streams]
    keys: list[list[str]] = [[] for _ in streams]
    at = [0] * len(streams)
    done = [False] * len(streams)
    out: list[bytes] = []
    while True:
        for k, (cursor, _) in enumerate(streams):
            if at[k] >= len(batches[k]) and not done[k]:
                batches[k], at[k] = await cursor.fetch(_CSV_FETCH), 0
                keys[k] = [r[0] for r in batches[k]]
                done[k] = not batches[k]
        # Ids compared as code points: the order of their bytes, that of the queries.
        heads = [(keys[k][at[k]], k) for k in range(len(streams)) if not done[k]]
        if not heads:
            break
        _, k = min(heads)
        others = [h for h in heads if h[1] != k]
        upto = len(keys[k])
        if others:
            agent, j = min(others)
            # This cursor's rows before the other's next one (the same agent: the earlier cursor first).
            find = bisect.bisect_right if k < j else bisect.bisect_left
            upto = max(find(keys[k], agent, at[k]), at[k] + 1)
        rows, at[k] = batches[k][at[k] : upto], upto
        skip = streams[k][1]
        out.extend(r[1] for r in rows if r[0] not in skip)
        if len(out) >= _CSV_FETCH:
            yield b"".join(out)
            out = []
    if out:
        yield b"".join(out)


async def agent_csv(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    interval: str,
    *,
    now: datetime,
    zone: str,
    agent_ids: list[str] | None = None,
) -> AsyncIterator[bytes]:
    """The whole agent report as CSV: a header line (AGENT_CSV_COLUMNS), then every agent's lines in agent
    (id bytes) then interval order, in chunks of bytes built by PostgreSQL. The same figures as
    `agent_report` and `agent_page` (a state under half a millisecond is an empty cell). `conn` is inside a
    tenant transaction for the whole iteration."""
    _check(start, end, interval, zone)
    first = _aligned(start)
    buckets, starts = intervals(start, end, interval, zone)
    stop = buckets[-1] + timedelta(seconds=BUCKET_S) if buckets else first
    states = list(STATES)
    yield (",".join(AGENT_CSV_COLUMNS) + "\n").encode()
    # Rollups and lines are read from memory: with the default random_page_cost (4, for disks) the planner
    # sorted a day's 15 MB of lines instead of walking their key in order (255 against 41 ms).
    await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL random_page_cost = 1.1")
    live_args = (first, end, agent_ids, now, states, buckets, starts)
    if not (interval == "30m" and all(s.timestamp() % _HALF_HOUR == 0 for s in starts)):
        cursor = await conn.cursor(_AGENT_CSV_SQL, *live_args)
        while records := await cursor.fetch(_CSV_FETCH):
            yield b"".join(r[1] for r in records)
        return
    opened = frozenset(r[0] for r in await conn.fetch(_OPEN_AGENTS_SQL, *live_args[:5]))
    quarter = timedelta(seconds=BUCKET_S)
    # The whole half hours of the range from the kept lines; a range starting or ending on a quarter past
    # has its edge quarter computed from the rollups (as its own interval); the agents whose state is open
    # over the range wholly from the rollups.
    inner, outer = first, stop
    streams: list[tuple[Any, frozenset[str]]] = []
    if first.timestamp() % _HALF_HOUR:
        inner = first + quarter
        edge = (first, inner, agent_ids, now, states, [first], [first - quarter])
        streams.append((await conn.cursor(_AGENT_CSV_SQL, *edge), opened))
    if stop.timestamp() % _HALF_HOUR:
        outer = stop - quarter
    if inner < outer:
        last = outer - timedelta(seconds=_HALF_HOUR)
        kept = await conn.cursor(
            _KEPT_DAY_SQL if inner.date() == last.date() else _KEPT_DAYS_SQL,
            inner.date(),
            _slot(inner),
            last.date(),
            _slot(last),
            agent_ids,
            list(opened),
        )
        streams.append((kept, frozenset()))
    if outer < stop:
        edge = (outer, end, agent_ids, now, states, [outer], [outer])
        streams.append((await conn.cursor(_AGENT_CSV_SQL, *edge), opened))
    if opened:
        live = await conn.cursor(_OPEN_CSV_SQL, first, end, list(opened), *live_args[3:])
        streams.append((live, frozenset()))
    if len(streams) == 1:
        while records := await streams[0][0].fetch(_CSV_FETCH):
            yield b"".join(r[1] for r in records)
        return
    async for chunk in _merged(streams):
        yield chunk


_IVR_SQL = """
SELECT m.interval_start AS bucket, flow, sum(completed) AS completed, sum(self_served) AS self_served,
       sum(transferred) AS transferred, sum(abandoned) AS abandoned, sum(survey_n) AS survey_n,
       sum(survey_sum) AS survey_sum
FROM rpt_ivr_rollup r JOIN unnest($4::timestamptz[], $5::timestamptz[]) AS m(bucket, interval_start)
    ON m.bucket = r.bucket
WHERE r.bucket >= $1 AND r.bucket < $2 AND ($3::text[] IS NULL OR flow = ANY($3))
GROUP BY 1, 2 ORDER BY 1, 2
"""

_NODES_SQL = """
SELECT m.interval_start AS bucket, flow, node, sum(reached) AS reached, sum(visits) AS visits,
       sum(failed) AS failed, sum(seconds_sum) AS seconds_sum
FROM rpt_ivr_node_rollup r JOIN unnest($4::timestamptz[], $5::timestamptz[]) AS m(bucket, interval_start)
    ON m.bucket = r.bucket
WHERE r.bucket >= $1 AND r.bucket < $2 AND ($3::text[] IS NULL OR flow = ANY($3))
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def _flow_row(bucket: datetime, flow: str) -> dict[str, Any]:
    return {
        "interval_start": bucket,
        "flow": flow,
        "completed": 0,
        "self_served": 0,
        "transferred": 0,
        "abandoned": 0,
        "containment": None,
        "surveys": 0,
        "survey_avg": None,
        "nodes": [],
    }


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
    args = (_aligned(start), end, flows, *intervals(start, end, interval, zone))
    flow_rows = await conn.fetch(_IVR_SQL, *args)
    nodes = await conn.fetch(_NODES_SQL, *args)
    by_flow: dict[tuple[datetime, str], dict[str, Any]] = {}
    for r in flow_rows:
        if not r["completed"]:
            continue
        row = by_flow[(r["bucket"], r["flow"])] = _flow_row(r["bucket"], r["flow"])
        for key in ("completed", "self_served", "transferred", "abandoned"):
            row[key] = int(r[key])
        row["containment"] = _ratio(row["self_served"], row["completed"])
        row["surveys"] = int(r["survey_n"])
        row["survey_avg"] = _ms(_ratio(float(r["survey_sum"]), int(r["survey_n"])))
    for r in nodes:
        if not r["visits"]:
            continue
        row = by_flow.setdefault((r["bucket"], r["flow"]), _flow_row(r["bucket"], r["flow"]))
        visits, reached = int(r["visits"]), int(r["reached"])
        row["nodes"].append(
            {
                "node": r["node"],
                "reached": reached,
                "visits": visits,
                "loops": visits - reached,
                "failed": int(r["failed"]),
                "avg_s": _ms(_ratio(float(r["seconds_sum"]), visits)) or 0.0,
            }
        )
    return {
        "formula": {
            "containment": "self_served / completed",
            "reach": "distinct contacts that left the node",
            "loops": "visits - reach: a contact back at a node it had left",
            "survey_avg": "mean of the survey answers, each scaled to 0-1: (score - min) / (max - min)",
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
SELECT a.id::text AS agent_id, a.name, a.email, n.state, n.reason, n.at AS since,
       cur.contact_id AS current_contact, cur.queue_id AS current_queue,
       coalesce(d.handled, 0) AS handled, d.handle_sum, d.wrapped
FROM agents a
LEFT JOIN rpt_agent_now n ON n.agent_id = a.id::text
LEFT JOIN LATERAL (
    SELECT contact_id, queue_id FROM rpt_contacts c
    WHERE c.agent_id = a.id::text AND c.answered_at >= $1::timestamptz - interval '1 day' AND c.ended_at IS NULL
      AND c.month >= (date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC') - interval '1 month')::date
    ORDER BY c.answered_at DESC LIMIT 1) cur ON true
LEFT JOIN (
    SELECT agent_id, sum(handled) AS handled, sum(handle_sum) AS handle_sum, sum(wrapped) AS wrapped
    FROM rpt_agent_rollup WHERE bucket >= $1 AND bucket < $2 GROUP BY agent_id) d ON d.agent_id = a.id::text
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
