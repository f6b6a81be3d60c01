"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium through Playwright, with the flags of
/work/shared/STACK-NOTES.md ("Chromium (Playwright)") and a fresh user-data-dir each time."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "available", "launch"]

CHROMIUM = "/usr/bin/chromium"
# Without --allow-loopback-in-peer-connection Chrome gathers no candidates on loopback; the fake-device
# flags give getUserMedia a synthetic microphone (a periodic beep) without prompting or touching hardware.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


@asynccontextmanager
async def launch(user_data_dir: Path) -> AsyncIterator[Any]:
    """A persistent Chromium context in `user_data_dir` (a fresh folder: no state leaks between tests)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield context
        finally:
            await context.close()
