"""IVR integration fixtures: the API app in-process (as the API suite serves it) and flow texts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import make_app, serve


@pytest.fixture(scope="session")
async def api(infra: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_app(infra)) as c:
        yield c
