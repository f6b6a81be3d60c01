"""`switchboard flows ...` and `numbers route` against the real API server (the `api_server` fixture)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

DEMO = Path(__file__).resolve().parents[3] / "tests" / "unit" / "ivr" / "flows" / "acme-main-line.yaml"


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    return result


@pytest.fixture
def tenant(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:10]
    run("signup", "--company", f"IVR {tag}", "--email", f"ivr-{tag}@acme.example", "--api-url", api_server)
    return tag


def test_flows_journey(tenant: str, tmp_path: Path) -> None:
    # Online validation knows the tenant's queues: none exist yet.
    result = run("flows", "validate", str(DEMO), code=1)
    assert "unknown queue 'support'" in result.stdout and "offline" not in result.stdout
    result = run("flows", "deploy", str(DEMO), code=1)
    assert "unknown queue" in result.stderr and f"{DEMO}:" in result.stderr
    # One line per error, then one line that counts them (not a repeat of the first).
    *found, last = result.stderr.splitlines()
    assert all(line.startswith(f"{DEMO}:") for line in found) and len(found) >= 1
    assert last == f"error: flows deploy refused: {DEMO} is not valid ({len(found)} error(s) above)"
    for name in ("sales", "support", "billing"):
        run("queues", "create", name)
    run("flows", "validate", str(DEMO))

    assert "Deployed main-line version 1" in run("flows", "deploy", str(DEMO)).stdout
    v2 = tmp_path / "v2.yaml"
    v2.write_text(DEMO.read_text().replace("Thank you for calling Acme.", "Welcome to Acme."))
    deployed = json.loads(run("flows", "deploy", str(v2), "--json").stdout)
    assert deployed["version"] == 2 and deployed["flow"]["current_version"] == 2

    flows = json.loads(run("flows", "list", "--json").stdout)
    assert [(f["name"], f["current_version"], f["latest_version"]) for f in flows] == [("main-line", 2, 2)]
    assert "main-line" in run("flows", "list").stdout
    versions = json.loads(run("flows", "versions", "main-line", "--json").stdout)
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, True)]
    assert "Welcome to Acme." in run("flows", "show", "main-line").stdout
    assert "Thank you for calling Acme." in run("flows", "show", "main-line", "--version", "1").stdout

    assert "version 1 is current" in run("flows", "rollback", "main-line", "1").stdout
    assert "Thank you for calling Acme." in run("flows", "show", "main-line").stdout
    assert "has no version 9" in run("flows", "rollback", "main-line", "9", code=1).stderr

    e164 = "+1555" + str(uuid.uuid4().int)[:8]
    run("numbers", "claim", e164)
    assert "now goes to flow main-line" in run("numbers", "route", e164, "--flow", "main-line").stdout
    listed = json.loads(run("numbers", "list", "--json").stdout)
    assert listed[0]["flow_id"] == flows[0]["id"]
    assert "no flow named 'nope'" in run("numbers", "route", e164, "--flow", "nope", code=1).stderr
    assert "still point" in run("flows", "delete", "main-line", code=1).stderr
    run("numbers", "route", e164, "--none")
    run("flows", "delete", "main-line")
    assert run("flows", "list", "--json").stdout.strip() == "[]"
    assert "no flow named 'main-line'" in run("flows", "versions", "main-line", code=1).stderr
