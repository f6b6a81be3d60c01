"""Reading a flow file: YAML or JSON text -> data plus the line of every key, and msgspec decoding whose errors
name the line they come from (decoded node by node, so a message can say which node it is about)."""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec
import yaml

from .flow import Flow, Node, SubflowBody

__all__ = ["Issue", "LineMap", "Severity", "decode_flow", "read_source"]

Path = tuple[str | int, ...]
MAX_DEPTH = 32
# A YAML row's indentation with its sequence markers ("  - - "): their count is the row's list depth.
_LIST_MARKERS = re.compile(r"^[ \t]*(?:-[ \t]+)*")


class Severity(enum.Enum):
    error = "error"
    warning = "warning"
    note = "note"


class Issue(msgspec.Struct, kw_only=True):
    severity: str
    message: str
    line: int | None = None
    path: str = ""

    def render(self, filename: str = "flow") -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        at = f" ({self.path})" if self.path else ""
        return f"{where}: {self.severity}: {self.message}{at}"


class LineMap:
    """The 1-based line of every mapping key and sequence item, by path from the document root."""

    def __init__(self, lines: dict[Path, int] | None = None) -> None:
        self.lines = lines or {}

    def line(self, path: Path) -> int | None:
        # The nearest enclosing thing that has a line: a missing field is reported at its parent.
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    @staticmethod
    def from_yaml(node: yaml.Node | None) -> LineMap:
        lines: dict[Path, int] = {}

        def walk(n: yaml.Node, path: Path) -> None:
            if isinstance(n, yaml.MappingNode):
                for key, value in n.value:
                    k = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
                    lines.setdefault((*path, k), key.start_mark.line + 1)
                    walk(value, (*path, k))
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines.setdefault((*path, i), item.start_mark.line + 1)
                    walk(item, (*path, i))

        if node is not None:
            lines[()] = node.start_mark.line + 1
            walk(node, ())
        return LineMap(lines)


def render_path(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _too_deep(text: str) -> int | None:
    """The line where flow brackets or "- - -" sequences nest deeper than MAX_DEPTH, found without parsing:
    PyYAML's scanner is quadratic in flow nesting and its C loader crashes on deep documents."""
    depth = 0
    quote = ""
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth -= 1
    for number, row in enumerate(text.splitlines(), start=1):
        markers = _LIST_MARKERS.match(row)  # matches every row (perhaps empty)
        if markers is not None and len(markers.group(0).split("-")) > MAX_DEPTH:
            return number
    return None


def read_source(text: str) -> tuple[Any, LineMap, list[Issue]]:
    """Parse YAML (JSON is YAML too); syntax errors carry their line."""
    deep = _too_deep(text)
    if deep is not None:
        return (
            None,
            LineMap(),
            [Issue(severity="error", message=f"nested more than {MAX_DEPTH} levels deep", line=deep)],
        )
    try:
        # Aliases could make a small file expand exponentially when walked: flows have no use for them.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1
                return (
                    None,
                    LineMap(),
                    [
                        Issue(
                            severity="error", message="YAML anchors and aliases are not supported", line=line
                        )
                    ],
                )
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
        lines = LineMap.from_yaml(node)
    except RecursionError:
        return None, LineMap(), [Issue(severity="error", message="the document is nested too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return (
            None,
            LineMap(),
            [Issue(severity="error", message=f"not valid YAML/JSON: {exc.problem}", line=line)],
        )
    except yaml.YAMLError as exc:
        return None, LineMap(), [Issue(severity="error", message=f"not valid YAML/JSON: {exc}")]
    return data, lines, []


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<key>key` in `)?(?P<path>\$[^`]*)`)?$", re.S)
_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_FIELD = re.compile(r"(?:unknown|required) field `([^`]+)`")
_REGEX = re.compile(r"^Expected `str` matching regex '(?P<pattern>.*)'$", re.S)
# What each pattern of flow.py means, said for a person instead of the regex (keyed by the regex as msgspec
# prints it, backslashes doubled).
PATTERN_TEXT = {
    r"^[a-z0-9][a-z0-9_\\-]{0,62}$": "a flow name is up to 63 lowercase letters, digits, '-' or '_', starting "
    "with a letter or digit (e.g. sales-line)",
    r"^[A-Za-z_][A-Za-z0-9_\\-]{0,63}$": "a node name is up to 64 letters, digits, '-' or '_', starting with a "
    "letter or '_' (e.g. main_menu)",
    r"^[0-9*#]$": "one DTMF key: 0-9, * or #",
    r"^[A-Za-z_][A-Za-z0-9_.\\-]{0,63}$": "an attribute name is up to 64 letters, digits, '.', '-' or '_', "
    "starting with a letter or '_'",
    r"^https?://": "a URL starting with http:// or https://",
}


def _error(exc: msgspec.ValidationError, base: Path, lines: LineMap) -> Issue:
    match = _AT.match(str(exc))
    assert match is not None
    message = match.group("msg")
    path: list[str | int] = list(base)
    if match.group("path"):
        for name, index in _PART.findall(match.group("path")[1:]):
            if name:
                path.append(name)
            elif index:
                path.append(int(index))
    regex = _REGEX.match(message)
    if regex and regex.group("pattern") in PATTERN_TEXT:
        message = PATTERN_TEXT[regex.group("pattern")]
    if match.group("key"):
        message = f"bad key: {message}"
    field = _FIELD.search(message)
    if field and "unknown" in message:
        path.append(field.group(1))  # point at the unknown key itself
    return Issue(
        severity="error", message=message, line=lines.line(tuple(path)), path=render_path(tuple(path))
    )


def _decode_nodes(raw: Any, base: Path, lines: LineMap, issues: list[Issue]) -> dict[str, Node]:
    if not isinstance(raw, dict):
        issues.append(
            Issue(
                severity="error",
                message="`nodes` must be a map of node name -> node",
                line=lines.line(base),
                path=render_path(base),
            )
        )
        return {}
    nodes: dict[str, Node] = {}
    for name, body in raw.items():
        where = (*base, name)
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$", name):
            issues.append(
                Issue(
                    severity="error",
                    message=f"bad node name {name!r}: letters, digits, _ and -",
                    line=lines.line(where),
                    path=render_path(where),
                )
            )
            continue
        if not isinstance(body, dict) or "type" not in body:
            issues.append(
                Issue(
                    severity="error",
                    message="a node is a map with a `type`",
                    line=lines.line(where),
                    path=render_path(where),
                )
            )
            continue
        try:
            nodes[name] = msgspec.convert(body, Node)
        except msgspec.ValidationError as exc:
            issues.append(_error(exc, where, lines))
    return nodes


def decode_flow(data: Any, lines: LineMap) -> tuple[Flow | None, list[Issue]]:
    """Decode into a Flow; on failure, every error found (all nodes are tried), each with its line."""
    if not isinstance(data, dict):
        return None, [
            Issue(severity="error", message="a flow is a map (name, start, nodes, ...)", line=lines.line(()))
        ]
    issues: list[Issue] = []
    nodes = _decode_nodes(data.get("nodes", {}), ("nodes",), lines, issues)
    subflows: dict[str, SubflowBody] = {}
    raw_subs = data.get("subflows", {})
    if isinstance(raw_subs, dict):
        for sname, sbody in raw_subs.items():
            where: Path = ("subflows", sname)
            if not isinstance(sbody, dict):
                issues.append(
                    Issue(
                        severity="error",
                        message="a subflow is a map with start and nodes",
                        line=lines.line(where),
                        path=render_path(where),
                    )
                )
                continue
            snodes = _decode_nodes(sbody.get("nodes", {}), (*where, "nodes"), lines, issues)
            try:
                subflows[sname] = msgspec.convert({**sbody, "nodes": {}}, SubflowBody)
                subflows[sname].nodes = snodes
            except msgspec.ValidationError as exc:
                issues.append(_error(exc, where, lines))
    shell = {**data, "nodes": {}, "subflows": {}}
    if "nodes" not in data:
        issues.append(
            Issue(severity="error", message="Object missing required field `nodes`", line=lines.line(()))
        )
    try:
        flow = msgspec.convert(shell, Flow)
    except msgspec.ValidationError as exc:
        issues.append(_error(exc, (), lines))
        return None, issues
    if issues:
        return None, issues
    flow.nodes = nodes
    flow.subflows = subflows
    return flow, issues
