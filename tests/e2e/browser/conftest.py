"""Browser end to end: the real API (tests/integration/conftest.py's `api_server`), the media service as a
real subprocess (tests/integration/media/conftest.py's `start_media`, loaded by path: test folders are not
packages) and headless Chromium through Playwright, launched from Debian's /usr/bin/chromium."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import chromium
from tests.integration.conftest import api_server  # noqa: F401  (re-exported as a fixture here)

_path = Path(__file__).resolve().parents[2] / "integration" / "media" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_browser_media_fixtures", _path)
assert _spec is not None and _spec.loader is not None
_media = importlib.util.module_from_spec(_spec)
sys.modules["_browser_media_fixtures"] = _media
_spec.loader.exec_module(_media)


@dataclass(frozen=True)
class Media:
    sip_port: int
    log_path: Path


@pytest.fixture(scope="module")
def media(infra: Any) -> Iterator[Media]:
    # Per module: a media service left running would answer other folders' media commands (see the media
    # conftest).
    with _media.start_media(infra) as (port, _pid, log_path):
        yield Media(port, log_path)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A Chromium context with a fresh user-data-dir (no profile state leaks between tests)."""
    if not chromium.available() or shutil.which("sipp") is None:
        pytest.skip("needs Debian's chromium and sip-tester")
    async with chromium.launch(tmp_path / "chromium-profile") as context:
        yield context
