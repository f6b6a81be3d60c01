"""The `switchboard` commands docs/*.md show run as tested examples against the session's API (the
`api_server` fixture; no platform of their own): each console block runs in a fresh profile and tenant, its
commands in order, as a tenant would type them. Each must exit 0, or non-zero where the doc shows an
`error:` (a documented refusal), and where the doc shows output the output must have its shape: every shown
line's leading words (up to the first id, number or quote) appear in what the command printed, in order,
and shown JSON has the same keys.

A command that cannot run here says so in the doc itself, visibly, with a trailing comment
`# not run by the docs test: WHY`; `test_commands_not_run_are_marked_with_a_reason` lists them. The README's
quick start runs for real in tests/e2e/first_call/test_readme_calls.py; tests/unit/docs parses every
command against the CLI's own click tree.

What a block uses but does not make (a queue, a site, the agent Ann) is made first through the CLI
(`SETUP`); emails and phone numbers are made unique per block (the suite shares one database)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from switchboard_cli.main import cli

from tests.unit.docs.doc_commands import REPO, doc_commands

DOCS = sorted((REPO / "docs").glob("*.md"))
NOT_RUN = re.compile(r"#.*\bnot run by the docs test:\s*(?P<why>.*\S)")


def why_not_run(text: str) -> str | None:
    """The reason a doc gives for not running a command here (the comment may close a parenthesis)."""
    match = NOT_RUN.search(text)
    if match is None:
        return None
    why = match.group("why")
    return why[:-1] if why.endswith(")") and why.count(")") > why.count("(") else why


@dataclass
class Step:
    line: int
    text: str  # the command as typed (continuations joined)
    shown: list[str] = field(default_factory=list)  # the output the doc shows under it

    def not_run(self) -> str | None:
        return why_not_run(self.text)


@dataclass
class Block:
    path: Path
    line: int
    steps: list[Step]

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    """The console blocks of a doc that run `switchboard`: `$ ` lines, and what the doc shows under each."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        start, steps, pending = i + 2, [], ""
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            raw = lines[i].strip()
            if raw.startswith("$ ") or pending:
                text = f"{pending} {raw[2:] if raw.startswith('$ ') else raw}".strip()
                if text.endswith("\\"):
                    pending = text[:-1].strip()
                else:
                    pending = ""
                    steps.append(Step(i + 1, text))
            elif steps:
                steps[-1].shown.append(lines[i])
            i += 1
        ours = [s for s in steps if re.match(r"switchboard(\s|$)", s.text)]
        if ours:
            blocks.append(Block(path, start, ours))
        i += 1
    return blocks


BLOCKS = [b for path in DOCS for b in _blocks(path)]

# What a block may use without making it: (the block mentions, the block makes it itself, how to make it).
SETUP: list[tuple[str, str, list[str]]] = [
    (r"ann@acme", r"agents add [^\n]*ann@acme", ["agents", "add", "--name", "Ann Lee", "--email", "ann@acme.example"]),
    (r"\bSales\b", r"queues create Sales", ["queues", "create", "Sales"]),
    (r"\bSupport\b", r"queues create Support", ["queues", "create", "Support"]),
    (r"\bBilling\b", r"queues create Billing", ["queues", "create", "Billing"]),
    (r"\bVIP\b", r"queues create VIP", ["queues", "create", "VIP"]),
    (r"\bParis\b", r"sites add Paris", ["sites", "add", "Paris", "--timezone", "Europe/Paris"]),
    (r"queues remove Sales", r"numbers claim", ["numbers", "claim", "+15550100100", "--queue", "Sales"]),
]  # fmt: skip


class Tenant:
    """One block's profile (its own config directory) and, unless the block signs up, its own tenant."""

    def __init__(self, api: str, config_home: Path) -> None:
        self.env = {
            "XDG_CONFIG_HOME": str(config_home),
            "SB_API_URL": api,
            "SB_API_KEY": None,
            "SB_PROFILE": None,
        }
        tag = uuid.uuid4().hex[:8]
        number = f"{uuid.uuid4().int % 1000:03d}"
        # Unique across the suite's tenants: sign-in emails and claimed numbers are.
        self.swaps = [
            ("acme.example", f"acme-{tag}.example"),
            ("+1 555 010 ", f"+1 555 {number} "),
            ("+1555010", f"+1555{number}"),
        ]
        self.captured: dict[str, str] = {}

    def swap(self, text: str) -> str:
        for doc, ours in self.swaps:
            text = text.replace(doc, ours)
        for doc, ours in self.captured.items():
            text = text.replace(doc, ours)
        return text

    def run(self, argv: list[str], stdin: str | None = None) -> Result:
        return CliRunner().invoke(cli, argv, env=self.env, input=stdin, catch_exceptions=False)

    def ok(self, *argv: str) -> Result:
        result = self.run(list(argv))
        assert result.exit_code == 0, (argv, result.output)
        return result


def _lead(line: str) -> str:
    """A shown line's leading words, up to what differs run to run (an id, a number, a quote, `...`)."""
    text = " ".join(line.split())
    return re.split(r"[0-9(\"'<]|\.\.\.|sbk_|pk_|/home/", text, maxsplit=1)[0].strip()


def _check_shape(step: Step, shown: list[str], printed: str, where: str) -> None:
    text = "\n".join(shown).strip()
    if text.startswith(("{", "[")):
        try:
            expected = json.loads(text)
        except json.JSONDecodeError:
            expected = None
        if expected is not None:
            got = json.loads(printed)
            if isinstance(expected, dict):
                assert set(expected) <= set(got), (
                    f"{where}: {step.text}: keys {sorted(got)} lack {sorted(expected)}"
                )
            return
    lines = [" ".join(x.split()) for x in printed.splitlines()]
    at = 0
    for shown_line in shown:
        lead = _lead(shown_line)
        if len(lead) < 4 or set(lead) <= set("─-= "):
            continue  # a row of values, a rule, or an elision: nothing stable to compare
        for k in range(at, len(lines)):
            if lines[k].startswith(lead):
                at = k + 1
                break
        else:
            raise AssertionError(f"{where}: {step.text}: no line starts {lead!r} in:\n{printed}")


def _pipe(after: str, stdout: str) -> str:
    """The rest of a pipeline (`| jq ...`), run by the shell on what the command printed."""
    done = subprocess.run(["bash", "-c", after], input=stdout, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, (after, done.stderr)
    return done.stdout


def _run_block(block: Block, api: str, config_home: Path) -> None:
    t = Tenant(api, config_home)
    run = [s for s in block.steps if s.not_run() is None]
    if not run:
        return
    typed = "\n".join(s.text for s in run)
    seen = "\n".join([typed, *(line for s in run for line in s.shown)])
    if not re.search(r"switchboard signup", typed):
        t.ok("signup", "--company", "Acme Ltd", "--email", t.swap("ops@acme.example"), "--api-url", api)
        t.ok("seats", "buy", "3")
    for mentions, makes, argv in SETUP:
        if re.search(mentions, seen) and not re.search(makes, typed):
            t.ok(*[t.swap(a) for a in argv])
    if "--role developer" not in typed and "sbk_" in typed:
        created = json.loads(t.ok("keys", "create", "--role", "developer", "--name", "docs", "--json").output)
        t.captured["sbk_oE5Z..."] = created["key"]
    for step in run:
        where = f"{block.path.relative_to(REPO)}:{step.line}"
        command, _, after = t.swap(step.text).partition(" | ")
        argv = shlex.split(command, comments=True)[1:]
        stdin = "pw-0123456789\npw-0123456789\n" if "--password -" in command else None
        result = t.run(argv, stdin)
        shown = [t.swap(x) for x in step.shown]
        refused = bool(shown) and shown[0].startswith("error:")
        if refused:
            assert result.exit_code != 0, (
                f"{where}: {step.text}: exit 0, the doc shows an error:\n{result.output}"
            )
            printed = result.stderr
        else:
            assert result.exit_code == 0, f"{where}: {step.text}: exit {result.exit_code}:\n{result.output}"
            printed = _pipe(after, result.stdout) if after else result.output
        _capture(t, step, result.stdout)
        if shown:
            _check_shape(step, shown, printed, where)


def _capture(t: Tenant, step: Step, printed: str) -> None:
    """Ids the doc's later commands name by example value: use the ones this run made instead."""
    if step.text.startswith("switchboard widget-keys add"):
        key = re.search(r"pk_[A-Za-z0-9_-]+", printed)
        if key:
            t.captured["pk_xZmUnD7ynQPcBh-Zoq1XsV5kYrLaR34e"] = key.group(0)
    if step.text.startswith("switchboard keys create"):
        ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", printed)
        if ids:
            t.captured["01a20900-2400-745b-8d3b-c78ae6bf464a"] = ids[0]


def test_the_docs_show_blocks_to_run() -> None:
    assert len(BLOCKS) >= 20, [b.where() for b in BLOCKS]
    # Every `switchboard` command the docs show is in a block run here (or marked as not run).
    in_blocks = {(b.path, s.line) for b in BLOCKS for s in b.steps}
    shown = doc_commands(DOCS)
    outside = [c.where() for c in shown if (c.path, c.line) not in in_blocks and not NOT_RUN.search(c.text)]
    assert not outside, f"commands outside a console block, neither run nor marked: {outside}"


def test_commands_not_run_are_marked_with_a_reason() -> None:
    marked = [(c.where(), why_not_run(c.text)) for c in doc_commands(DOCS)]
    listed = [(where, why) for where, why in marked if why is not None]
    print("\nshown in the docs, not run by this test:")
    for where, why in listed:
        print(f"  {where}: {why}")
    assert all(len(why) > 10 for _, why in listed), listed


@pytest.mark.parametrize("block", BLOCKS, ids=Block.where)
def test_each_docs_block_runs_as_shown(block: Block, api_server: str, tmp_path: Path) -> None:
    _run_block(block, api_server, tmp_path / "config")
