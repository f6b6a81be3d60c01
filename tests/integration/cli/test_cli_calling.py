"""`switchboard calling` and `client.calling` (sync and async) against the real API: callback settings and
the caller ID, which must be one of the tenant's own numbers."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli


@pytest.fixture
def run(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:10]
    signed = CliRunner().invoke(
        cli,
        [
            "signup",
            "--company",
            f"Calling {tag}",
            "--email",
            f"cl-{tag}@acme.example",
            "--api-url",
            api_server,
        ],
        catch_exceptions=False,
    )
    assert signed.exit_code == 0, signed.stderr

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code:
            assert result.stderr.startswith("error: ") or "Usage" in result.stderr, result.stderr
        return result

    return invoke


def test_calling_settings_show_set_and_refuse_a_caller_id_not_owned(run: Any) -> None:
    shown = run("calling", "show").stdout
    assert "agent-first" in shown and "the number the customer called" in shown
    changed = json.loads(
        run(
            "calling",
            "set",
            "--callbacks",
            "customer-first",
            "--attempts",
            "2",
            "--retry-seconds",
            "90",
            "--json",
        ).stdout
    )
    assert changed == {
        "callback_mode": "customer_first",
        "callback_attempts": 2,
        "callback_retry_seconds": 90,
        "callback_ring_seconds": 30,
        "caller_id": None,
    }
    # Only what is given changes.
    again = json.loads(run("calling", "set", "--ring-seconds", "20", "--json").stdout)
    assert again["callback_mode"] == "customer_first" and again["callback_ring_seconds"] == 20
    number = "+1555" + str(uuid.uuid4().int)[:8]
    refused = run("calling", "set", "--caller-id", number, code=1).stderr
    assert "is not one of this tenant's numbers" in refused and refused.count("\n") == 1
    assert "E.164" in run("calling", "set", "--caller-id", "12ab", code=1).stderr
    run("numbers", "claim", number)
    assert json.loads(run("calling", "set", "--caller-id", number, "--json").stdout)["caller_id"] == number
    assert json.loads(run("calling", "set", "--caller-id", "none", "--json").stdout)["caller_id"] is None
    assert "give at least one setting" in run("calling", "set", code=2).stderr
    assert "10" in run("calling", "set", "--attempts", "11", code=2).stderr


def test_sdk_calling_sync_and_async(api_server: str) -> None:
    tag = uuid.uuid4().hex[:10]
    signup = switchboard.signup(f"Calling SDK {tag}", f"cs-{tag}@acme.example", base_url=api_server)
    with switchboard.Client(signup.api_key.key, base_url=api_server) as client:
        assert client.calling.settings()["callback_mode"] == "agent_first"
        assert client.calling.update(callback_attempts=5)["callback_attempts"] == 5
        with pytest.raises(TypeError, match="unknown calling settings: mode"):
            client.calling.update(mode="x")
        with pytest.raises(switchboard.ValidationError):
            client.calling.update(callback_mode="whenever")

    async def run_async() -> dict[str, Any]:
        async with switchboard.AsyncClient(signup.api_key.key, base_url=api_server) as client:
            return await client.calling.update(callback_mode="customer_first")

    saved = asyncio.run(run_async())
    assert saved["callback_mode"] == "customer_first" and saved["callback_attempts"] == 5


def test_do_not_call_list_and_dial_permission_from_the_cli(run: Any) -> None:
    number = "+1555" + str(uuid.uuid4().int)[:8]
    assert f"{number} is on the do-not-call list" in run("dnc", "add", number, "--note", "asked").stdout
    listed = json.loads(run("dnc", "list", "--json").stdout)
    assert [(n["e164"], n["note"]) for n in listed] == [(number, "asked")]
    assert "already on the do-not-call list" in run("dnc", "add", number, code=1).stderr
    assert "E.164" in run("dnc", "add", "555", code=1).stderr
    run("dnc", "remove", number)
    assert "is not on the do-not-call list" in run("dnc", "remove", number, code=1).stderr
    assert json.loads(run("dnc", "list", "--json").stdout) == []
    run("agents", "add", "--name", "Dee Aler", "--email", f"dee-{uuid.uuid4().hex[:6]}@acme.example")
    agent = json.loads(run("agents", "list", "--json").stdout)[0]
    assert agent["can_dial"] is False
    assert "may dial out" in run("agents", "update", agent["id"], "--can-dial").stdout
    assert (
        json.loads(run("agents", "update", agent["id"], "--cannot-dial", "--json").stdout)["can_dial"]
        is False
    )
    assert agent["voicemail_capacity"] == 1
    updated = json.loads(run("agents", "update", agent["id"], "--voicemail-capacity", "3", "--json").stdout)
    assert updated["voicemail_capacity"] == 3
    assert "0<=x<=10" in run("agents", "update", agent["id"], "--voicemail-capacity", "11", code=2).stderr
    # Click-to-dial of an unknown agent: 404 before anything is placed.
    out = run("agent", "connect", "--email", agent["id"], "--dial", "+15550142", "--state", "away", code=2)
    assert "--dial needs --state available" in out.stderr
