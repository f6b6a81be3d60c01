"""Kernel against real PostgreSQL and NATS: RLS transactions, migrations, events, request/reply, health."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from services.kernel import db
from services.kernel.bus import BusError, CommandTimeout, connect, store
from services.kernel.events import SeatsChanged
from services.kernel.ids import new_id
from services.kernel.messages import Command, Reply, decode
from services.kernel.subjects import HEALTH_BUCKET, cmd_subject
from services.kernel.waits import close_pool
from services.runtime.embedded import APP_ROLE


async def _make_tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO tenants (id, name, admin_email) VALUES ($1, 'T', 'a@b.example')", tenant_id
    )


async def test_tenant_tx_sees_only_its_tenant_and_fails_closed(infra) -> None:
    pool = await db.create_pool(infra.app_url)
    a, b = new_id(), new_id()
    try:
        for t in (a, b):
            async with db.tenant_tx(pool, t) as conn:
                await _make_tenant(conn, t)
                await conn.execute(
                    "INSERT INTO sites (id, tenant_id, name, timezone, kind) VALUES ($1, $2, 'S', 'UTC', 'office')",
                    new_id(),
                    t,
                )
        async with db.tenant_tx(pool, a) as conn:
            assert await conn.fetchval("SELECT count(*) FROM sites") == 1
            assert await conn.fetchval("SELECT tenant_id FROM sites") == a
            # Writing a row for another tenant is refused by the policy's WITH CHECK.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO sites (id, tenant_id, name, timezone, kind) VALUES ($1, $2, 'X', 'UTC', 'home')",
                    new_id(),
                    b,
                )
        # Outside a tenant transaction, and on the next use of the same pooled connection, nothing is visible.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM sites") == 0
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 0
    finally:
        await close_pool(pool)


async def test_pooled_connections_carry_no_transaction_state_and_skip_the_reset_query(infra) -> None:
    """One connection, borrowed again and again: the tenant of a transaction (committed or failed) never
    reaches the next borrower, while a session-level setting does, which shows the pool sends no reset
    query (tests/unit/kernel/test_pool_session.py keeps session-level state out of services/)."""
    pool = await db.create_pool(infra.app_url, min_size=1, max_size=1)
    tenant = new_id()
    try:
        async with db.tenant_tx(pool, tenant) as conn:
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") == str(tenant)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(asyncpg.UndefinedTableError):
            async with db.tenant_tx(pool, tenant) as conn:
                await conn.execute("SELECT * FROM no_such_table")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
            await conn.execute("SELECT set_config('app.probe', 'kept', false)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_setting('app.probe', true)") == "kept"
            await conn.execute("RESET ALL")
    finally:
        await close_pool(pool)


async def test_migrate_is_idempotent_and_refuses_edited_history(infra, tmp_path: Path) -> None:
    assert await db.migrate(infra.owner_url, app_role=APP_ROLE) == []
    # A scratch database so the real schema is untouched.
    owner = await asyncpg.connect(infra.owner_url)
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    await owner.execute(f'CREATE DATABASE "{name}"')
    await owner.close()
    url = infra.owner_url.rsplit("/", 1)[0] + f"/{name}"
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (x int);")
    assert await db.migrate(url, app_role=APP_ROLE, directory=tmp_path) == [1]
    (tmp_path / "0002_two.sql").write_text("CREATE TABLE two (x int);")
    assert await db.migrate(url, app_role=APP_ROLE, directory=tmp_path) == [2]
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (x bigint);")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await db.migrate(url, app_role=APP_ROLE, directory=tmp_path)
    # A failing migration leaves nothing half-applied.
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (x int);")
    (tmp_path / "0003_bad.sql").write_text("CREATE TABLE three (x int); SELECT nope;")
    with pytest.raises(asyncpg.PostgresError):
        await db.migrate(url, app_role=APP_ROLE, directory=tmp_path)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('three')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 2
    finally:
        await conn.close()


async def test_store_returns_the_sequence_and_raises_what_jetstream_refuses(infra) -> None:
    """Bus.publish's own JetStream publish (services/kernel/bus.py `store`): the stream's sequence back, a
    retried id stored once, and a refusal or a subject no stream takes raised as nats-py's errors."""
    bus = await connect(infra.nats_url, name="test-store")
    name = f"T_STORE_{uuid.uuid4().hex[:8]}"
    subject = f"store-test.{name}"
    try:
        await bus.js.add_stream(StreamConfig(name=name, subjects=[f"{subject}.>"], max_msg_size=64))
        first = await store(bus.nc, f"{subject}.a", b"one", msg_id="m1")
        assert await store(bus.nc, f"{subject}.a", b"two") == first + 1
        assert await store(bus.nc, f"{subject}.a", b"one", msg_id="m1") == first  # a retry: stored once
        assert (await bus.js.stream_info(name)).state.messages == 2
        with pytest.raises(APIError, match="message size exceeds maximum"):
            await store(bus.nc, f"{subject}.a", b"x" * 100)
        with pytest.raises(NoStreamResponseError):
            await store(bus.nc, f"store-test-none.{name}", b"x")
    finally:
        await bus.js.delete_stream(name)
        await bus.close()


async def test_events_are_persisted_once_per_id(infra) -> None:
    bus = await connect(infra.nats_url, name="test")
    try:
        await bus.ensure_streams()
        await bus.ensure_streams()  # idempotent
        tenant = new_id()
        event = SeatsChanged(tenant_id=tenant, purchased=5, delta=3)
        await bus.publish(event)
        await bus.publish(event)  # a retry: de-duplicated by JetStream on the event id
        sub = await bus.js.subscribe(
            f"sb.{tenant}.evt.>",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            ordered_consumer=True,
        )
        got = [decode((await sub.next_msg(timeout=2)).data, SeatsChanged)]
        with pytest.raises(Exception):  # noqa: B017 - nats raises its own TimeoutError
            await sub.next_msg(timeout=0.3)
        assert got == [event]
        await sub.unsubscribe()
    finally:
        await bus.close()


class Ping(Command, kw_only=True, frozen=True):
    service = "test"
    name = "ping"
    text: str


async def test_request_reply_and_timeouts(infra) -> None:
    bus = await connect(infra.nats_url, name="test")
    tenant = new_id()
    try:
        with pytest.raises(BusError, match="no service answers"):
            await bus.request(Ping(tenant_id=tenant, text="x"), timeout=0.5)

        async def handler(msg) -> None:
            cmd = msgspec.json.decode(msg.data, type=Ping)
            await bus.reply(msg, Reply(ok=True, data={"echo": cmd.text}))

        sub = await bus.nc.subscribe(cmd_subject(tenant, "test", "ping"), cb=handler)
        reply = await bus.request(Ping(tenant_id=tenant, text="hello"))
        assert reply.ok and reply.data == {"echo": "hello"}
        await sub.unsubscribe()

        silent = await bus.nc.subscribe(cmd_subject(tenant, "test", "ping"))
        with pytest.raises(CommandTimeout):
            await bus.request(Ping(tenant_id=tenant, text="x"), timeout=0.3)
        await silent.unsubscribe()
    finally:
        await bus.close()


async def test_service_heartbeat_appears_and_leaves(infra, tmp_path: Path) -> None:
    import os
    import sys

    env = {
        **os.environ,
        "SB_NATS_URL": infra.nats_url,
        "SB_DATABASE_URL": infra.app_url,  # reporting writes its facts there
        "SB_DATA_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.reporting", env=env)
    bus = await connect(infra.nats_url, name="test")
    try:
        await bus.ensure_streams()
        kv = await bus.js.key_value(HEALTH_BUCKET)
        keys: list[str] = []
        for _ in range(100):
            try:
                keys = [
                    k
                    for k, _ in await bus.kv_latest(HEALTH_BUCKET)
                    if k.startswith("reporting.") and k.endswith(f".{proc.pid}")
                ]
            except Exception:
                keys = []
            if keys:
                break
            await asyncio.sleep(0.1)
        assert keys, "the service never wrote a heartbeat"
        beat = msgspec.json.decode((await kv.get(keys[0])).value)
        assert beat["service"] == "reporting" and beat["pid"] == proc.pid and beat["status"] == "ok"
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert [k for k, _ in await bus.kv_latest(HEALTH_BUCKET) if k == keys[0]] == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await bus.close()
