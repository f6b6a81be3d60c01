"""Browser end to end: the real API (tests/conftest.py's `api_server`), the media service as a
real subprocess (tests/integration/media/conftest.py's `start_media`, loaded by path: test folders are not
packages) and headless Chromium through Playwright, launched from Debian's /usr/bin/chromium."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import chromium

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
def media(folder_scope: Any, infra: Any) -> Media:
    # One for this folder, stopped after its last test (tests/conftest.py's FolderScope): a media service
    # left running would answer other folders' media commands (see the media conftest).
    port, _pid, log_path = folder_scope.share(
        Path(__file__).parent, "media", lambda: _media.start_media(infra)
    )
    return Media(port, log_path)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A Chromium context with a fresh user-data-dir (no profile state leaks between tests)."""
    if not chromium.available() or shutil.which("sipp") is None:
        pytest.skip("needs Debian's chromium and sip-tester")
    async with chromium.launch(tmp_path / "chromium-profile") as context:
        yield context
