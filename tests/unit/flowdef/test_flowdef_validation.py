"""Flow format and validation: schema errors with line numbers, every graph and reference rule, the practice
warnings, and the published JSON Schema being current."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import jsonschema
import yaml
from switchboard.flowdef.flow import flow_schema
from switchboard.flowdef.validate import validate_text

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "docs" / "examples" / "demo-flow.yaml"

BASE = """\
name: t
start: menu
fallback: agents
nodes:
  menu:
    type: menu
    prompt: {say: "Press 1 for sales, 0 for an agent"}
    options: {"1": sales, "0": agents}
    on_fail: agents
  sales:
    type: queue
    queue: sales
  agents:
    type: queue
    queue: support
"""


def issues(text: str, **kw):  # type: ignore[no-untyped-def]
    report = validate_text(dedent(text), **kw)
    return report, [(i.severity, i.line, i.message) for i in report.issues]


def find(found, severity: str, fragment: str):  # type: ignore[no-untyped-def]
    hits = [i for i in found if i[0] == severity and fragment in i[2]]
    assert hits, f"no {severity} containing {fragment!r} in {found}"
    return hits[0]


def _resolved(schema: dict[str, Any]) -> Any:
    """The schema with every `$ref` replaced by what it names (a ref back into its own chain stays), so
    two layouts of the same schema compare equal."""
    defs = schema.get("$defs", {})

    def walk(node: Any, chain: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in chain:
                target = defs[ref.removeprefix("#/$defs/")]
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **rest}, (*chain, ref))
            return {k: walk(v, chain) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, chain) for v in node]
        return node

    return walk(schema, ())


def test_schema_file_is_current() -> None:
    published = json.loads((REPO / "docs" / "flow.schema.json").read_text())
    generated = json.loads(json.dumps(flow_schema()))
    assert _resolved(published) == _resolved(generated), (
        "docs/flow.schema.json is stale: python -m switchboard.flowdef.flow > docs/flow.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(published)
    jsonschema.validate(yaml.safe_load(DEMO.read_text()), published)


def test_schema_has_one_fixed_form_whatever_msgspec_lays_out() -> None:
    schema = flow_schema()
    assert "$ref" not in schema and schema["type"] == "object" and "nodes" in schema["properties"]  # type: ignore[operator]
    assert "Flow" not in schema["$defs"]  # type: ignore[operator]
    descriptions = [d.get("description", "") for d in schema["$defs"].values()]  # type: ignore[union-attr]
    assert not any("\n    " in d for d in descriptions)


def test_resolving_refs_makes_layouts_compare_equal() -> None:
    inline = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"type": "string"}},
    }
    rooted = {
        "$ref": "#/$defs/Root",
        "$defs": {
            "Root": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
            "A": {"type": "string"},
        },
    }
    assert _resolved(inline) == _resolved(rooted)
    assert _resolved(inline) != _resolved({**inline, "$defs": {"A": {"type": "integer"}}})


def test_schema_lists_exactly_the_node_types() -> None:
    tags = {
        d["properties"]["type"]["enum"][0]
        for d in flow_schema()["$defs"].values()  # type: ignore[index]
        if "type" in d.get("properties", {}) and "enum" in d["properties"]["type"]
    }
    assert tags == {
        "play",
        "menu",
        "collect",
        "set",
        "branch",
        "lookup",
        "dynamic_menu",
        "queue",
        "callback",
        "voicemail",
        "transfer",
        "survey",
        "subflow",
        "hangup",
    }


def test_demo_flow_is_clean() -> None:
    report = validate_text(DEMO.read_text())
    assert report.ok and report.warnings == [], report.issues


def test_good_flow_has_no_errors_and_offline_note() -> None:
    report, found = issues(BASE)
    assert report.ok
    find(found, "note", "offline")


def test_schema_errors_carry_line_numbers() -> None:
    # One error per node at most (msgspec stops at the first), but every node is checked.
    text = BASE.replace("    queue: sales\n", "    queue: sales\n    priority: 500\n") + "    colour: red\n"
    report, found = issues(text)
    assert not report.ok
    assert find(found, "error", "<= 99")[1] == 13
    assert find(found, "error", "unknown field `colour`")[1] == 17


def test_unknown_type_missing_field_bad_digit_and_yaml_syntax() -> None:
    _, found = issues(BASE.replace("type: queue\n    queue: sales", "type: queu\n    queue: sales"))
    assert find(found, "error", "Invalid value 'queu'")[1] == 11
    _, found = issues(BASE.replace("    on_fail: agents\n", ""))
    assert find(found, "error", "missing required field `on_fail`")[1] == 5
    _, found = issues(BASE.replace('"1": sales', '"12": sales'))
    assert find(found, "error", "bad key")[1] == 8
    _, found = issues(BASE.replace("start: menu", "start: [menu"))
    assert find(found, "error", "not valid YAML")[1] is not None


def test_json_flows_get_line_numbers_too() -> None:
    text = (
        '{\n  "name": "j",\n  "start": "a",\n  "nodes": {\n    "a": {"type": "hangup", "prompt": 5}\n  }\n}\n'
    )
    _, found = issues(text)
    assert find(found, "error", "Expected")[1] == 5


def test_dangling_and_unreachable_nodes() -> None:
    text = BASE.replace("on_fail: agents", "on_fail: nowhere") + "  orphan:\n    type: hangup\n"
    report, found = issues(text)
    assert find(found, "error", "dangling reference: no node named 'nowhere'")[1] == 9
    assert find(found, "error", "unreachable node 'orphan'")[1] == 16
    assert not report.ok


def test_loop_with_no_exit_and_loop_with_exit() -> None:
    text = """\
    name: loop
    start: a
    nodes:
      a: {type: play, prompt: {say: hi}, next: b}
      b: {type: set, attributes: {x: "1"}, next: a}
    """
    _, found = issues(text)
    assert find(found, "error", "loop with no exit: a -> b")[1] == 4
    ok_loop = (
        text.replace("next: a}", "next: c}")
        + "  c: {type: menu, prompt: {say: m}, options: {'1': a, '0': q}, on_fail: q}\n  q: {type: queue, queue: s}\n"
    )
    _report, found = issues(ok_loop)
    assert not [f for f in found if "loop" in f[2]], found


def test_unknown_queue_online_and_unknown_prompt() -> None:
    report, found = issues(BASE, queues={"sales"})
    assert find(found, "error", "unknown queue 'support'")[1] == 15
    assert not [f for f in found if "offline" in f[2]]
    report, found = issues(BASE, queues={"sales", "support"})
    assert report.ok
    _, found = issues(BASE.replace('prompt: {say: "Press 1 for sales, 0 for an agent"}', "prompt: welcome"))
    assert find(found, "error", "unknown prompt 'welcome'")[1] == 7
    _, found = issues(
        BASE.replace('{say: "Press 1 for sales, 0 for an agent"}', "{file: x.wav}"), prompt_files={"y.wav"}
    )
    find(found, "error", "unknown prompt file 'x.wav'")


def test_warnings_menu_width_depth_prompt_length_and_person() -> None:
    wide = BASE.replace(
        '{"1": sales, "0": agents}',
        '{"1": sales, "2": sales, "3": sales, "4": sales, "5": sales, "0": agents}',
    )
    report, found = issues(wide)
    assert report.ok
    assert find(found, "warning", "6 options")[1] == 8
    long = BASE.replace('"Press 1 for sales, 0 for an agent"', '"' + "word " * 80 + '"')
    _, found = issues(long)
    assert find(found, "warning", "about 32 s")[1] == 7
    file_prompt = BASE.replace('{say: "Press 1 for sales, 0 for an agent"}', "{file: long.wav, seconds: 45}")
    find(issues(file_prompt)[1], "warning", "about 45 s")
    no_zero = BASE.replace(', "0": agents', "")
    _, found = issues(no_zero)
    assert find(found, "warning", "key 0 should reach a person")[1] == 8
    deep = """\
    name: deep
    start: m1
    nodes:
      m1: {type: menu, prompt: {say: a}, options: {"1": m2, "0": q}, on_fail: q}
      m2: {type: menu, prompt: {say: b}, options: {"1": m3, "0": q}, on_fail: q}
      m3: {type: menu, prompt: {say: c}, options: {"1": m4, "0": q}, on_fail: q}
      m4: {type: menu, prompt: {say: d}, options: {"1": q, "0": q}, on_fail: q}
      q: {type: queue, queue: s}
    """
    _, found = issues(deep)
    assert find(found, "warning", "menu 'm4' is 4 levels deep")[1] == 7
    assert not [f for f in found if "'m3' is" in f[2]]
    nobody = "name: n\nstart: a\nnodes:\n  a: {type: hangup}\n"
    find(issues(nobody)[1], "warning", "no path to a person")


def test_reference_checks_calendars_regex_timezone_subflows() -> None:
    text = """\
    name: refs
    timezone: Mars/Olympus
    start: b
    calendars:
      office: {hours: {mon: ["17:00-09:00"]}, holidays: ["2026-13-01"]}
    subflows:
      unused: {start: x, nodes: {x: {type: hangup}}}
    nodes:
      b:
        type: branch
        rules:
          - when: {open: shop}
            next: c
          - when: {caller: "([0-9"}
            next: c
        default: c
      c: {type: collect, prompt: {say: hi}, into: acct, min_digits: 5, max_digits: 2, next: s, on_fail: s}
      s: {type: subflow, flow: missing, next: q}
      q: {type: transfer, to: number, target: "12345"}
    """
    _, found = issues(text)
    lines = {f[2].split(":")[0]: f[1] for f in found}
    assert find(found, "error", "unknown time zone 'Mars/Olympus'")[1] == 2
    assert find(found, "error", "bad hours '17:00-09:00'")[1] == 5
    find(found, "error", "bad holiday")
    assert find(found, "error", "unknown calendar 'shop'")[1] == 12
    assert find(found, "error", "bad regular expression")[1] == 14
    assert find(found, "error", "min_digits is larger")[1] == 17
    assert find(found, "error", "unknown subflow 'missing'")[1] == 18
    assert find(found, "error", "not an E.164 number")[1] == 19
    assert find(found, "warning", "subflow 'unused' is never used")[1] == 7
    assert lines


def test_return_outside_subflow_is_an_error() -> None:
    _, found = issues("name: r\nstart: a\nnodes:\n  a: {type: play, prompt: {say: x}, next: return}\n")
    assert find(found, "error", "`return` is only allowed inside a subflow")[1] == 4


def test_hostile_documents_are_refused_quickly() -> None:
    bomb = (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    )
    report, found = issues(bomb)
    assert not report.ok and find(found, "error", "anchors and aliases")[1] == 1
    for deep in ("name: " + "[" * 20000 + "]" * 20000, "- " * 20000 + "x\n"):
        report, found = issues(deep)
        assert not report.ok and find(found, "error", "nested more than 32 levels")[1] == 1
    report, found = issues("- just\n- a list\n")
    assert find(found, "error", "a flow is a map")
    report, found = issues("name: x\nstart: a\nnodes: [1, 2]\n")
    assert find(found, "error", "`nodes` must be a map")[1] == 3


def test_schema_errors_come_with_dangling_references_and_readable_patterns() -> None:
    # A file with schema errors still gets its missing nodes reported, each error on its own line.
    text = BASE.replace("on_fail: agents", "on_fail: nowhere") + "    colour: red\n"
    report, found = issues(text)
    assert not report.ok and report.flow is None
    assert find(found, "error", "unknown field `colour`")[1] == 16
    assert find(found, "error", "dangling reference: no node named 'nowhere'")[1] == 9
    assert all("\n" not in i.render("f.yaml") for i in report.issues)
    _, bad_name = issues(BASE.replace("name: t\n", "name: Sales Line\n"))
    message = find(bad_name, "error", "a flow name is")[2]
    assert "lowercase letters" in message and "regex" not in message
    _, bad_digit = issues(BASE.replace('"1": sales', '"12": sales'))
    assert "one DTMF key: 0-9, * or #" in find(bad_digit, "error", "bad key")[2]
