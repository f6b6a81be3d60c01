"""Agent quality figures for the supervisor's grid (docs/supervisor.md, "Agent quality"): from the agent
state facts since a time (today's local midnight for the realtime view), per agent:

- offers: times the agent was offered a contact (a move into `reserved`, "ringing");
- missed: offers that did not become a call (the next state is not `on_contact`: declined, timed out,
  withdrawn); an offer still ringing is neither answered nor missed yet;
- answer_rate: (offers - missed) / decided offers;
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
           lead(state) OVER w AS next_state,
           coalesce(lead(at) OVER w, $2) AS until
    FROM rpt_agent_states
    WHERE at >= $1 AND at < $2
    WINDOW w AS (PARTITION BY agent_id ORDER BY at, event_id)
)
SELECT agent_id,
       count(*) FILTER (WHERE state = 'reserved') AS offers,
       count(*) FILTER (WHERE state = 'reserved' AND next_state IS NOT NULL) AS decided,
       count(*) FILTER (WHERE state = 'reserved' AND next_state IS NOT NULL AND next_state <> 'on_contact')
           AS missed,
       sum(extract(epoch FROM until - at)) FILTER (WHERE state IN ('on_contact', 'wrap_up')) AS busy_s,
       sum(extract(epoch FROM until - at))
           FILTER (WHERE state IN ('available', 'reserved', 'on_contact', 'wrap_up')) AS working_s
FROM s
GROUP BY agent_id
"""


async def agent_quality(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> dict[str, dict[str, Any]]:
    """agent id -> {offers, missed, answer_rate, occupancy} (rates None when nothing to divide)."""
    out: dict[str, dict[str, Any]] = {}
    for r in await conn.fetch(_SQL, start, end):
        decided, missed = int(r["decided"]), int(r["missed"])
        working = float(r["working_s"] or 0.0)
        out[str(r["agent_id"])] = {
            "offers": int(r["offers"]),
            "missed": missed,
            "answer_rate": (decided - missed) / decided if decided else None,
            "occupancy": float(r["busy_s"] or 0.0) / working if working > 0 else None,
        }
    return out
