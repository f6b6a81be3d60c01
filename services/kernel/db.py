"""PostgreSQL: pool, per-transaction tenant scope (row-level security), bootstrap and migrations.

Services connect as an application role that owns no table and is not a superuser, so every tenant table's
`FORCE ROW LEVEL SECURITY` policy applies to them. The tenant is set per transaction with
`set_config('app.tenant_id', ..., true)`, so a pooled connection never carries it into the next transaction.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "bootstrap",
    "create_pool",
    "load_migrations",
    "migrate",
    "tenant_tx",
    "with_credentials",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant: one migrator at a time across processes.
_MIGRATION_LOCK = 0x5B_0001
# A transaction waits at most this long for a pooled connection (a leak or a stampede fails loudly).
ACQUIRE_TIMEOUT_S = 10.0
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: nothing more than asyncpg's own clean-up (an open
    transaction rolled back, listeners dropped). asyncpg's default also sends `RESET ALL; CLOSE ALL;
    UNLISTEN *; SELECT pg_advisory_unlock_all()`: one more round trip per transaction (the coordinator
    makes one per step of a contact) for session state nothing here creates. Every setting lives
    in its transaction (`set_config(..., true)`, `SET LOCAL`); tests/unit/kernel/test_pool_session.py
    refuses session-level ones in services/."""
    return None


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Create a pool; call it inside the event loop that will use it (asyncpg pools are loop-bound)."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, command_timeout=30, reset=_keep_session
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_tx(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, *, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which row-level security sees only `tenant_id`'s rows."""
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction(readonly=readonly):
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
        yield conn


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    """`url` with its user, password (and database) replaced."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


async def bootstrap(admin_url: str, *, database: str, app_role: str, app_password: str) -> None:
    """Create the database and the application role if missing (idempotent)."""
    if not _ROLE_NAME.match(app_role) or not _ROLE_NAME.match(database):
        raise ValueError("database and role names must be lower-case identifiers")
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_role)
        verb = "ALTER" if exists else "CREATE"
        # Passwords cannot be bound parameters in DDL; quote_literal does the escaping server-side.
        literal = await conn.fetchval("SELECT quote_literal($1::text)", app_password)
        await conn.execute(
            f'{verb} ROLE "{app_role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {literal}'
        )
    finally:
        await conn.close()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


async def migrate(admin_url: str, *, app_role: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; returns the versions applied.

    An applied migration whose file has changed since is an error: history is never rewritten.
    """
    if not _ROLE_NAME.match(app_role):
        raise ValueError("role name must be a lower-case identifier")
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(admin_url)
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise RuntimeError(f"migration {m.version:04d}_{m.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.version)
        # The application role reads and writes rows; it never owns tables, so FORCE RLS binds it.
        await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{app_role}"')
        await conn.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{app_role}"'
        )
        await conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app_role}"')
        await conn.execute(f'REVOKE ALL ON schema_migrations FROM "{app_role}"')
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await conn.close()
    return applied_now
