"""The flow format: msgspec models of a tenant's IVR flow (YAML or JSON), and its JSON Schema.

A flow is a map of named nodes, each with a `type`; nodes name the node that follows them. Prompts are either
inline (`{say: "..."}` for text to speech, `{file: "..."}` for a recording) or the name of an entry in the
flow's `prompts` table. `subflows` are named groups of nodes entered by a `subflow` node; inside a subflow the
target `return` goes back to the node after the `subflow` node.
"""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "NODE_TYPES",
    "RETURN",
    "Branch",
    "Calendar",
    "Callback",
    "Collect",
    "Condition",
    "DynamicMenu",
    "Flow",
    "Hangup",
    "Lookup",
    "Menu",
    "MenuVariant",
    "Node",
    "Play",
    "Prompt",
    "QueueNode",
    "Rule",
    "SetNode",
    "Subflow",
    "SubflowBody",
    "Survey",
    "SurveyQuestion",
    "Transfer",
    "Voicemail",
    "Weekday",
    "flow_schema",
]

# The target that leaves a subflow and continues after the `subflow` node that entered it.
RETURN = "return"

NodeId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$", description="a node name")]
Digit = Annotated[str, msgspec.Meta(pattern=r"^[0-9*#]$", description="one DTMF key: 0-9, * or #")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
AttrName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]


class Prompt(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Text to speak (`say`) or a recording (`file`, with its length in `seconds` if known)."""

    say: str | None = None
    file: str | None = None
    seconds: float | None = None
    voice: str = "en-us"


PromptRef = Prompt | str


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Calendar(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Business hours and holidays in one time zone. `hours` maps mon..sun to ranges like "09:00-17:30";
    a day not listed is closed. `holidays` are ISO dates ("2026-12-25") on which the calendar is closed."""

    timezone: str | None = None  # default: the flow's timezone
    hours: dict[Weekday, list[str]] = msgspec.field(default_factory=dict)
    holidays: list[str] = msgspec.field(default_factory=list)


class Condition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every test given must hold (AND); `negate` inverts the whole. Regular expressions match anywhere
    unless anchored."""

    attribute: str | None = None
    equals: str | None = None
    one_of: list[str] | None = None
    matches: str | None = None
    present: bool | None = None
    caller: str | None = None  # regex on the caller's number
    dialled: str | None = None  # regex on the dialled number
    open: str | None = None  # calendar name: within its hours and not a holiday
    holiday: str | None = None  # calendar name: today is one of its holidays
    negate: bool = False


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    when: Condition
    next: str


class _Node(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    pass


class Play(_Node, kw_only=True, tag="play"):
    prompt: PromptRef
    interruptible: bool = True
    next: str


class Menu(_Node, kw_only=True, tag="menu"):
    prompt: PromptRef
    options: dict[Digit, str]
    timeout: Seconds = 5.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    invalid_prompt: PromptRef | None = None
    timeout_prompt: PromptRef | None = None
    on_fail: str  # after the last retry


class MenuVariant(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    when: Condition
    prompt: PromptRef
    options: dict[Digit, str]


class DynamicMenu(_Node, kw_only=True, tag="dynamic_menu"):
    """The first variant whose condition holds is the menu; none holding, the default prompt and options."""

    variants: list[MenuVariant]
    prompt: PromptRef
    options: dict[Digit, str]
    timeout: Seconds = 5.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    invalid_prompt: PromptRef | None = None
    timeout_prompt: PromptRef | None = None
    on_fail: str


class Collect(_Node, kw_only=True, tag="collect"):
    prompt: PromptRef
    into: AttrName
    min_digits: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    max_digits: Annotated[int, msgspec.Meta(ge=1, le=64)] = 16
    terminator: Literal["#", "*"] | None = "#"
    first_digit_timeout: Seconds = 5.0
    inter_digit_timeout: Seconds = 3.0
    pattern: str | None = None  # regex the whole input must match
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    invalid_prompt: PromptRef | None = None
    next: str
    on_fail: str


class SetNode(_Node, kw_only=True, tag="set"):
    """Set contact attributes; `{name}` in a value is replaced by that attribute (caller, dialled too)."""

    attributes: dict[AttrName, str]
    next: str


class Branch(_Node, kw_only=True, tag="branch"):
    rules: list[Rule]
    default: str


class Lookup(_Node, kw_only=True, tag="lookup"):
    """POST (or GET) to the tenant's own system, signed with HMAC-SHA256 over "<timestamp>.<body>"
    (headers X-Switchboard-Timestamp and X-Switchboard-Signature: v1=<hex>). The JSON object answered
    becomes attributes: all scalar members, or only those named in `results` (attribute -> member)."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    method: Literal["GET", "POST"] = "POST"
    send: dict[str, str] = msgspec.field(default_factory=lambda: {"caller": "{caller}"})
    timeout: Annotated[float, msgspec.Meta(gt=0, le=10)] = 2.0
    results: dict[AttrName, str] | None = None
    prefix: str = ""
    next: str
    on_error: str  # timeout, HTTP error or an answer that is not a JSON object


class QueueNode(_Node, kw_only=True, tag="queue"):
    queue: str
    skills: dict[str, Annotated[int, msgspec.Meta(ge=0, le=10)]] = msgspec.field(default_factory=dict)
    priority: Annotated[int, msgspec.Meta(ge=1, le=99)] | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    music: PromptRef | None = None  # default: music on hold
    announce_every: Annotated[float, msgspec.Meta(ge=10, le=3600)] | None = 60.0
    callback_after: Annotated[float, msgspec.Meta(ge=0, le=3600)] | None = None  # offer a callback
    callback_digit: Digit = "1"
    callback_prompt: PromptRef | None = None
    max_wait: Annotated[float, msgspec.Meta(gt=0, le=86400)] | None = None
    on_timeout: str | None = None  # after max_wait (e.g. voicemail)
    on_callback: str | None = None  # after a callback is accepted (default: confirm and hang up)


class Callback(_Node, kw_only=True, tag="callback"):
    """Schedule a call back to the caller's number (confirm with 1) or to a number they key in."""

    queue: str
    confirm_prompt: PromptRef | None = None
    capture_prompt: PromptRef | None = None
    keep_place: bool = False
    # Ask the caller for a time (HHMM in the flow's time zone, the next such time; # for "as soon as
    # possible"): the call back is placed in line at that time.
    schedule: bool = False
    schedule_prompt: PromptRef | None = None
    next: str


class Voicemail(_Node, kw_only=True, tag="voicemail"):
    queue: str
    prompt: PromptRef
    max_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 120.0
    next: str | None = None  # default: thank and hang up


class Transfer(_Node, kw_only=True, tag="transfer"):
    to: Literal["queue", "agent", "number"]
    target: str  # queue name, agent id or E.164 number
    prompt: PromptRef | None = None
    on_fail: str | None = None


class SurveyQuestion(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    prompt: PromptRef
    into: AttrName
    min: Annotated[int, msgspec.Meta(ge=0, le=9)] = 1
    max: Annotated[int, msgspec.Meta(ge=0, le=9)] = 5


class Survey(_Node, kw_only=True, tag="survey"):
    questions: list[SurveyQuestion]
    timeout: Seconds = 5.0
    next: str


class Subflow(_Node, kw_only=True, tag="subflow"):
    flow: str
    next: str


class Hangup(_Node, kw_only=True, tag="hangup"):
    prompt: PromptRef | None = None


Node = (
    Play
    | Menu
    | DynamicMenu
    | Collect
    | SetNode
    | Branch
    | Lookup
    | QueueNode
    | Callback
    | Voicemail
    | Transfer
    | Survey
    | Subflow
    | Hangup
)
NODE_TYPES: dict[str, type[_Node]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        Play,
        Menu,
        DynamicMenu,
        Collect,
        SetNode,
        Branch,
        Lookup,
        QueueNode,
        Callback,
        Voicemail,
        Transfer,
        Survey,
        Subflow,
        Hangup,
    )
}


class SubflowBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    start: str
    nodes: dict[NodeId, Node]


class Flow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$", description="flow name")]
    description: str = ""
    # IANA zone for calendars; not given: the tenant's default site's zone when deployed (UTC offline).
    timezone: str | None = None
    start: str
    # Where a call goes when it cannot continue where it was (e.g. after a restart mid-recording).
    fallback: str | None = None
    prompts: dict[str, Prompt] = msgspec.field(default_factory=dict)
    calendars: dict[str, Calendar] = msgspec.field(default_factory=dict)
    subflows: dict[NodeId, SubflowBody] = msgspec.field(default_factory=dict)
    nodes: dict[NodeId, Node]


def flow_schema() -> dict[str, object]:
    """The published JSON Schema of the flow format (docs/flow.schema.json), in one fixed form.

    msgspec releases lay the same schema out differently (0.23 puts a `$ref` to `$defs/Flow` at the root
    where older ones inline the object), so the root reference is folded in: the published file has the
    Flow object at its root and every other type under `$defs`, whatever msgspec produced.
    """
    schema = _clean_descriptions(_inline_root_ref(msgspec.json.schema(Flow)))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchboard IVR flow"
    return schema


def _inline_root_ref(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    defs = dict(schema.get("$defs", {}))
    name = ref.removeprefix("#/$defs/")
    root = defs.pop(name)
    if ref in json.dumps(defs):  # another type refers back to the root: keep its definition
        defs[name] = root
    return {**root, "$defs": defs}


def _clean_descriptions(schema: dict[str, Any]) -> dict[str, object]:
    # Some msgspec releases keep a docstring's indentation, others strip it.
    return {k: _clean_value(k, v) for k, v in schema.items()}


def _clean_value(key: str, value: object) -> object:
    if key == "description" and isinstance(value, str):
        return inspect.cleandoc(value)
    if isinstance(value, dict):
        return _clean_descriptions(value)
    if isinstance(value, list):
        return [_clean_value("", v) for v in value]
    return value


if __name__ == "__main__":  # python -m switchboard.flowdef.flow > docs/flow.schema.json
    print(json.dumps(flow_schema(), indent=2, sort_keys=True))
