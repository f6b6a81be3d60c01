"""Attempt counters in PostgreSQL (table signin_throttle), so that a limit holds across every API process:
a fixed window per bucket, counted and read in one statement. Counters whose window closed over an hour
ago are deleted a few at a time by every attempt (migration 0019), so the table stays bounded by the
attempts of the last hour."""

from __future__ import annotations

import asyncpg

__all__ = ["PRUNE_BATCH", "count_attempt"]

# Expired counters deleted per attempt: more than attempts can create, so the table never grows for long.
PRUNE_BATCH = 50

_COUNT = """
INSERT INTO signin_throttle AS t (bucket, window_start, hits) VALUES ($1, now(), 1)
ON CONFLICT (bucket) DO UPDATE SET
    window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $2) THEN now()
                        ELSE t.window_start END,
    hits = CASE WHEN t.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE t.hits + 1 END
RETURNING hits, extract(epoch FROM (t.window_start + make_interval(secs => $2) - now()))::float8 AS left_s
"""
# Rows older than the expired_* policies' hour, oldest first, a batch at a time.
_PRUNE = """
DELETE FROM signin_throttle WHERE bucket IN (
    SELECT bucket FROM signin_throttle WHERE window_start < now() - interval '1 hour'
    ORDER BY window_start LIMIT $1)
"""


async def count_attempt(conn: asyncpg.Connection, bucket: str, *, window_s: float) -> tuple[int, float]:
    """Count one attempt in `bucket`: (attempts in the current window, seconds until it closes). `conn` is in
    a transaction: the bucket_lookup policy lets it see this one bucket."""
    await conn.execute("SELECT set_config('app.throttle_bucket', $1, true)", bucket)
    await conn.execute(_PRUNE, PRUNE_BATCH)
    row = await conn.fetchrow(_COUNT, bucket, float(window_s))
    assert row is not None
    return int(row["hits"]), max(float(row["left_s"]), 0.0)
