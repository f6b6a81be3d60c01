"""The PostgreSQL backup and restore of docs/operators.md ("Backup and restore"), round trip against the test
session's embedded PostgreSQL with the pg_dump and pg_restore of the pgserver wheel: the copy has the rows,
the row-level security policies and FORCE flags, and still hides one tenant's rows from another when read as
the application role. And the one-machine JetStream backup: a copy of the store taken while NATS is stopped."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pgserver

from services.runtime.embedded import EmbeddedNats, Secrets
from tests.conftest import Infra

PG_BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def _security(conn: asyncpg.Connection) -> dict[str, tuple[bool, bool, int]]:
    """Per public table: (RLS enabled, RLS forced, number of policies)."""
    rows = await conn.fetch(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                  (SELECT count(*) FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind = 'r'"""
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_dump_and_restore_keep_rows_policies_and_isolation(infra: Infra, tmp_path: Path) -> None:
    tenants = [uuid.uuid4(), uuid.uuid4()]
    sites = [uuid.uuid4(), uuid.uuid4()]
    owner = await asyncpg.connect(infra.owner_url)
    try:
        for tenant, site in zip(tenants, sites, strict=True):
            await owner.execute(
                "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'Backup Co', $2)",
                tenant,
                f"backup-{tenant}@example.com",
            )
            await owner.execute(
                "INSERT INTO sites (id, tenant_id, name, timezone, kind) VALUES ($1, $2, 'HQ', 'UTC', 'office')",
                site,
                tenant,
            )
        before = await _security(owner)
    finally:
        await owner.close()

    dump = tmp_path / "switchboard.dump"
    await asyncio.to_thread(
        subprocess.run,
        [PG_BIN / "pg_dump", "--format=custom", "--no-owner", f"--file={dump}", infra.owner_url],
        check=True,
        capture_output=True,
        timeout=60,
    )
    restored = f"sb_restore_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.owner_url)
    await admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                PG_BIN / "pg_restore",
                "--no-owner",
                "--exit-on-error",
                "-d",
                _with_database(infra.owner_url, restored),
                dump,
            ],
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        copy = await asyncpg.connect(_with_database(infra.owner_url, restored))
        try:
            assert await _security(copy) == before
            assert any(forced for _, forced, _ in before.values())  # the comparison compared something
            rows = await copy.fetch("SELECT id, tenant_id FROM sites WHERE id = ANY($1::uuid[])", sites)
            assert sorted((r["id"], r["tenant_id"]) for r in rows) == sorted(zip(sites, tenants, strict=True))
        finally:
            await copy.close()

        # The application role reads the copy through row-level security, as it reads the original.
        app = await asyncpg.connect(_with_database(infra.app_url, restored))
        try:
            assert await app.fetchval("SELECT count(*) FROM sites WHERE id = ANY($1::uuid[])", sites) == 0
            async with app.transaction():
                await app.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenants[0]))
                seen = await app.fetch("SELECT id FROM sites WHERE id = ANY($1::uuid[])", sites)
            assert [r["id"] for r in seen] == [sites[0]]
        finally:
            await app.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        await admin.close()
        cleanup = await asyncpg.connect(infra.owner_url)
        try:
            await cleanup.execute("DELETE FROM tenants WHERE id = ANY($1::uuid[])", tenants)
        finally:
            await cleanup.close()


async def test_a_jetstream_store_copied_while_stopped_restores_its_streams(tmp_path: Path) -> None:
    """The one-machine JetStream backup of docs/operators.md: `DATA_DIR/nats/js` copied while NATS is
    stopped starts again elsewhere with every stream and message."""
    original, copy_dir = tmp_path / "original", tmp_path / "restored"
    original.mkdir()
    secrets_ = Secrets.load_or_create(original)
    server = EmbeddedNats(original, secrets_)
    server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="SB_BACKUP_TEST", subjects=["backup.>"])
        for i in range(50):
            await js.publish(f"backup.{i % 5}", f"event {i}".encode())
        await nc.close()
    finally:
        server.stop()
    shutil.copytree(original / "nats" / "js", copy_dir / "nats" / "js")
    shutil.copy2(original / "secrets.json", copy_dir / "secrets.json")
    restored = EmbeddedNats(copy_dir, Secrets.load_or_create(copy_dir))
    restored.start()
    try:
        nc = await nats.connect(restored.url)
        js = nc.jetstream()
        info = await js.stream_info("SB_BACKUP_TEST")
        assert info.state.messages == 50 and info.state.last_seq == 50
        last = await js.get_last_msg("SB_BACKUP_TEST", "backup.4")
        assert last.data == b"event 49"
        await nc.close()
    finally:
        restored.stop()
