"""A small pool as the services' role, on the session's PostgreSQL (tests/conftest.py `infra`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.kernel import db


@pytest.fixture
async def pool(infra) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    p = await db.create_pool(infra.app_url, max_size=2)
    try:
        yield p
    finally:
        await p.close()
