"""CLI behaviour that needs no API: option parsing, profile files, one-line errors and exit codes."""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from switchboard_cli import parsing, profiles
from switchboard_cli.main import cli


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


# Parsing ------------------------------------------------------------------------------------------------


def test_skills_parse_with_proficiency_0_to_10() -> None:
    assert parsing.parse_skills("sales=8,billing=5") == {"sales": 8, "billing": 5}
    assert parsing.parse_skills(" Sales = 0 , tech_2=10") == {"sales": 0, "tech_2": 10}
    assert parsing.parse_skills("") == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sales", "SKILL=LEVEL"),
        ("sales=11", "0 to 10"),
        ("sales=-1", "0 to 10"),
        ("sales=high", "0 to 10"),
        ("sales=5,sales=6", "twice"),
        ("sales=5,,billing=2", "empty item"),
        ("bad skill=5", "skill names"),
        ("x" * 41 + "=5", "skill names"),
    ],
)
def test_bad_skills_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parsing.parse_skills(text)


def test_queue_requirements_parse_minimums() -> None:
    assert parsing.parse_requirements("sales>=5,billing>=3") == {"sales": 5, "billing": 3}
    assert parsing.parse_requirements("sales>=0") == {"sales": 0}
    # What the shell leaves of an unquoted `--skills sales>=5`: refused, with the quoting to use.
    with pytest.raises(ValueError, match=r"'sales' has no level: .*--skills 'sales>=5'"):
        parsing.parse_requirements("sales")
    for bad in ("sales>5", "sales<=5", "sales>=11", "sales=>5"):
        with pytest.raises(ValueError):
            parsing.parse_requirements(bad)


def test_service_level_parses_percent_and_seconds() -> None:
    assert parsing.parse_service_level("80/20") == (80, 20)
    assert parsing.parse_service_level("90%/15s") == (90, 15)
    for bad, reason in (
        ("80", "PERCENT/SECONDS"),
        ("0/20", "percentage"),
        ("101/20", "percentage"),
        ("80/0", "1 to 3600"),
        ("80/3601", "1 to 3600"),
        ("a/b", "PERCENT/SECONDS"),
    ):
        with pytest.raises(ValueError, match=reason):
            parsing.parse_service_level(bad)


def test_e164_is_normalised_and_checked() -> None:
    assert parsing.parse_e164("+15550100") == "+15550100"
    assert parsing.parse_e164("+1 (555) 010-0100") == "+15550100100"
    for bad, reason in (
        ("5550100", "start with \\+"),
        ("0015550100", "leading \\+"),
        ("+0555010", "E.164"),
        ("+12345", "E.164"),
        ("+1234567890123456", "E.164"),
        ("+1555abc0100", "E.164"),
    ):
        with pytest.raises(ValueError, match=reason):
            parsing.parse_e164(bad)


def test_languages_and_timestamps() -> None:
    assert parsing.parse_languages("en,zh-HK,en") == ["en", "zh-HK"]
    with pytest.raises(ValueError, match="BCP 47"):
        parsing.parse_languages("english!")
    assert parsing.parse_timestamp("2026-11-01").isoformat() == "2026-11-01T00:00:00+00:00"
    assert parsing.parse_timestamp("2026-11-01T09:00+02:00").utcoffset() is not None
    with pytest.raises(ValueError, match="ISO 8601"):
        parsing.parse_timestamp("yesterday")


# Profiles -----------------------------------------------------------------------------------------------


def test_profiles_live_under_xdg_config_home(config_home: Path) -> None:
    assert profiles.profiles_path() == config_home / "switchboard" / "profiles.toml"


def test_saved_profile_is_private_and_written_atomically(config_home: Path) -> None:
    config_home.mkdir(mode=0o755)
    (config_home / "switchboard").mkdir(mode=0o755)  # too open: tightened on save
    path = profiles.save_profile("default", profiles.Profile("http://127.0.0.1:1", "sbk_one"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    profiles.save_profile("work", profiles.Profile("http://127.0.0.1:2", 'sbk_"two"\\'))
    profiles.save_profile("default", profiles.Profile("http://127.0.0.1:3", "sbk_three"))
    assert profiles.load_profiles() == {
        "default": profiles.Profile("http://127.0.0.1:3", "sbk_three"),
        "work": profiles.Profile("http://127.0.0.1:2", 'sbk_"two"\\'),
    }
    # Only the final file remains: no temporary files left behind by the atomic replace.
    assert sorted(p.name for p in path.parent.iterdir()) == ["profiles.toml"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_new_config_directory_is_created_0700_even_with_a_loose_umask(config_home: Path) -> None:
    old = os.umask(0o022)
    try:
        path = profiles.save_profile("default", profiles.Profile(None, "sbk_x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_profile_file_is_a_clear_one_line_error(config_home: Path) -> None:
    path = profiles.profiles_path()
    path.parent.mkdir(parents=True)
    path.write_text("[default\napi_key = ")
    code, out, err = run("whoami")
    assert code == 1 and out == ""
    assert err.startswith("error: cannot read") and "not valid TOML" in err and err.count("\n") == 1


def test_bad_profile_names_are_refused() -> None:
    with pytest.raises(profiles.ProfileError):
        profiles.check_profile_name("a b")
    with pytest.raises(profiles.ProfileError):
        profiles.check_profile_name("")


# Commands without an API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["seats", "buy", "0"], "'N'"),
        (["seats", "release", "1001"], "'N'"),
        (["seats", "buy", "three"], "'N'"),
        (["agents", "add", "--name", "A", "--email", "a@x.example", "--skills", "sales=11"], "--skills"),
        (["agents", "add", "--name", "A", "--email", "a@x.example", "--languages", "???"], "--languages"),
        (["queues", "create", "Q", "--sl", "80"], "--sl"),
        (["queues", "create", "Q", "--skills", "sales>11"], "--skills"),
        (["queues", "create", "Q", "--priority", "0"], "--priority"),
        (["numbers", "claim", "5550100"], "E164"),
        (["keys", "create", "--role", "root"], "--role"),
        (["usage", "--from", "yesterday"], "--from"),
        (["login", "--api-key", "not-a-key"], "--api-key"),
        (["sites", "add", "X", "--kind", "castle"], "--kind"),
    ],
)
def test_bad_input_is_a_one_line_usage_error_before_any_request(
    config_home: Path, args: list[str], needle: str
) -> None:
    # No API is running and no key is set: these must fail on parsing alone.
    for placement in (args, ["--json", *args], [*args, "--json"]):
        code, out, err = run(*placement)
        assert code == 2, (placement, err)
        assert out == ""
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_no_key_is_a_clear_error(config_home: Path) -> None:
    code, out, err = run("--profile", "nobody", "seats", "show", "--json")
    assert code == 1 and out == ""
    assert "no API key for profile 'nobody'" in err and "switchboard login" in err and err.count("\n") == 1


def test_unreachable_api_exits_3_with_a_hint(config_home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    env = {"SB_API_URL": f"http://127.0.0.1:{port}", "SB_API_KEY": "sbk_" + "a" * 43}
    code, out, err = run("seats", "show", "--json", env=env)
    assert code == 3 and out == ""
    assert err.startswith(f"error: cannot reach the API at http://127.0.0.1:{port}")
    assert "is `switchboard up` running?" in err and err.count("\n") == 1


def test_version_and_help(config_home: Path) -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("switchboard ")
    code, out, _ = run("--help")
    assert code == 0
    for name in (
        "signup",
        "login",
        "whoami",
        "seats",
        "usage",
        "sites",
        "agents",
        "queues",
        "numbers",
        "keys",
        "up",
    ):
        assert name in out


def test_up_that_cannot_be_imported_says_so_in_one_line(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail, as if the runtime were not installed.
    monkeypatch.setitem(sys.modules, "services.runtime.cli", None)
    code, out, err = run("up", "--demo", "--http-port", "1")
    assert code == 1 and out == ""
    assert err.startswith("error: `switchboard up` is not available here") and err.count("\n") == 1
