"""Browser sessions' and accounts' SQL (handlers: services/api/signin.py; the checks that an access token's
session still lives: services/api/tokens.py console_live, services/api/desk.py session_live)."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["console_session", "key_revoked", "session_state"]


async def console_session(
    conn: asyncpg.Connection, session_id: uuid.UUID, account_id: uuid.UUID
) -> asyncpg.Record | None:
    """revoked_at, expires (epoch seconds) and the account's role now."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT s.revoked_at, extract(epoch FROM s.expires_at)::float8 AS expires, a.role FROM web_sessions s
           JOIN accounts a ON a.id = s.account_id WHERE s.id = $1 AND s.account_id = $2""",
        session_id,
        account_id,
    )
    return row


async def session_state(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """revoked_at and expires (epoch seconds) of a browser session."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT revoked_at, extract(epoch FROM expires_at)::float8 AS expires FROM web_sessions
           WHERE id = $1""",
        session_id,
    )
    return row


async def key_revoked(conn: asyncpg.Connection, key_id: uuid.UUID) -> bool | None:
    """Whether an API key is revoked; None when there is no such key."""
    revoked: bool | None = await conn.fetchval(
        "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", key_id
    )
    return revoked
