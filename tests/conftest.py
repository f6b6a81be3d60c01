"""Session fixtures: real PostgreSQL and NATS from the embedded wheels and an API process on them, started once
per test session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.kernel import db
from services.runtime.embedded import APP_ROLE, DATABASE, EmbeddedNats, EmbeddedPostgres, Secrets
from tests.service_procs import start_api

# A test about to time out first prints what each asyncio task is waiting for (tests/hangs.py).
pytest_plugins = ["tests.hangs"]


@dataclass(frozen=True)
class Infra:
    data_dir: Path
    app_url: str  # the services' role: RLS applies
    owner_url: str  # table owner: for fixtures that must see across tenants
    nats_url: str
    token_secret: str


# The session's data dir, once made: a failed test's service logs are copied out of it (pytest_runtest_makereport).
_DATA_DIR: list[Path] = []


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Under /tmp (short paths) and owned by us; removed at the end of the session (SB_KEEP_TEST_DATA keeps it).
    data_dir = Path(tempfile.mkdtemp(prefix="sbtest-"))
    _DATA_DIR.append(data_dir)
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


@pytest.fixture(scope="session")
def api_server(infra: Infra) -> Iterator[str]:
    """`python -m services.api` on a free 127.0.0.1 port; yields its base URL. One for the whole session:
    every folder's tests make tenants of their own (starting one per folder cost seconds each)."""
    with start_api(
        infra,
        SB_SIGNUP_RATE_PER_MINUTE="1000",
        SB_SIGNIN_ADDRESS_RATE_PER_MINUTE="100000",
        # Browser sessions' access tokens live 6 s here, so that tests see them refreshed many times.
        SB_ACCESS_TOKEN_TTL_S="6",
    ) as base:
        yield base


T = TypeVar("T")


class FolderScope:
    """What the modules of one test folder share until the folder's last test: a stack of services costs
    seconds to start, and pytest's "package" scope needs an __init__.py (without one it lasts the session,
    and services left running would answer the calls and commands of later folders, which stand in their
    own). `share(folder, name, make)` enters the context manager `make()` once and returns what it yields;
    pytest_runtest_teardown below exits it after the folder's last test (after that test's module
    fixtures), or at the end of the session. Anything a module changes in it (a service it kills, settings
    it writes) it must put back, or keep to its own tenants."""

    def __init__(self) -> None:
        self.open: dict[tuple[Path, str], tuple[contextlib.ExitStack, Any]] = {}

    def share(self, folder: Path, name: str, make: Callable[[], contextlib.AbstractContextManager[T]]) -> T:
        key = (folder.resolve(), name)
        if key not in self.open:
            with contextlib.ExitStack() as stack:
                value = stack.enter_context(make())
                self.open[key] = (stack.pop_all(), value)
        return self.open[key][1]  # type: ignore[no-any-return]

    def leave(self, nextitem: pytest.Item | None) -> None:
        """Exit what belongs to folders that `nextitem` is not in (all of it at the end)."""
        for key in list(self.open):
            if nextitem is None or key[0] not in Path(nextitem.path).parents:
                self.open.pop(key)[0].close()


_FOLDERS = FolderScope()


@pytest.fixture(scope="session")
def folder_scope(infra: Infra) -> Iterator[FolderScope]:
    # Set up after `infra`, so torn down before it: what the last folder shares stops while PostgreSQL and
    # NATS still run.
    try:
        yield _FOLDERS
    finally:
        _FOLDERS.leave(None)


def pytest_report_header() -> str:
    """Which media code the run exercised (services/media/native.py): mypyc-compiled or pure Python."""
    from services.media import native

    return f"media per-packet modules: {native.status()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield  # the item's own fixtures first (a module's extra service stops before the stack)
    if nextitem is not None:  # after the last item the session's fixtures are gone: folder_scope's end
        _FOLDERS.leave(nextitem)
    return result


FAILED_LOGS = Path(__file__).resolve().parents[1] / ".artifacts" / "failed"
KEPT_LOG_BYTES = 20_000_000  # the end of each log: a session's API log can be larger


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test that ran on the session's services keeps their logs (the data dir goes at the end of the
    session): each `*.log` of the data dir and its folders (PostgreSQL's, NATS's, a test's own processes'),
    its last KEPT_LOG_BYTES, under .artifacts/failed/<test id>/ at the same relative path."""
    report: pytest.TestReport = yield
    if report.failed and _DATA_DIR and "infra" in getattr(item, "fixturenames", ()):
        where = FAILED_LOGS / re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
        shutil.rmtree(where, ignore_errors=True)  # an earlier run's failure of the same test
        where.mkdir(parents=True)
        for log in sorted(_DATA_DIR[0].rglob("*.log")):
            kept = where / log.relative_to(_DATA_DIR[0])
            kept.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "rb") as src:
                src.seek(max(0, log.stat().st_size - KEPT_LOG_BYTES))
                kept.write_bytes(src.read())
        report.sections.append(("service logs", f"the services' logs are kept in {where}"))
    return report


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
