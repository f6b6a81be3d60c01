"""`switchboard agents invite|signout`, `switchboard desk-settings` and `switchboard settings`, and the SDK calls under them (sync and
async), against the real API process: the link printed sets a password, signout ends the session."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

PASSWORD = "correct horse battery"


@pytest.fixture
def run(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:10]
    signed = CliRunner().invoke(
        cli,
        ["signup", "--company", f"Shift {tag}", "--email", f"c-{tag}@acme.example", "--api-url", api_server],
        catch_exceptions=False,
    )
    assert signed.exit_code == 0, signed.stderr

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code:
            assert result.stderr.startswith("error: "), result.stderr
        return result

    return invoke


def test_invite_link_sets_a_password_and_signout_ends_the_session(run: Any, api_server: str) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@acme.example"
    run("agents", "add", "--name", "Ada Lovelace", "--email", email)
    out = run("agents", "invite", email).stdout
    url = out.splitlines()[0]
    assert url.startswith(f"{api_server}/agent/#invite=") and "Ada Lovelace" in out
    token = url.partition("#invite=")[2]
    with httpx.Client(base_url=api_server) as browser:
        r = browser.post("/v1/auth/invite", json={"token": token, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert browser.post("/v1/auth/refresh").status_code == 200
        ended = json.loads(run("agents", "signout", email, "--json").stdout)
        assert ended == {"sessions_ended": 1}
        assert browser.post("/v1/auth/refresh").status_code == 401
    # A second link replaces the first; the first no longer works.
    again = json.loads(run("agents", "invite", email, "--json").stdout)
    assert again["url"].endswith(again["token"]) and again["role"] == "agent"
    assert "ghost@acme.example" in run("agents", "invite", "ghost@acme.example", code=1).stderr


def test_desk_settings_show_and_set(run: Any) -> None:
    shown = run("desk-settings", "show").stdout
    assert "resolved" in shown and "Lunch" in shown and "yes" in shown
    saved = json.loads(
        run(
            "desk-settings", "set", "--disposition", "sale=Sale made", "--disposition", "no_sale=No sale",
            "--no-form-extends", "--json",
        ).stdout
    )  # fmt: skip
    assert [c["code"] for c in saved["dispositions"]] == ["sale", "no_sale"]
    assert saved["wrap_up_form_extends"] is False and saved["away_reasons"][0]["code"] == "break"
    bad = run("desk-settings", "set", "--disposition", "nolabel", code=2)
    assert "CODE=Label" in bad.stderr
    refused = run("desk-settings", "set", "--away-reason", "missed=Missed", code=1)
    assert "set by the platform" in refused.stderr
    assert "give --disposition" in run("desk-settings", "set", code=1).stderr


def test_settings_show_and_set_the_agents_grace(run: Any) -> None:
    assert "20 s" in run("settings", "show").stdout  # the default
    saved = json.loads(run("settings", "set", "--agent-grace", "45", "--json").stdout)
    assert saved == {"agent_grace_seconds": 45, "timezone": "UTC", "language": "en", "monitor_notice": "none"}
    assert json.loads(run("settings", "show", "--json").stdout) == saved
    assert "45 s" in run("settings", "set", "--agent-grace", "45").stdout
    assert "0<=x<=600" in run("settings", "set", "--agent-grace", "601", code=2).stderr
    assert "give --agent-grace" in run("settings", "set", code=1).stderr


def test_async_sdk_invites_and_changes_desk_settings(api_server: str) -> None:
    tag = uuid.uuid4().hex[:10]
    key = switchboard.signup(f"Async {tag}", f"a-{tag}@acme.example", base_url=api_server).api_key.key

    async def go() -> None:
        async with switchboard.AsyncClient(key, base_url=api_server) as client:
            agent = await client.agents.create(name="Bo", email=f"bo-{tag}@acme.example")
            invite = await client.agents.invite(agent.email)
            assert invite.agent_id == agent.id and invite.url == f"{api_server}/agent/#invite={invite.token}"
            assert (await client.agents.signout(agent.id)).sessions_ended == 0
            settings = await client.desk_settings.get()
            settings.away_reasons = [switchboard.Choice(code="coffee", label="Coffee")]
            assert (await client.desk_settings.set(settings)).away_reasons == settings.away_reasons
            assert (await client.settings.update(agent_grace_seconds=7)).agent_grace_seconds == 7
            assert (await client.settings.get()).agent_grace_seconds == 7

    asyncio.run(go())
