"""The simulator and `switchboard flows validate|test` offline: paths, prompts, queues and attributes; suite
files with expected results; exit codes and diffs on mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from switchboard.flowdef.validate import validate_text
from switchboard_cli.main import cli

from services.ivr.simulator import load_suite, parse_time, run_case, simulate

HERE = Path(__file__).parent
# The fuller example flow (hours, CRM lookup, dynamic menu); docs/examples/demo-flow.yaml is the demo line.
DEMO = HERE / "flows" / "acme-main-line.yaml"
SUITE = HERE / "flows" / "demo.tests.yaml"
IN_HOURS = "2026-11-23T10:00:00-05:00"


@pytest.fixture(autouse=True)
def _no_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No API key anywhere: the commands under test must work offline.
    monkeypatch.delenv("SB_API_KEY", raising=False)
    monkeypatch.setenv("SB_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def demo():  # type: ignore[no-untyped-def]
    flow = validate_text(DEMO.read_text()).flow
    assert flow is not None
    return flow


def test_simulate_paths_prompts_queue_and_attributes() -> None:
    r = simulate(demo(), digits=["2"], at=parse_time(IN_HOURS), lookups={"crm": {"vip": False}})
    assert r.path == ["greeting", "hours", "crm", "main_menu", "to_support"]
    assert r.prompts[0] == "Thank you for calling Acme." and "For sales press 1" in r.prompts[1]
    assert (r.queue, r.outcome, r.attributes["intent"]) == ("support", "queued", "support")
    assert r.digits_used == ["2"] and r.lookups == ["crm"]


def test_simulate_lookup_error_status_and_missing_stub() -> None:
    r = simulate(demo(), digits=["1"], at=parse_time(IN_HOURS), lookups={"crm": {"status": 503}})
    assert r.attributes["lookup_error"] == "status 503" and r.queue == "sales"
    r = simulate(demo(), digits=["1"], at=parse_time(IN_HOURS))
    assert any("no stub" in n for n in r.notes) and r.attributes["lookup_error"] == "timeout"


def test_suite_passes_and_a_wrong_expectation_fails_with_a_diff(tmp_path: Path) -> None:
    flow_file, cases = load_suite(SUITE)
    assert flow_file is not None and Path(flow_file).resolve() == DEMO.resolve()
    assert all(run_case(demo(), c).ok for c in cases)
    code, out, _ = run("flows", "test", "--suite", str(SUITE))
    assert code == 0, out
    assert "5 passed, 0 failed" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"flow: {DEMO}\n"
        "cases:\n"
        "  - name: wrong queue\n"
        f"    at: '{IN_HOURS}'\n"
        "    digits: [1]\n"
        "    lookups: {crm: {vip: false}}\n"
        "    expect: {queue: billing, path: [greeting, hours, main_menu, to_sales]}\n"
    )
    code, out, _ = run("flows", "test", "--suite", str(bad))
    assert code == 1
    assert "FAIL wrong queue" in out and "queue: expected 'billing', got 'sales'" in out
    assert "-main_menu" not in out and "+crm" in out  # a unified diff of the path
    code, out, _ = run("flows", "test", "--suite", str(bad), "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_suite_file_errors_are_usage_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("cases:\n  - name: x\n    expect: {colour: red}\n")
    code, _, err = run("flows", "test", str(DEMO), "--suite", str(broken))
    assert code == 2 and "colour" in err


def test_cli_test_single_run_human_and_json() -> None:
    code, out, _ = run(
        "flows",
        "test",
        str(DEMO),
        "--digits",
        "3",
        "--at",
        IN_HOURS,
        "--lookup",
        'crm={"vip": false}',
        "--attr",
        "source=web",
        "--caller",
        "+15557654321",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["queue"] == "billing" and data["attributes"]["source"] == "web"
    assert data["attributes"]["caller"] == "+15557654321"
    code, out, _ = run("flows", "test", str(DEMO), "--digits", "1", "--at", "2026-11-23T22:00:00-05:00")
    assert code == 0 and "greeting > hours > after_hours" in out
    code, _, err = run("flows", "test", str(DEMO), "--lookup", "crm={nope")
    assert code == 2 and "not JSON" in err
    code, _, err = run("flows", "test", str(DEMO), "--at", "yesterday")
    assert code == 2 and "ISO 8601" in err


def test_cli_validate_exit_codes_and_line_numbers(tmp_path: Path) -> None:
    code, out, _ = run("flows", "validate", str(DEMO))
    assert code == 0 and "valid: 0 error(s)" in out and "offline" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("next: hours", "next: hourz"))
    code, out, _ = run("flows", "validate", str(bad))
    line = DEMO.read_text().splitlines().index("    next: hours") + 1
    assert code == 1 and f"bad.yaml:{line}: error: dangling reference: no node named 'hourz'" in out
    code, out, _ = run("flows", "validate", str(bad), "--json")
    errors = [i for i in json.loads(out)["issues"] if i["severity"] == "error"]
    assert code == 1 and errors[0]["line"] == line and "unreachable" in errors[1]["message"]
    code, _, err = run("flows", "validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in err
    code, _, err = run("flows", "test", str(bad), "--digits", "1")
    assert code == 1 and "not a valid flow" in err
