"""The shell commands the README and docs/*.md show, read from their fenced blocks (```sh, ```console,
```bash): each `switchboard ...` line as a person would paste it (`$ ` prompts and `# comments` removed,
`\\` continuations joined)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO", "DocCommand", "doc_commands", "fenced_blocks", "unquoted_redirection"]

REPO = Path(__file__).resolve().parents[3]
_FENCE = re.compile(r"^```(\w*)\s*$")
_SHELLS = {"sh", "bash", "console", "shell"}
_PROGRAM = re.compile(r"^(?:\.venv/bin/)?switchboard(?:\s|$)")


@dataclass(frozen=True)
class DocCommand:
    path: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def argv(self) -> list[str]:
        """The arguments after `switchboard`, split as the shell would (comments dropped)."""
        lexer = shlex.shlex(self.text, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        return list(lexer)[1:]


def fenced_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced block."""
    blocks: list[tuple[str, int, list[str]]] = []
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = _FENCE.match(line.strip())
        if fence and lang is None:
            lang, start, body = fence.group(1), number + 1, []
        elif line.strip() == "```" and lang is not None:
            blocks.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def doc_commands(paths: list[Path]) -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in paths:
        for lang, start, body in fenced_blocks(path):
            if lang not in _SHELLS:
                continue
            pending = ""
            for offset, raw in enumerate(body):
                line = raw.strip()
                if lang == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                if pending:
                    line = f"{pending} {line}"
                if line.endswith("\\"):
                    pending = line[:-1].strip()
                    continue
                pending = ""
                if _PROGRAM.match(line):
                    found.append(DocCommand(path, start + offset, line))
    return found


def unquoted_redirection(text: str) -> str | None:
    """A `<` or `>` glued to a word outside quotes (`--skills sales>=5`): the shell would redirect."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text.split(" #", 1)[0])
    match = re.search(r"\S*\w[<>]=?\S*", unquoted)
    return match.group(0) if match else None
