"""Flow validation: the schema (with line numbers, see source.py), the graph (dangling and unreachable nodes,
loops with no exit), references (queues, prompts, calendars, subflows) and the practice rules from the field
as warnings (menu depth and width, prompt length, a way to reach a person with 0)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .flow import (
    RETURN,
    Branch,
    Callback,
    Collect,
    Condition,
    DynamicMenu,
    Flow,
    Hangup,
    Lookup,
    Menu,
    Node,
    Play,
    Prompt,
    QueueNode,
    SetNode,
    Subflow,
    Survey,
    Transfer,
    Voicemail,
)
from .source import Issue, LineMap, decode_flow, read_source, render_path

__all__ = [
    "MAX_MENU_DEPTH",
    "MAX_MENU_WIDTH",
    "MAX_PROMPT_SECONDS",
    "Report",
    "check_flow",
    "edges",
    "prompt_seconds",
    "validate_text",
]

MAX_MENU_DEPTH = 3
MAX_MENU_WIDTH = 5
MAX_PROMPT_SECONDS = 30.0
WORDS_PER_MINUTE = 150.0
HUMAN_NODES = (QueueNode, Transfer)
_HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


@dataclass
class Report:
    flow: Flow | None
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.flow is not None and not self.errors


def edges(node: Node) -> Iterator[tuple[str, str]]:
    """(field path, target) for every node this node can go to."""
    if isinstance(node, (Play, SetNode, Collect, Lookup, Callback, Survey, Subflow)):
        yield "next", node.next
    if isinstance(node, (Menu, DynamicMenu)):
        for digit, target in node.options.items():
            yield f"options.{digit}", target
        if isinstance(node, DynamicMenu):
            for i, variant in enumerate(node.variants):
                for digit, target in variant.options.items():
                    yield f"variants[{i}].options.{digit}", target
    if isinstance(node, (Menu, DynamicMenu, Collect, Transfer)) and node.on_fail:
        yield "on_fail", node.on_fail
    if isinstance(node, Lookup):
        yield "on_error", node.on_error
    if isinstance(node, Branch):
        for i, rule in enumerate(node.rules):
            yield f"rules[{i}].next", rule.next
        yield "default", node.default
    if isinstance(node, QueueNode):
        if node.on_timeout:
            yield "on_timeout", node.on_timeout
        if node.on_callback:
            yield "on_callback", node.on_callback
    if isinstance(node, Voicemail) and node.next:
        yield "next", node.next


def prompts_of(node: Node) -> Iterator[tuple[str, Prompt | str]]:
    for name in (
        "prompt",
        "invalid_prompt",
        "timeout_prompt",
        "music",
        "callback_prompt",
        "confirm_prompt",
        "capture_prompt",
        "schedule_prompt",
    ):
        value = getattr(node, name, None)
        if value is not None:
            yield name, value
    if isinstance(node, DynamicMenu):
        for i, variant in enumerate(node.variants):
            yield f"variants[{i}].prompt", variant.prompt
    if isinstance(node, Survey):
        for i, q in enumerate(node.questions):
            yield f"questions[{i}].prompt", q.prompt


def conditions_of(node: Node) -> Iterator[tuple[str, Condition]]:
    if isinstance(node, Branch):
        for i, rule in enumerate(node.rules):
            yield f"rules[{i}].when", rule.when
    if isinstance(node, DynamicMenu):
        for i, variant in enumerate(node.variants):
            yield f"variants[{i}].when", variant.when


def prompt_seconds(prompt: Prompt) -> float:
    """How long a prompt plays: its stated length, or text to speech at 150 words per minute."""
    if prompt.seconds is not None:
        return prompt.seconds
    if prompt.say:
        return len(prompt.say.split()) * 60.0 / WORDS_PER_MINUTE
    return 0.0


def queues_of(node: Node) -> Iterator[str]:
    if isinstance(node, (QueueNode, Callback, Voicemail)):
        yield node.queue
    if isinstance(node, Transfer) and node.to == "queue":
        yield node.target


class _Checker:
    def __init__(
        self, flow: Flow, lines: LineMap, queues: set[str] | None, prompt_files: set[str] | None
    ) -> None:
        self.flow = flow
        self.lines = lines
        self.queues = queues
        self.prompt_files = prompt_files
        self.issues: list[Issue] = []

    def add(self, severity: str, message: str, path: tuple[str | int, ...]) -> None:
        line = self.lines.line(path) if path else None
        self.issues.append(Issue(severity=severity, message=message, line=line, path=render_path(path)))

    @staticmethod
    def _split(field_path: str) -> tuple[str | int, ...]:
        out: list[str | int] = []
        for part in field_path.split("."):
            m = re.match(r"^([^\[]+)((?:\[\d+\])*)$", part)
            if not m:
                out.append(part)
                continue
            out.append(m.group(1))
            out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
        return tuple(out)

    def scopes(self) -> Iterator[tuple[tuple[str | int, ...], str, dict[str, Node], bool]]:
        yield ("nodes",), self.flow.start, self.flow.nodes, False
        for name, sub in self.flow.subflows.items():
            yield ("subflows", name, "nodes"), sub.start, sub.nodes, True

    def run(self) -> list[Issue]:
        flow = self.flow
        try:
            ZoneInfo(flow.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            self.add(
                "error",
                f"unknown time zone {flow.timezone!r} (use an IANA name like Europe/Paris)",
                ("timezone",),
            )
        if flow.start not in flow.nodes:
            self.add("error", f"start names no node: {flow.start!r}", ("start",))
        if flow.fallback is not None and flow.fallback not in flow.nodes:
            self.add("error", f"fallback names no node: {flow.fallback!r}", ("fallback",))
        if flow.fallback is None:
            self.add(
                "note",
                "no fallback node: a call that cannot resume after a restart hears an apology and is hung up",
                (),
            )
        self.calendars()
        for base, start, nodes, in_sub in self.scopes():
            if in_sub and start not in nodes:
                self.add("error", f"start names no node: {start!r}", (*base[:-1], "start"))
            for name, node in nodes.items():
                self.node(base, name, node, nodes, in_sub)
            self.graph(base, start, nodes)
        used_subflows = {
            n.flow for _, _, nodes, _ in self.scopes() for n in nodes.values() if isinstance(n, Subflow)
        }
        for name in flow.subflows:
            if name not in used_subflows:
                self.add("warning", f"subflow {name!r} is never used", ("subflows", name))
        self.menu_depth()
        self.person()
        if self.queues is None and any(
            True for _, _, ns, _ in self.scopes() for n in ns.values() for _ in queues_of(n)
        ):
            self.add(
                "note", "queues not checked (offline): validate against the API to check queue names", ()
            )
        return self.issues

    def calendars(self) -> None:
        for name, cal in self.flow.calendars.items():
            if cal.timezone is not None:
                try:
                    ZoneInfo(cal.timezone)
                except (ZoneInfoNotFoundError, ValueError):
                    self.add("error", f"unknown time zone {cal.timezone!r}", ("calendars", name, "timezone"))
            for day, ranges in cal.hours.items():
                for i, text in enumerate(ranges):
                    if not _HOURS.match(text) or text[:5] >= text[6:]:
                        self.add(
                            "error",
                            f"bad hours {text!r}: use HH:MM-HH:MM, start before end",
                            ("calendars", name, "hours", day, i),
                        )
            for i, text in enumerate(cal.holidays):
                try:
                    date.fromisoformat(text)
                except ValueError:
                    self.add(
                        "error", f"bad holiday {text!r}: use YYYY-MM-DD", ("calendars", name, "holidays", i)
                    )

    def node(
        self, base: tuple[str | int, ...], name: str, node: Node, nodes: dict[str, Node], in_sub: bool
    ) -> None:
        where = (*base, name)
        for fpath, target in edges(node):
            if target == RETURN:
                if not in_sub:
                    self.add(
                        "error", "`return` is only allowed inside a subflow", (*where, *self._split(fpath))
                    )
            elif target not in nodes:
                self.add(
                    "error", f"dangling reference: no node named {target!r}", (*where, *self._split(fpath))
                )
        for fpath, prompt in prompts_of(node):
            p = (*where, *self._split(fpath))
            if isinstance(prompt, str):
                if prompt not in self.flow.prompts:
                    self.add("error", f"unknown prompt {prompt!r} (not in the flow's prompts)", p)
                    continue
                prompt = self.flow.prompts[prompt]
            self.prompt(prompt, p)
        for fpath, cond in conditions_of(node):
            self.condition(cond, (*where, *self._split(fpath)))
        if self.queues is not None:
            for queue in queues_of(node):
                if queue not in self.queues:
                    self.add(
                        "error",
                        f"unknown queue {queue!r}",
                        (*where, "target" if isinstance(node, Transfer) else "queue"),
                    )
        if isinstance(node, Subflow) and node.flow not in self.flow.subflows:
            self.add("error", f"unknown subflow {node.flow!r}", (*where, "flow"))
        if isinstance(node, (Menu, DynamicMenu)):
            for opts, p in [(node.options, (*where, "options"))] + (
                [(v.options, (*where, "variants", i, "options")) for i, v in enumerate(node.variants)]
                if isinstance(node, DynamicMenu)
                else []
            ):
                if not opts:
                    self.add("error", "a menu needs at least one option", p)
                elif len(opts) > MAX_MENU_WIDTH:
                    self.add("warning", f"{len(opts)} options: callers remember at most {MAX_MENU_WIDTH}", p)
        if isinstance(node, Collect):
            if node.min_digits > node.max_digits:
                self.add("error", "min_digits is larger than max_digits", (*where, "min_digits"))
            self.regex(node.pattern, (*where, "pattern"))
        if isinstance(node, Survey):
            for i, q in enumerate(node.questions):
                if q.min > q.max:
                    self.add("error", "min is larger than max", (*where, "questions", i))
            if not node.questions:
                self.add("error", "a survey needs at least one question", (*where, "questions"))
        if (
            isinstance(node, Transfer)
            and node.to == "number"
            and not re.match(r"^\+[1-9]\d{6,14}$", node.target)
        ):
            self.add("error", f"not an E.164 number: {node.target!r}", (*where, "target"))
        if isinstance(node, QueueNode) and node.max_wait is not None and node.on_timeout is None:
            self.add("error", "max_wait needs on_timeout (where the caller goes then)", (*where, "max_wait"))

    def prompt(self, prompt: Prompt, path: tuple[str | int, ...]) -> None:
        if bool(prompt.say) == bool(prompt.file):
            self.add("error", "a prompt has exactly one of `say` or `file`", path)
            return
        if prompt.file and self.prompt_files is not None and prompt.file not in self.prompt_files:
            self.add("error", f"unknown prompt file {prompt.file!r}", path)
        seconds = prompt_seconds(prompt)
        if seconds > MAX_PROMPT_SECONDS:
            self.add(
                "warning",
                f"prompt is about {seconds:.0f} s long: keep prompts under {MAX_PROMPT_SECONDS:.0f} s",
                path,
            )

    def regex(self, pattern: str | None, path: tuple[str | int, ...]) -> None:
        if pattern is None:
            return
        try:
            re.compile(pattern)
        except re.error as exc:
            self.add("error", f"bad regular expression: {exc}", path)

    def condition(self, cond: Condition, path: tuple[str | int, ...]) -> None:
        for name in ("matches", "caller", "dialled"):
            self.regex(getattr(cond, name), (*path, name))
        for name in ("open", "holiday"):
            cal = getattr(cond, name)
            if cal is not None and cal not in self.flow.calendars:
                self.add("error", f"unknown calendar {cal!r}", (*path, name))
        value_tests = [cond.equals, cond.one_of, cond.matches, cond.present]
        if any(v is not None for v in value_tests) and cond.attribute is None:
            self.add("error", "equals/one_of/matches/present need `attribute`", path)
        tests = [cond.attribute, cond.caller, cond.dialled, cond.open, cond.holiday]
        if all(t is None for t in tests):
            self.add("error", "a condition needs at least one test", path)

    def graph(self, base: tuple[str | int, ...], start: str, nodes: dict[str, Node]) -> None:
        succ = {name: [t for _, t in edges(n) if t in nodes] for name, n in nodes.items()}
        seen: set[str] = set()
        todo = [start] if start in nodes else []
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(succ[n])
        for name in nodes:
            if name not in seen and start in nodes:
                self.add("error", f"unreachable node {name!r}", (*base, name))
        # A loop with no exit: a strongly connected group the caller can never leave (no edge out of it, no
        # node in it that ends the IVR part of the call).
        for comp in _sccs(succ):
            if len(comp) == 1 and comp[0] not in succ[comp[0]]:
                continue
            members = set(comp)
            leaves = any(t not in members for n in comp for _, t in edges(nodes[n]))
            ends = any(isinstance(nodes[n], (Hangup, Transfer, QueueNode, Voicemail)) for n in comp)
            if not leaves and not ends:
                first = sorted(comp)[0]
                self.add("error", f"loop with no exit: {' -> '.join(sorted(comp))}", (*base, first))

    def menu_depth(self) -> None:
        # 0-1 BFS: the fewest menus a caller passes through to reach each menu.
        nodes = self.flow.nodes
        if self.flow.start not in nodes:
            return
        depth: dict[str, int] = {}
        first = self.flow.start
        queue: deque[tuple[str, int]] = deque([(first, _is_menu(nodes[first]))])
        while queue:
            name, d = queue.popleft()
            if name in depth and depth[name] <= d:
                continue
            depth[name] = d
            for _, t in edges(nodes[name]):
                if t in nodes:
                    nd = d + _is_menu(nodes[t])
                    (queue.append if nd > d else queue.appendleft)((t, nd))
        for name, d in depth.items():
            if _is_menu(nodes[name]) and d > MAX_MENU_DEPTH:
                self.add(
                    "warning",
                    f"menu {name!r} is {d} levels deep: keep menus to {MAX_MENU_DEPTH} levels",
                    ("nodes", name),
                )

    def person(self) -> None:
        nodes = self.flow.nodes
        human = {n for n, node in nodes.items() if isinstance(node, HUMAN_NODES)}
        reach: dict[str, bool] = {}

        def reaches(start: str) -> bool:
            if start in reach:
                return reach[start]
            seen, todo = set(), [start]
            while todo:
                n = todo.pop()
                if n in seen or n not in nodes:
                    continue
                seen.add(n)
                if n in human:
                    reach[start] = True
                    return True
                todo.extend(t for _, t in edges(nodes[n]))
            reach[start] = False
            return False

        if not human:
            self.add("warning", "no path to a person: the flow has no queue or transfer node", ("nodes",))
            return
        for name, node in nodes.items():
            if isinstance(node, (Menu, DynamicMenu)):
                target = node.options.get("0")
                if target is None or not reaches(target):
                    self.add(
                        "warning",
                        "key 0 should reach a person (a queue or transfer)",
                        ("nodes", name, "options"),
                    )


def _is_menu(node: Node) -> int:
    return 1 if isinstance(node, (Menu, DynamicMenu)) else 0


def _sccs(succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (flows can be long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in succ:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def check_flow(
    flow: Flow,
    lines: LineMap | None = None,
    *,
    queues: set[str] | None = None,
    prompt_files: set[str] | None = None,
) -> list[Issue]:
    return _Checker(flow, lines or LineMap(), queues, prompt_files).run()


_TARGET_FIELDS = ("next", "on_fail", "on_error", "default", "on_timeout", "on_callback")


def _raw_edges(body: dict[str, object]) -> Iterator[tuple[tuple[str | int, ...], object]]:
    """(path, target) of a node's references read from the file as written (it need not decode)."""
    for key in _TARGET_FIELDS:
        if key in body:
            yield (key,), body[key]
    holders: list[tuple[tuple[str | int, ...], object]] = [((), body)]
    variants = body.get("variants")
    if isinstance(variants, list):
        holders += [(("variants", i), v) for i, v in enumerate(variants)]
    for base, holder in holders:
        options = holder.get("options") if isinstance(holder, dict) else None
        if isinstance(options, dict):
            for digit, target in options.items():
                yield (*base, "options", str(digit)), target
    rules = body.get("rules")
    if isinstance(rules, list):
        for i, rule in enumerate(rules):
            if isinstance(rule, dict) and "next" in rule:
                yield ("rules", i, "next"), rule["next"]


def raw_dangling(data: object, lines: LineMap) -> list[Issue]:
    """Dangling references in a flow file that does not decode (the flow and each subflow)."""
    if not isinstance(data, dict):
        return []
    scopes: list[tuple[tuple[str | int, ...], object, bool]] = [(("nodes",), data.get("nodes"), False)]
    subflows = data.get("subflows")
    if isinstance(subflows, dict):
        scopes += [
            (("subflows", n, "nodes"), b.get("nodes"), True)
            for n, b in subflows.items()
            if isinstance(b, dict)
        ]
    found: list[Issue] = []
    for base, nodes, in_sub in scopes:
        if not isinstance(nodes, dict):
            continue
        for name, body in nodes.items():
            if not isinstance(body, dict):
                continue
            for path, target in _raw_edges(body):
                if isinstance(target, str) and target not in nodes and not (in_sub and target == RETURN):
                    where = (*base, name, *path)
                    found.append(
                        Issue(
                            severity="error",
                            message=f"dangling reference: no node named {target!r}",
                            line=lines.line(where),
                            path=render_path(where),
                        )
                    )
    return found


def validate_text(
    text: str, *, queues: set[str] | None = None, prompt_files: set[str] | None = None
) -> Report:
    """Everything `flows validate` reports for one file. `queues`: the tenant's queue names (None: offline)."""
    data, lines, issues = read_source(text)
    if issues:
        return Report(None, issues)
    flow, issues = decode_flow(data, lines)
    if flow is None:
        # The graph cannot be checked as a Flow, but references to missing nodes can: said now, beside the
        # schema errors, rather than after they are fixed.
        issues += raw_dangling(data, lines)
        issues.sort(key=lambda i: (i.line or 0, i.severity))
        return Report(None, issues)
    issues = check_flow(flow, lines, queues=queues, prompt_files=prompt_files)
    issues.sort(key=lambda i: (i.line or 0, i.severity))
    return Report(flow, issues)
