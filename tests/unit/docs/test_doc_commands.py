"""Docs and code cannot drift: every `switchboard` command shown in README.md and docs/*.md names a command
that exists, with options it takes, and quotes what the shell would otherwise take for a redirection; every
link between the docs points at a file in the repository. Fast (no platform): the commands are parsed by
the CLI's own click tree here; tests/integration/cli/test_doc_examples.py runs the console blocks of docs/*.md
against the session's API. The README's quick start (the first five minutes, then the first call with
`agent connect` and SIPp) runs for real, as written, in tests/e2e/first_call/test_readme_calls.py."""

from __future__ import annotations

import re

import click
import pytest
from switchboard_cli.main import cli

from tests.unit.docs.doc_commands import REPO, DocCommand, doc_commands, unquoted_redirection

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMANDS = doc_commands(DOCS)


def resolve(argv: list[str]) -> tuple[click.Command, set[str]]:
    """The command an argv names and every option it (and its groups) accept; raises on unknown names."""
    command: click.Command = cli
    ctx = cli.make_context("switchboard", list(argv), resilient_parsing=True)
    options = {o for p in cli.params for o in (*p.opts, *p.secondary_opts)}
    while isinstance(command, click.Group):
        rest = (
            ctx._protected_args + ctx.args
            if hasattr(ctx, "_protected_args")
            else ctx.protected_args + ctx.args
        )
        words = [w for w in rest if not w.startswith("-")]
        if not words:
            break
        name = words[0]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no command {' '.join([*ctx.command_path.split()[1:], name])!r}")
        ctx = sub.make_context(name, rest[rest.index(name) + 1 :], parent=ctx, resilient_parsing=True)
        options |= {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
        command = sub
    return command, options


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 60, len(COMMANDS)
    assert any(c.path.name == "README.md" for c in COMMANDS)


@pytest.mark.parametrize("doc", COMMANDS, ids=DocCommand.where)
def test_each_documented_command_exists_with_its_options(doc: DocCommand) -> None:
    glued = unquoted_redirection(doc.text)
    assert glued is None, f"{doc.where()}: quote {glued!r}: unquoted, the shell takes it for a redirection"
    argv = doc.argv()
    if "|" in argv:
        argv = argv[: argv.index("|")]
    try:
        command, options = resolve(argv)
    except click.UsageError as exc:
        raise AssertionError(f"{doc.where()}: {doc.text}: {exc.format_message()}") from None
    assert not isinstance(command, click.Group) or argv == [] or command is cli, f"{doc.where()}: {doc.text}"
    for word in argv:
        if word.startswith("--") or (word.startswith("-") and len(word) == 2 and word[1].isalpha()):
            name = word.split("=", 1)[0]
            assert name in options, f"{doc.where()}: {doc.text}: `{command.name}` has no option {name}"


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_links_between_docs_point_inside_the_repository() -> None:
    broken = []
    for path in DOCS:
        for target in _LINK.findall(path.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # a URL, not a file
            if not (path.parent / target).resolve().exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_no_doc_names_the_shared_design_files_outside_the_repository() -> None:
    for path in DOCS:
        text = path.read_text()
        for outside in ("ARCHITECTURE.md", "STACK-NOTES", "STYLE.md", "/work/shared"):
            assert outside not in text, f"{path.relative_to(REPO)} names {outside}"
