"""Sign-in's SQL (handlers: services/api/signin.py): accounts, invitations and browser sessions.

Several of these run before the caller's tenant is known: row-level security lets a transaction see an
account by the email it names (`app.signin_email`), a session by its id (`app.web_session_id`) and an
invitation by its token's hash (`app.invite_hash`), each set for that transaction only; the tenant found
is then set as `app.tenant_id` for the rest of it."""

from __future__ import annotations

import uuid

import asyncpg

from services.kernel.ids import new_id

__all__ = [
    "SESSION_COLUMNS",
    "account_by_email",
    "account_by_invite",
    "account_for_signin",
    "account_of_agent",
    "end_sessions",
    "find_account",
    "insert_account",
    "insert_invite",
    "insert_session",
    "invite",
    "lock_account_for_password",
    "record_attempt",
    "retire_invites",
    "revoke_reused",
    "rotate_refresh",
    "session",
    "session_for_refresh",
    "session_secrets",
    "set_password",
    "set_tenant",
    "spend_grace",
    "use_invite",
]

SESSION_COLUMNS = """s.id, s.tenant_id, s.account_id, extract(epoch FROM s.expires_at)::float8 AS expires,
    s.revoked_at, s.refresh_hash, s.used_hashes, a.email, a.role, a.agent_id,
    extract(epoch FROM s.refreshed_at)::float8 AS refreshed, s.refresh_grace_spent"""


async def set_tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """The tenant the rest of this transaction acts in (row-level security)."""
    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))


# Accounts and sign-in attempts.


async def find_account(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    """id and tenant_id of the account with this (lower-case) email, in any tenant."""
    await conn.execute("SELECT set_config('app.signin_email', $1, true)", email)
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, tenant_id FROM accounts WHERE lower(email) = $1", email
    )
    return row


async def account_for_signin(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """The account, locked until the transaction ends: one account's attempts take turns."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT id, tenant_id, email, role, agent_id, password_hash, failed_signins,
                  extract(epoch FROM locked_until)::float8 AS locked_until
           FROM accounts WHERE id = $1 FOR UPDATE""",
        account_id,
    )
    return row


async def record_attempt(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    failures: int,
    locked_until: float | None,
    rehash: str | None,
) -> None:
    """The failures in a row and the lock after an attempt, and a new hash when the old one is outdated."""
    await conn.execute(
        """UPDATE accounts SET failed_signins = $2, locked_until = to_timestamp($3),
               password_hash = coalesce($4, password_hash) WHERE id = $1""",
        account_id,
        failures,
        locked_until,
        rehash,
    )


async def account_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    """id, role and agent_id of this tenant's account with the email (case aside)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, role, agent_id FROM accounts WHERE lower(email) = lower($1)", email
    )
    return row


async def insert_account(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, email: str, role: str, agent_id: uuid.UUID | None
) -> asyncpg.Record:
    """id, role and agent_id of the new account. Raises asyncpg.UniqueViolationError when the email has an
    account in any tenant."""
    row: asyncpg.Record = await conn.fetchrow(
        """INSERT INTO accounts (id, tenant_id, email, role, agent_id)
           VALUES ($1, $2, $3, $4, $5) RETURNING id, role, agent_id""",
        new_id(),
        tenant_id,
        email,
        role,
        agent_id,
    )
    return row


async def account_of_agent(conn: asyncpg.Connection, agent_id: uuid.UUID) -> uuid.UUID | None:
    found: uuid.UUID | None = await conn.fetchval("SELECT id FROM accounts WHERE agent_id = $1", agent_id)
    return found


async def lock_account_for_password(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """id, tenant_id and email, locked until the transaction ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, tenant_id, email FROM accounts WHERE id = $1 FOR UPDATE", account_id
    )
    return row


async def set_password(conn: asyncpg.Connection, account_id: uuid.UUID, digest: str) -> None:
    """A new password hash; the failures and the lock are forgotten."""
    await conn.execute(
        """UPDATE accounts SET password_hash = $2, failed_signins = 0, locked_until = NULL,
               updated_at = now() WHERE id = $1""",
        account_id,
        digest,
    )


# Invitations.


async def retire_invites(conn: asyncpg.Connection, account_id: uuid.UUID) -> None:
    """The account's unused invitations stop working (a new one replaces them)."""
    await conn.execute(
        "UPDATE account_invites SET used_at = now() WHERE account_id = $1 AND used_at IS NULL", account_id
    )


async def insert_invite(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    token_hash: bytes,
    key_id: uuid.UUID,
    ttl_s: float,
) -> asyncpg.Record:
    """id and expires_at of the new invitation."""
    row: asyncpg.Record = await conn.fetchrow(
        """INSERT INTO account_invites (id, tenant_id, account_id, token_hash, created_by_key_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id, expires_at""",
        new_id(),
        tenant_id,
        account_id,
        token_hash,
        key_id,
        ttl_s,
    )
    return row


async def invite(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """id, tenant_id, account_id, expires_at and used_at of the invitation with this token's hash."""
    await conn.execute("SELECT set_config('app.invite_hash', $1, true)", token_hash.hex())
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, tenant_id, account_id, expires_at, used_at FROM account_invites WHERE token_hash = $1",
        token_hash,
    )
    return row


async def account_by_invite(conn: asyncpg.Connection, account_id: uuid.UUID) -> asyncpg.Record | None:
    """email, role and the tenant's name, for the invitation page."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT a.email, a.role, t.name FROM accounts a JOIN tenants t ON t.id = a.tenant_id
           WHERE a.id = $1""",
        account_id,
    )
    return row


async def use_invite(conn: asyncpg.Connection, invite_id: uuid.UUID) -> None:
    """The invitation is used."""
    await conn.execute("UPDATE account_invites SET used_at = now() WHERE id = $1", invite_id)


# Browser sessions.


async def insert_session(
    conn: asyncpg.Connection,
    account: asyncpg.Record,
    session_id: uuid.UUID,
    ttl_s: float,
    refresh_hash: bytes,
    address: str,
    user_agent: str,
) -> asyncpg.Record:
    """The new session's row (SESSION_COLUMNS) for `account` (its id and tenant_id)."""
    await conn.execute(
        """INSERT INTO web_sessions (id, tenant_id, account_id, expires_at, refresh_hash, address, user_agent)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7)""",
        session_id,
        account["tenant_id"],
        account["id"],
        ttl_s,
        refresh_hash,
        address,
        user_agent,
    )
    row = await session(conn, session_id)
    assert row is not None  # inserted just above, in this transaction
    return row


async def session(
    conn: asyncpg.Connection, session_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """A session with its account (SESSION_COLUMNS); `lock`: until the transaction ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM web_sessions s JOIN accounts a ON a.id = s.account_id WHERE s.id = $1"
        + (" FOR UPDATE OF s" if lock else ""),
        session_id,
    )
    return row


async def session_for_refresh(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The session named by a refresh cookie (SESSION_COLUMNS), locked, with its tenant set for the rest of
    the transaction; None when there is no such session."""
    await conn.execute("SELECT set_config('app.web_session_id', $1, true)", str(session_id))
    tenant_id = await conn.fetchval("SELECT tenant_id FROM web_sessions WHERE id = $1", session_id)
    if tenant_id is None:
        return None
    await set_tenant(conn, tenant_id)
    return await session(conn, session_id, lock=True)


async def session_secrets(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """tenant_id, account_id, refresh_hash and used_hashes of the session a sign-out's cookie names."""
    await conn.execute("SELECT set_config('app.web_session_id', $1, true)", str(session_id))
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT tenant_id, account_id, refresh_hash, used_hashes FROM web_sessions WHERE id = $1", session_id
    )
    return row


async def rotate_refresh(
    conn: asyncpg.Connection, session_id: uuid.UUID, digest: bytes, keep_used: int
) -> None:
    """The refresh secret becomes `digest`; the old one joins the used ones (the newest `keep_used`)."""
    await conn.execute(
        """UPDATE web_sessions SET refresh_hash = $2, refreshed_at = now(), refresh_grace_spent = false,
               used_hashes = (array_prepend(refresh_hash, used_hashes))[1:$3] WHERE id = $1""",
        session_id,
        digest,
        keep_used,
    )


async def spend_grace(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    await conn.execute("UPDATE web_sessions SET refresh_grace_spent = true WHERE id = $1", session_id)


async def revoke_reused(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE web_sessions SET revoked_at = now(), revoked_reason = 'refresh_reused' WHERE id = $1",
        session_id,
    )


async def end_sessions(conn: asyncpg.Connection, account_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
    """Revoke the account's live sessions; their ids."""
    rows = await conn.fetch(
        """UPDATE web_sessions SET revoked_at = now(), revoked_reason = $2
           WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING id""",
        account_id,
        reason,
    )
    return [r["id"] for r in rows]
