"""The reporting tests' shared harness (reporting_harness.py, importable by name) and an application-role pool."""

# The suite runs with --import-mode=importlib, which leaves sys.path alone: make the shared harness
# module next to these tests importable by name.
from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.kernel import db
from services.kernel.bus import Bus, connect
from services.kernel.waits import close_pool

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
async def pool(infra) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    p = await db.create_pool(infra.app_url, max_size=3)
    try:
        yield p
    finally:
        await close_pool(p)


@pytest.fixture
async def bus(infra) -> AsyncIterator[Bus]:  # type: ignore[no-untyped-def]
    b = await connect(infra.nats_url, name="test-reporting")
    await b.ensure_streams()
    try:
        yield b
    finally:
        await b.close()
