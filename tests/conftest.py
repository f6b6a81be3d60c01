"""Session fixtures: real PostgreSQL and NATS from the embedded wheels, started once per test session."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.kernel import db
from services.runtime.embedded import APP_ROLE, DATABASE, EmbeddedNats, EmbeddedPostgres, Secrets

# A test about to time out first prints what each asyncio task is waiting for (tests/hangs.py).
pytest_plugins = ["tests.hangs"]


@dataclass(frozen=True)
class Infra:
    data_dir: Path
    app_url: str  # the services' role: RLS applies
    owner_url: str  # table owner: for fixtures that must see across tenants
    nats_url: str
    token_secret: str


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Under /tmp (short paths) and owned by us; removed at the end of the session.
    data_dir = Path(tempfile.mkdtemp(prefix="sbtest-"))
    secrets_ = Secrets.load_or_create(data_dir)
    pg = EmbeddedPostgres(data_dir, secrets_)
    nats = EmbeddedNats(data_dir, secrets_)
    try:
        # Our child, with a parent-death signal: a killed test run leaves no PostgreSQL behind.
        pg.start(supervised=True)
        nats.start()

        async def prepare() -> None:
            await db.bootstrap(
                pg.admin_url, database=DATABASE, app_role=APP_ROLE, app_password=secrets_.pg_app_password
            )
            await db.migrate(pg.owner_url, app_role=APP_ROLE)

        asyncio.run(prepare())
        yield Infra(data_dir, pg.app_url, pg.owner_url, nats.url, secrets_.token_secret)
    finally:
        nats.stop()
        pg.stop()
        if not os.environ.get("SB_KEEP_TEST_DATA"):
            shutil.rmtree(data_dir, ignore_errors=True)


class AmbientRead(AssertionError):
    """A sans-IO core read the wall clock or the random id generator instead of its inputs."""


@pytest.fixture
def no_ambient_clock_or_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a core is driven, code under services/ that builds a message without an explicit `id`/`ts`, or
    reads time.time or the id generator itself, raises: cores take `now` and derive their ids from their
    inputs (docs/architecture.md). The test's own inputs may still be stamped."""
    import sys
    import time

    from services.kernel import ids, messages

    services = f"{os.sep}services{os.sep}"
    stampers = (messages.__file__, ids.__file__)

    def guarded(real: Any, what: str) -> Any:
        def read() -> Any:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename in stampers:
                frame = frame.f_back  # through the message's default factory to the code that built it
            if frame is not None and services in frame.f_code.co_filename:
                where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
                raise AmbientRead(f"{where} read {what}: a core takes `now` and ids from its inputs")
            return real()

        return read

    monkeypatch.setattr(messages, "_clock", guarded(time.time, "the clock"))
    monkeypatch.setattr(messages, "_new_id", guarded(ids.new_id, "the id generator"))
    monkeypatch.setattr(ids, "new_id", guarded(ids.new_id, "the id generator"))
    monkeypatch.setattr(time, "time", guarded(time.time, "the clock"))
