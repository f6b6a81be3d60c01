"""The README's "first five minutes" run as written, line by line, by bash in a fresh shell (the installed
`switchboard` on PATH, an empty config home) against the real API; then its first-call routing line. What
each step printed is checked where the README says what it does."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from tests.unit.docs.doc_commands import REPO, fenced_blocks

README = REPO / "README.md"


def _block_after(heading: str) -> list[str]:
    text = README.read_text().splitlines()
    start = text.index(heading) + 1
    for lang, first, lines in fenced_blocks(README):
        if lang == "sh" and first > start:
            return [line for line in lines if line.strip()]
    raise AssertionError(f"no sh block after {heading!r}")


def test_the_readme_first_steps_run_as_written(api_server: str, tmp_path: Path) -> None:
    steps = _block_after("## A tenant's first five minutes")
    route = next(line for line in _block_after("## Take a first call") if "numbers route" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        SB_API_URL=api_server,  # the README's platform is on the default address; this one is not
    )
    outputs = []
    for step in [*steps, route]:
        done = subprocess.run(
            ["bash", "-c", step], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (step, done.stdout, done.stderr)
        outputs.append(done.stdout)
    try:
        by_command = dict(zip([s.split("#")[0].strip() for s in [*steps, route]], outputs, strict=True))
        signup = next(v for k, v in by_command.items() if k.startswith("switchboard signup"))
        assert "Signed up Acme Support" in signup and "sbk_" in signup
        agents = next(v for k, v in by_command.items() if k == "switchboard agents list")
        for email in ("ada@acme.example", "bo@acme.example", "cy@acme.example"):
            assert email in agents
        assert agents.count("Home agents") == 2  # Ada and Bo were put on the site the README adds
        assert "seat-hours" in next(v for k, v in by_command.items() if k == "switchboard usage")
        assert "now goes straight to queue Sales" in outputs[-1]
    finally:
        _release_numbers(api_server, tmp_path / "config" / "switchboard" / "profiles.toml")


def _release_numbers(api_server: str, profiles: Path) -> None:
    """The README's number is fixed: give it back, so the steps can run again in the same database."""
    if not profiles.exists():
        return
    key = tomllib.loads(profiles.read_text()).get("default", {}).get("api_key")
    if not key:
        return
    with httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for number in client.get("/v1/numbers").json()["items"]:
            assert client.delete(f"/v1/numbers/{number['id']}").status_code == 204
