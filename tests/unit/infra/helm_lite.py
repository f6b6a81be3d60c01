# A small renderer for the subset of Helm's Go templates that charts/switchboard uses, so that tests can
# render the chart without a Helm binary (none can be installed here; STACK-NOTES.md) and compare the
# objects with the Pulumi program's.
#
# It is stricter than Helm where strictness finds bugs: a missing map key is an error (as with
# `helm lint --strict`), and values' numbers are floats as in Helm (JSON decoding), so that comparing one
# with an integer literal fails here as it fails in Helm. Unknown functions and syntax are errors, never
# guesses.

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import bcrypt as _bcrypt
import jsonschema
import yaml

__all__ = ["TemplateError", "parse", "render_chart", "render_objects"]


class TemplateError(Exception):
    """A template that Helm would refuse, or that uses something this renderer does not support."""


# ---- lexing -------------------------------------------------------------------------------------------

_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


def _lex(text: str, name: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", body)], with {{- and -}} whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(" \t\r\n")
        if start < 0:
            out.append(("text", chunk))
            return out
        i = start + 2
        if text.startswith("- ", i) or text.startswith("-\n", i) or text.startswith("-\t", i):
            chunk = chunk.rstrip(" \t\r\n")
            i += 1
        out.append(("text", chunk))
        j = _action_end(text, i, name)
        body = text[i:j]
        trim_next = body.endswith(" -") or body.endswith("\n-") or body.endswith("\t-")
        if trim_next:
            body = body[:-1]
        body = body.strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"{name}: unterminated comment")
        else:
            out.append(("action", body))
        pos = j + 2


def _action_end(text: str, i: int, name: str) -> int:
    stripped = text[i:].lstrip()
    if stripped.startswith("/*"):
        end = text.find("*/", i)
        if end < 0:
            raise TemplateError(f"{name}: unterminated comment")
        j = text.find("}}", end)
        if j < 0:
            raise TemplateError(f"{name}: unclosed action")
        return j
    j = i
    while j < len(text):
        c = text[j]
        if c in '"`':
            close = text.find(c, j + 1) if c == "`" else _string_end(text, j, name)
            if close < 0:
                raise TemplateError(f"{name}: unterminated string")
            j = close + 1
            continue
        if text.startswith("}}", j):
            return j
        j += 1
    raise TemplateError(f"{name}: unclosed action starting at offset {i - 2}")


def _string_end(text: str, j: int, name: str) -> int:
    k = j + 1
    while k < len(text):
        if text[k] == "\\":
            k += 2
            continue
        if text[k] == '"':
            return k
        if text[k] == "\n":
            raise TemplateError(f"{name}: newline in string")
        k += 1
    return -1


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(body: str, name: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"{name}: cannot parse {body[pos:]!r} in {{{{ {body} }}}}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


# ---- parsing ------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    decl: list[str]
    assign: bool  # `=` rather than `:=`
    commands: list[list[Any]]


@dataclass
class Operand:
    kind: str  # field, var, literal, func, sub
    value: Any
    chain: list[str] = field(default_factory=list)


@dataclass
class Node:
    kind: str  # text, action, if, range, with, template
    text: str = ""
    pipe: Pipeline | None = None
    body: list[Node] = field(default_factory=list)
    # for if: (pipe, body) pairs after the first ("else if"); else_body for the final else
    elifs: list[tuple[Pipeline, list[Node]]] = field(default_factory=list)
    else_body: list[Node] = field(default_factory=list)
    name: str = ""


class _PipeParser:
    def __init__(self, toks: list[tuple[str, str]], where: str) -> None:
        self.toks, self.i, self.where = toks, 0, where

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise TemplateError(f"{self.where}: unexpected end of action")
        self.i += 1
        return tok

    def pipeline(self, *, allow_decl: bool = True) -> Pipeline:
        decl: list[str] = []
        assign = False
        if allow_decl:
            j = self.i
            names: list[str] = []
            while j < len(self.toks) and self.toks[j][0] == "var" and "." not in self.toks[j][1]:
                names.append(self.toks[j][1])
                j += 1
                if j < len(self.toks) and self.toks[j][0] == "comma":
                    j += 1
                    continue
                break
            if names and j < len(self.toks) and self.toks[j][0] in ("declare", "assign"):
                decl, assign = names, self.toks[j][0] == "assign"
                self.i = j + 1
        commands = [self.command()]
        while (tok := self.peek()) is not None and tok[0] == "pipe":
            self.take()
            commands.append(self.command())
        return Pipeline(decl, assign, commands)

    def command(self) -> list[Any]:
        operands: list[Any] = []
        while (tok := self.peek()) is not None and tok[0] not in ("pipe", "rparen"):
            operands.append(self.operand())
        if not operands:
            raise TemplateError(f"{self.where}: empty command")
        return operands

    def operand(self) -> Operand:
        kind, text = self.take()
        if kind == "string":
            return Operand("literal", json.loads(text))
        if kind == "raw":
            return Operand("literal", text[1:-1])
        if kind == "number":
            return Operand("literal", float(text) if "." in text else int(text))
        if kind == "field":
            return Operand("field", None, [] if text == "." else text[1:].split("."))
        if kind == "var":
            head, *chain = text.split(".")
            return Operand("var", head, chain)
        if kind == "lparen":
            sub = self.pipeline(allow_decl=False)
            if self.take()[0] != "rparen":
                raise TemplateError(f"{self.where}: missing )")
            return Operand("sub", sub)
        if kind == "ident":
            if text in ("true", "false"):
                return Operand("literal", text == "true")
            if text == "nil":
                return Operand("literal", None)
            return Operand("func", text)
        raise TemplateError(f"{self.where}: unexpected {text!r}")


def _parse_pipe(body: str, where: str) -> Pipeline:
    parser = _PipeParser(_tokens(body, where), where)
    pipe = parser.pipeline()
    if parser.peek() is not None:
        raise TemplateError(f"{where}: unexpected {parser.peek()[1]!r} in {{{{ {body} }}}}")  # type: ignore[index]
    return pipe


def parse(text: str, name: str) -> tuple[list[Node], dict[str, list[Node]]]:
    """The file's top-level nodes and the templates it defines."""
    items = _lex(text, name)
    defines: dict[str, list[Node]] = {}
    pos = 0

    def block(stop: set[str]) -> tuple[list[Node], str, str]:
        nonlocal pos
        nodes: list[Node] = []
        while pos < len(items):
            kind, body = items[pos]
            pos += 1
            if kind == "text":
                if body:
                    nodes.append(Node("text", text=body))
                continue
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word) :].strip()
            if word in stop:
                return nodes, word, rest
            if word in ("if", "with"):
                node = Node(word, pipe=_parse_pipe(rest, name))
                node.body, ended, rest2 = block({"else", "end"})
                while ended == "else":
                    if rest2.startswith(word + " ") or rest2.startswith("if "):
                        sub_word = rest2.split(None, 1)[0]
                        if sub_word != word:
                            raise TemplateError(f"{name}: else {sub_word} inside {word} is not supported")
                        cond = _parse_pipe(rest2[len(word) :].strip(), name)
                        sub_body, ended, rest2 = block({"else", "end"})
                        node.elifs.append((cond, sub_body))
                    else:
                        node.else_body, ended, rest2 = block({"end"})
                nodes.append(node)
            elif word == "range":
                node = Node("range", pipe=_parse_pipe(rest, name))
                node.body, ended, _ = block({"else", "end"})
                if ended == "else":
                    node.else_body, _, _ = block({"end"})
                nodes.append(node)
            elif word == "define":
                define_name = json.loads(rest)
                inner, _, _ = block({"end"})
                defines[define_name] = inner
            elif word == "template":
                toks = _tokens(rest, name)
                tname = json.loads(toks[0][1])
                parser = _PipeParser(toks[1:], name)
                pipe = parser.pipeline(allow_decl=False) if toks[1:] else None
                nodes.append(Node("template", name=tname, pipe=pipe))
            elif word in ("block", "break", "continue"):
                raise TemplateError(f"{name}: {word} is not supported by this renderer")
            elif word in ("else", "end"):
                raise TemplateError(f"{name}: unexpected {{{{ {word} }}}}")
            else:
                nodes.append(Node("action", pipe=_parse_pipe(body, name)))
        if stop:
            raise TemplateError(f"{name}: missing {{{{ end }}}}")
        return nodes, "", ""

    top, _, _ = block(set())
    return top, defines


# ---- values as Helm sees them -------------------------------------------------------------------------


def _as_helm_numbers(value: Any) -> Any:
    """Helm decodes values through JSON: every number becomes a float64."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_helm_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_helm_numbers(v) for v in value]
    return value


def _plain_numbers(value: Any) -> Any:
    """For toYaml/toJson: Go's encoders write an integral float64 without a decimal point."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def _go_float(value: float) -> str:
    """fmt's %v for a float64: shortest digits, in exponent form when the exponent is < -4 or >= 6.

    So Helm prints a values number 1000000 as 1e+06, a classic surprise that this renderer reproduces.
    """
    if value == 0:
        return "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    point = len(text) + exp  # position of the decimal point within `text`
    x = point - 1
    minus = "-" if sign else ""
    if x < -4 or x >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def _to_str(value: Any) -> str:
    if value is None:
        return ""  # Helm replaces "<no value>" with nothing
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(_to_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_to_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _truth(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "nil"
    return type(value).__name__


def _comparable(a: Any, b: Any, op: str) -> None:
    if _kind(a) != _kind(b):
        raise TemplateError(
            f"{op}: incompatible types for comparison ({_kind(a)} {a!r} and {_kind(b)} {b!r})"
        )


# ---- evaluation ---------------------------------------------------------------------------------------


class _Engine:
    def __init__(self, templates: dict[str, list[Node]]) -> None:
        self.templates = templates
        self.funcs: dict[str, Callable[..., Any]] = {
            "include": self._include,
            "toYaml": lambda v: (
                "null"
                if v is None
                else yaml.safe_dump(_plain_numbers(v), default_flow_style=False, sort_keys=True).rstrip("\n")
            ),
            "nindent": lambda n, s: "\n" + _indent(n, s),
            "indent": _indent,
            "quote": lambda *a: " ".join(json.dumps(_to_str(v)) for v in a if v is not None),
            "default": lambda d, *given: given[0] if given and _truth(given[0]) else d,
            "required": _required,
            "fail": _fail,
            "printf": _printf,
            "print": _print,
            "lower": lambda s: s.lower(),
            "eq": _eq,
            "lt": lambda a, b: _cmp(a, b, "lt") < 0,
            "gt": lambda a, b: _cmp(a, b, "gt") > 0,
            "not": lambda v: not _truth(v),
            "len": lambda v: len(v),
            "dict": _dict,
            "list": lambda *a: list(a),
            "append": lambda seq, v: [*seq, v],
            "keys": lambda *ds: [k for d in ds for k in d],
            "sortAlpha": lambda seq: sorted(_to_str(v) for v in seq),
            "until": lambda n: list(range(_int_arg(n, "until"))),
            "int": _to_int,
            "sha256sum": lambda s: hashlib.sha256(s.encode()).hexdigest(),
            "hasKey": lambda d, k: k in d,
            "get": lambda d, k: d.get(k, ""),
            "upper": lambda s: s.upper(),
            "join": lambda sep, seq: sep.join(_to_str(v) for v in seq),
            "fromJson": lambda s: json.loads(s) if s else {},
            "toJson": lambda v: json.dumps(_plain_numbers(v), sort_keys=True, separators=(",", ":")),
            # Helm's bcrypt: cost 10, a random salt, the $2a$ prefix. Cost 4 here (bcrypt's least) keeps
            # the many renders of the tests fast; the password checks are the same.
            "bcrypt": lambda s: _bcrypt.hashpw(s.encode(), _bcrypt.gensalt(4, b"2a")).decode(),
        }

    def render(self, name: str, dot: Any) -> str:
        if name not in self.templates:
            raise TemplateError(f"no template named {name!r}")
        out: list[str] = []
        self._exec(self.templates[name], dot, [{"$": dot}], out)
        return "".join(out)

    def _include(self, name: str, dot: Any) -> str:
        return self.render(name, dot)

    def _exec(self, nodes: list[Node], dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                assert node.pipe is not None
                value = self._pipeline(node.pipe, dot, scopes)
                if not node.pipe.decl:
                    out.append(_to_str(value))
            elif node.kind in ("if", "with"):
                assert node.pipe is not None
                branches = [(node.pipe, node.body), *node.elifs]
                for pipe, body in branches:
                    inner = [*scopes, {}]
                    value = self._pipeline(pipe, dot, inner)
                    if _truth(value):
                        self._exec(body, value if node.kind == "with" else dot, inner, out)
                        break
                else:
                    self._exec(node.else_body, dot, [*scopes, {}], out)
            elif node.kind == "range":
                self._range(node, dot, scopes, out)
            elif node.kind == "template":
                arg = self._pipeline(node.pipe, dot, scopes) if node.pipe else None
                out.append(self.render(node.name, arg))

    def _range(self, node: Node, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        assert node.pipe is not None
        pipe = Pipeline([], False, node.pipe.commands)
        seq = self._pipeline(pipe, dot, scopes)
        if isinstance(seq, dict):
            pairs = [(k, seq[k]) for k in sorted(seq)]
        elif isinstance(seq, list):
            pairs = list(enumerate(seq))
        elif seq is None:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {seq!r}")
        if not pairs:
            self._exec(node.else_body, dot, [*scopes, {}], out)
            return
        names = node.pipe.decl
        for key, value in pairs:
            scope: dict[str, Any] = {}
            if len(names) == 1:
                scope[names[0]] = value
            elif len(names) == 2:
                scope[names[0]], scope[names[1]] = key, value
            self._exec(node.body, value, [*scopes, scope], out)

    def _pipeline(self, pipe: Pipeline, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        value: Any = _NOTHING
        for command in pipe.commands:
            value = self._command(command, dot, scopes, value)
        if pipe.decl:
            if len(pipe.decl) != 1:
                raise TemplateError("only range may declare two variables")
            var = pipe.decl[0]
            if pipe.assign:
                for scope in reversed(scopes):
                    if var in scope:
                        scope[var] = value
                        break
                else:
                    raise TemplateError(f"undefined variable {var}")
            else:
                scopes[-1][var] = value
        return value

    def _command(self, command: list[Operand], dot: Any, scopes: list[dict[str, Any]], piped: Any) -> Any:
        head = command[0]
        if head.kind == "func":
            name = head.value
            if name in ("and", "or"):
                return self._and_or(name, command[1:], dot, scopes, piped)
            if name not in self.funcs:
                raise TemplateError(f"function {name!r} not defined (or not supported here)")
            args = [self._operand(op, dot, scopes) for op in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            try:
                return self.funcs[name](*args)
            except TemplateError:
                raise
            except TypeError as exc:
                raise TemplateError(f"{name}: wrong arguments {args!r}: {exc}") from None
        if head.kind == "field" and callable(method := self._operand(head, dot, scopes)):
            # A method of the context, e.g. .Files.Get "files/x.json".
            args = [self._operand(op, dot, scopes) for op in command[1:]]
            return method(*args, *(() if piped is _NOTHING else (piped,)))
        if len(command) > 1 or piped is not _NOTHING:
            raise TemplateError(f"can't give arguments to a non-function ({head.kind} {head.value!r})")
        return self._operand(head, dot, scopes)

    def _and_or(
        self, name: str, ops: list[Operand], dot: Any, scopes: list[dict[str, Any]], piped: Any
    ) -> Any:
        thunks: list[Callable[[], Any]] = [lambda op=op: self._operand(op, dot, scopes) for op in ops]
        if piped is not _NOTHING:
            thunks.append(lambda: piped)
        if len(thunks) < 2:
            raise TemplateError(f"{name} needs at least two arguments")
        value: Any = None
        for thunk in thunks:
            value = thunk()
            if _truth(value) != (name == "and"):
                return value
        return value

    def _operand(self, op: Operand, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        if op.kind == "literal":
            return op.value
        if op.kind == "field":
            return _walk(dot, op.chain, ".")
        if op.kind == "var":
            for scope in reversed(scopes):
                if op.value in scope:
                    return _walk(scope[op.value], op.chain, op.value)
            raise TemplateError(f"undefined variable {op.value}")
        if op.kind == "sub":
            return self._pipeline(op.value, dot, scopes)
        if op.kind == "func":
            return self._command([op], dot, scopes, _NOTHING)
        raise TemplateError(f"bad operand {op!r}")


_NOTHING = object()


def _walk(value: Any, chain: list[str], origin: str) -> Any:
    path = origin
    for part in chain:
        path = f"{path}.{part}" if path != "." else f".{part}"
        if value is None:
            raise TemplateError(f"nil pointer evaluating {path}")
        if not isinstance(value, dict):
            raise TemplateError(f"can't evaluate field {part} in {_kind(value)} at {path}")
        if part not in value:
            raise TemplateError(f"map has no entry for key {part!r} at {path}")
        value = value[part]
    return value


def _indent(n: Any, s: str) -> str:
    pad = " " * int(n)
    return pad + s.replace("\n", "\n" + pad)


def _required(message: str, value: Any = None) -> Any:
    if value is None or value == "":
        raise TemplateError(f"execution error: {message}")
    return value


def _fail(message: str) -> Any:
    raise TemplateError(f"execution error: {message}")


def _printf(fmt: str, *args: Any) -> str:
    values = list(args)

    def one(m: re.Match[str]) -> str:
        verb = m.group(1)
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        v = values.pop(0)
        if verb in ("s", "v"):
            return _to_str(v)
        if verb == "d":
            if _kind(v) != "int":
                return f"%!d({_kind(v)}64={_to_str(v)})"
            return str(v)
        if verb == "q":
            return json.dumps(_to_str(v))
        raise TemplateError(f"printf verb %{verb} is not supported here")

    return re.sub(r"%([%svdq])", one, fmt)


def _print(*args: Any) -> str:
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += _to_str(arg)
    return out


def _eq(a: Any, *others: Any) -> bool:
    for b in others:
        _comparable(a, b, "eq")
        if a == b:
            return True
    return False


def _cmp(a: Any, b: Any, op: str) -> int:
    _comparable(a, b, op)
    if _kind(a) not in ("int", "float", "string"):
        raise TemplateError(f"{op}: invalid type for comparison ({_kind(a)})")
    return (a > b) - (a < b)


def _dict(*pairs: Any) -> dict[str, Any]:
    if len(pairs) % 2:
        raise TemplateError("dict needs key/value pairs")
    return {_to_str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return math.trunc(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _int_arg(value: Any, fn: str) -> int:
    if _kind(value) != "int":
        raise TemplateError(f"{fn}: needs an int, got {_kind(value)} {value!r} (wrap it in `int`)")
    return int(value)


# ---- charts -------------------------------------------------------------------------------------------


def _coalesce(base: Any, override: Any) -> Any:
    """Helm's values merge: maps recursively, anything else replaced, null deletes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = (
                _coalesce(base.get(key), value) if isinstance(base.get(key), dict) else copy.deepcopy(value)
            )
    return out


def render_chart(
    chart_dir: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "switchboard",
    namespace: str = "default",
) -> dict[str, str]:
    """Every template file's rendered text, keyed by its path under the chart ("templates/x.yaml")."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    merged = _coalesce(yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}, values or {})
    schema_path = chart_dir / "values.schema.json"
    if schema_path.exists():
        try:
            jsonschema.validate(merged, json.loads(schema_path.read_text()))
        except jsonschema.ValidationError as exc:
            raise TemplateError(
                f"values don't meet the schema: {exc.message} at {list(exc.absolute_path)}"
            ) from None
    templates: dict[str, list[Node]] = {}
    files = sorted((chart_dir / "templates").rglob("*"))
    prefix = f"{chart['name']}/templates"
    for path in files:
        if not path.is_file():
            continue
        rel = path.relative_to(chart_dir / "templates").as_posix()
        top, defines = parse(path.read_text(), rel)
        templates[f"{prefix}/{rel}"] = top
        for name, body in defines.items():
            if name in templates:
                raise TemplateError(f"template {name!r} defined twice")
            templates[name] = body
    engine = _Engine(templates)
    rendered: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(chart_dir / "templates").as_posix()
        if not path.is_file() or rel.split("/")[-1].startswith("_"):
            continue
        data = {
            "Values": _as_helm_numbers(merged),
            "Release": {
                "Name": release,
                "Namespace": namespace,
                "Service": "Helm",
                "IsInstall": True,
                "IsUpgrade": False,
                "Revision": 1,
            },
            "Chart": {
                "Name": chart["name"],
                "Version": chart["version"],
                "AppVersion": chart.get("appVersion", ""),
            },
            "Template": {"Name": f"{prefix}/{rel}", "BasePath": prefix},
            "Files": {"Get": lambda name: _chart_file(chart_dir, name)},
        }
        rendered[f"templates/{rel}"] = engine.render(f"{prefix}/{rel}", data)
    return rendered


def _chart_file(chart_dir: Path, name: str) -> str:
    """.Files.Get: a file's text, or "" when it is missing (as Helm)."""
    path = chart_dir / name
    return path.read_text() if path.is_file() else ""


def render_objects(chart_dir: Path, values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart renders (NOTES.txt left out), parsed from YAML."""
    objects: list[dict[str, Any]] = []
    for path, text in render_chart(chart_dir, values, **kw).items():
        if not path.endswith((".yaml", ".yml")):
            continue
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{path} does not render to valid YAML: {exc}\n{text}") from None
        objects += [doc for doc in docs if doc is not None]
    return objects
