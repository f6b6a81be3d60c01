"""Agent quality figures for the supervisor's grid (docs/supervisor.md, "Agent quality"): from the agent
state facts since a time (today's local midnight for the realtime view), per agent:

- offers: times the agent was offered a contact (moves into `reserved`, "ringing");
- missed: offers that did not become a call (declined, timed out, withdrawn): the decided offers (all but
  one still ringing now, the agent's latest state in the facts) less the calls taken (moves into
  `on_contact`). Routing times an agent's changes of one step (made available and offered at once) in
  distinct microseconds, in their order, so the latest state is the true one;
- answer_rate: calls taken / decided offers;
- occupancy: (on_contact + wrap_up) / (available + reserved + on_contact + wrap_up) time, the history
  report's formula, counted from the agent's first change in the period (the state held at its start is
  not known to this query)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["agent_quality"]

_SQL = """
WITH s AS (
    SELECT agent_id, state, at,
           coalesce(lead(at) OVER w, $2) AS until
    FROM rpt_agent_states
    WHERE at >= $1 AND at < $2
    WINDOW w AS (PARTITION BY agent_id ORDER BY at, event_id)
)
SELECT agent_id,
       count(*) FILTER (WHERE state = 'reserved') AS offers,
       count(*) FILTER (WHERE state = 'on_contact') AS taken,
       sum(extract(epoch FROM until - at)) FILTER (WHERE state IN ('on_contact', 'wrap_up')) AS busy_s,
       sum(extract(epoch FROM until - at))
           FILTER (WHERE state IN ('available', 'reserved', 'on_contact', 'wrap_up')) AS working_s
FROM s
GROUP BY agent_id
"""


async def agent_quality(
    conn: asyncpg.Connection, start: datetime, end: datetime, ringing: set[str] | frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """agent id -> {offers, missed, answer_rate, occupancy} (rates None when nothing to divide); `ringing`:
    the agents with an offer ringing now (not decided yet)."""
    out: dict[str, dict[str, Any]] = {}
    for r in await conn.fetch(_SQL, start, end):
        offers, taken = int(r["offers"]), int(r["taken"])
        decided = max(0, offers - (1 if str(r["agent_id"]) in ringing else 0))
        working = float(r["working_s"] or 0.0)
        out[str(r["agent_id"])] = {
            "offers": offers,
            "missed": max(0, decided - taken),
            "answer_rate": min(1.0, taken / decided) if decided else None,
            "occupancy": float(r["busy_s"] or 0.0) / working if working > 0 else None,
        }
    return out
