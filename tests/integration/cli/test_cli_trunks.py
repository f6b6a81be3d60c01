"""`switchboard trunks` and `client.trunks` (sync and async) against the real API (the `api_server` fixture)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli
from switchboard_cli.trunks import parse_outbound

PASSWORD = "trunk-pass-42"


def new_tenant(api_server: str) -> switchboard.SignupResult:
    tag = uuid.uuid4().hex[:10]
    return switchboard.signup(f"Trunks {tag}", f"trunks-{tag}@acme.example", base_url=api_server)


@pytest.fixture
def run(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE", "SB_TRUNK_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:10]
    signed = CliRunner().invoke(
        cli,
        ["signup", "--company", f"Cli {tag}", "--email", f"c-{tag}@acme.example", "--api-url", api_server],
        catch_exceptions=False,
    )
    assert signed.exit_code == 0, signed.stderr

    def invoke(
        *args: str, code: int = 0, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code:
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        return result

    return invoke


def test_trunks_add_list_remove(run: Any) -> None:
    out = run(
        "trunks", "add", "carrier", "--allow-ip", "203.0.113.0/24", "--allow-ip", "2001:db8::1",
        "--username", "pbx", "--password", PASSWORD, "--outbound", "sip.carrier.example:5080", "--transport", "tcp",
    ).stdout  # fmt: skip
    assert "Added trunk carrier" in out and "digest user pbx" in out and PASSWORD not in out
    listed = json.loads(run("trunks", "list", "--json").stdout)
    assert len(listed) == 1 and PASSWORD not in json.dumps(listed)
    t = listed[0]
    assert t["allowed_ips"] == ["203.0.113.0/24", "2001:db8::1"] and t["has_credentials"] is True
    assert (t["outbound_host"], t["outbound_port"], t["outbound_transport"]) == (
        "sip.carrier.example",
        5080,
        "tcp",
    )
    table = run("trunks", "list").stdout
    assert "carrier" in table and "sip.carrier.example:5080/tcp" in table

    # The password from the environment, or typed at a hidden prompt with `--password -`.
    env_trunk = json.loads(
        run(
            "trunks", "add", "from-env", "--username", "u2", "--json", env={"SB_TRUNK_PASSWORD": PASSWORD}
        ).stdout
    )
    assert env_trunk["has_credentials"] is True
    typed = run(
        "trunks", "add", "typed", "--username", "u3", "--password", "-", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert PASSWORD not in typed.stdout and "Added trunk typed" in typed.stdout

    # Errors: one line each.
    assert "--username needs --password" in run("trunks", "add", "x", "--username", "u", code=2).stderr
    assert "--password needs --username" in run("trunks", "add", "x", "--password", PASSWORD, code=2).stderr
    assert "port" in run("trunks", "add", "x", "--outbound", "h:99999", code=2).stderr
    assert "at least one of" in run("trunks", "add", "empty", code=1).stderr
    assert "host bits" in run("trunks", "add", "x", "--allow-ip", "10.0.0.1/8", code=1).stderr
    assert "already exists" in run("trunks", "add", "carrier", "--allow-ip", "192.0.2.1", code=1).stderr

    removed = json.loads(run("trunks", "remove", "CARRIER", "--json").stdout)
    assert removed["id"] == t["id"]
    assert "Removed trunk typed" in run("trunks", "remove", "typed").stdout
    assert "no trunk named 'carrier'" in run("trunks", "remove", "carrier", code=1).stderr
    assert [x["name"] for x in json.loads(run("trunks", "list", "--json").stdout)] == ["from-env"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip.example", ("sip.example", None)),
        ("sip.example:5080", ("sip.example", 5080)),
        ("192.0.2.1:5060", ("192.0.2.1", 5060)),
        ("[2001:db8::1]:5070", ("2001:db8::1", 5070)),
        ("2001:db8::1", ("2001:db8::1", None)),
    ],
)
def test_outbound_parsing(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_outbound(text) == expected


def test_sdk_trunks_sync(api_server: str) -> None:
    signup = new_tenant(api_server)
    with switchboard.Client(api_key=signup.api_key.key, base_url=api_server) as client:
        trunk = client.trunks.create("sdk", username="pbx", password=PASSWORD, outbound_host="192.0.2.5")
        assert isinstance(trunk, switchboard.Trunk) and trunk.has_credentials and trunk.outbound_port == 5060
        assert client.trunks.get(trunk.id) == trunk
        changed = client.trunks.update(trunk.id, username=None, allowed_ips=["192.0.2.0/28"])
        assert not changed.has_credentials and changed.allowed_ips == ["192.0.2.0/28"]
        assert [t.id for t in client.trunks.list().items] == [trunk.id]
        with pytest.raises(switchboard.ValidationError) as err:
            client.trunks.update(trunk.id, username="new-user")
        assert "password" in str(err.value)
        client.trunks.delete(trunk.id)
        with pytest.raises(switchboard.NotFoundError):
            client.trunks.get(trunk.id)


async def test_sdk_trunks_async(api_server: str) -> None:
    signup = new_tenant(api_server)
    async with switchboard.AsyncClient(api_key=signup.api_key.key, base_url=api_server) as client:
        trunk = await client.trunks.create("async", allowed_ips=["198.51.100.7"], outbound_transport="udp")
        assert trunk.allowed_ips == ["198.51.100.7"] and trunk.outbound_host is None
        updated = await client.trunks.update(trunk.id, outbound_host="sip.example", outbound_transport="tcp")
        assert (updated.outbound_host, updated.outbound_transport) == ("sip.example", "tcp")
        assert (await client.trunks.get(trunk.id)).name == "async"
        assert [t.name for t in (await client.trunks.list()).items] == ["async"]
        await client.trunks.delete(trunk.id)
        assert (await client.trunks.list()).items == []


def test_a_trunk_change_that_decides_local_calls_is_warned_about(run: Any) -> None:
    added = run("trunks", "add", "carrier", "--allow-ip", "203.0.113.0/24", "--json")
    assert json.loads(added.stdout)["name"] == "carrier"  # stdout stays the document
    assert "warning:" in added.stderr and "127.0.0.1" in added.stderr and "401/403" in added.stderr
    # Already blocked: a second trunk changes nothing for local calls, so no warning.
    assert "warning" not in run("trunks", "add", "second", "--allow-ip", "198.51.100.7").stderr
    # A trunk that lets loopback in: accepted again, said once.
    local = run("trunks", "add", "lab", "--allow-ip", "127.0.0.0/8")
    assert "accepted again" in local.stderr
    assert "warning:" in run("trunks", "remove", "lab").stderr  # blocked again
    run("trunks", "remove", "second")
    gone = run("trunks", "remove", "carrier")
    assert "no trunks left" in gone.stderr
