"""`/` in a real browser: a page of links (agent desktop, widget demo, API reference, health), each of
which opens; the supervisor console is listed only when its page is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.home import links

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_the_root_page_links_what_a_person_can_open(
    api_server: str, browser: Any, tmp_path: Path
) -> None:
    page = await browser.new_page()
    response = await page.goto(f"{api_server}/")
    assert response is not None and response.status == 200
    assert await page.title() == "Switchboard"
    hrefs = await page.eval_on_selector_all("main a", "els => els.map(e => e.getAttribute('href'))")
    assert {"/agent/", "/widget/", "/schema", "/healthz"} <= set(hrefs)
    shot = Path(".artifacts") / "home-page.png"
    shot.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(shot), full_page=True)
    # Every link opens (health may say a service is missing in this test's platform, but it answers).
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as client:
        for href in hrefs:
            r = await client.get(href)
            assert r.status_code in (200, 503) if href == "/healthz" else r.status_code == 200, (
                href,
                r.status_code,
            )
    await page.click("text=Agent desktop")
    await page.wait_for_url("**/agent/")
    assert "agent desktop" in (await page.title()).lower()


def test_the_supervisor_console_is_listed_once_installed(tmp_path: Path) -> None:
    assert "/supervisor/" not in [href for href, _, _ in links(tmp_path)]
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / "index.html").write_text("<!doctype html>")
    assert "/supervisor/" in [href for href, _, _ in links(tmp_path)]
