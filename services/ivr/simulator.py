"""The flow simulator: runs the real interpreter offline with scripted digits, stubbed lookups and a chosen
time, and reports the path taken; and test suites (YAML cases with expected results) that `switchboard flows
test --suite` runs, each mismatch shown as a readable diff."""

from __future__ import annotations

import difflib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml
from switchboard.flowdef.flow import Flow

from services.kernel.events import (
    CallCollected,
    CallPlayFinished,
    CallRecordFinished,
    IvrCompleted,
    IvrNodeEntered,
    MediaCollect,
    MediaHangup,
    MediaPlay,
    MediaRecord,
    MediaTransfer,
    RoutingCallback,
    RoutingEnqueue,
    RoutingTask,
)

from .interpreter import Interpreter
from .lookup import LookupRequest, LookupResult

__all__ = [
    "Case",
    "CaseResult",
    "SimResult",
    "SuiteError",
    "load_suite",
    "parse_time",
    "run_case",
    "simulate",
]

SIM_TENANT = uuid.UUID(int=0)
MAX_STEPS = 2000
TIMEOUT = "timeout"  # a stub that makes a lookup time out


class SimResult(msgspec.Struct, kw_only=True):
    path: list[str]
    prompts: list[str]
    digits_used: list[str]
    queue: str | None = None
    transfer: str | None = None
    callback: str | None = None
    voicemail: bool = False
    outcome: str  # queued, transferred, callback, self_served, failed, abandoned, stuck
    attributes: dict[str, str]
    lookups: list[str] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    seconds: float = 0.0


def parse_time(text: str | None) -> float:
    """ISO 8601 (a naive time is UTC) -> epoch seconds; None -> now."""
    if not text:
        return datetime.now(UTC).timestamp()
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _stub_result(request: LookupRequest, stub: Any) -> LookupResult:
    if stub is None or stub == TIMEOUT:
        return LookupResult(id=request.id, error="timeout")
    if isinstance(stub, dict) and set(stub) <= {"status", "body"} and "status" in stub:
        body = stub.get("body", {})
        return LookupResult(id=request.id, status=int(stub["status"]), body=msgspec.json.encode(body))
    return LookupResult(id=request.id, status=200, body=msgspec.json.encode(stub))


def simulate(
    flow: Flow,
    *,
    digits: list[str] | None = None,
    attributes: dict[str, str] | None = None,
    caller: str = "+15550100000",
    dialled: str = "+15550199999",
    at: float | None = None,
    lookups: dict[str, Any] | None = None,
) -> SimResult:
    """One call through `flow`: each entry of `digits` answers one prompt that waits for keys ("" = silence);
    `lookups` maps a lookup node's name to the JSON it answers, {"status": 500} or "timeout"."""
    now = at if at is not None else parse_time(None)
    start = now
    script = list(digits or [])
    used: list[str] = []
    lookups = lookups or {}
    result = SimResult(path=[], prompts=[], digits_used=used, outcome="stuck", attributes={})
    interp = Interpreter.new(
        flow,
        version=0,
        tenant_id=SIM_TENANT,
        call_id=uuid.UUID(int=1),
        caller=caller,
        dialled=dialled,
        now=now,
        attributes=attributes,
    )
    pending = list(interp.start(now))
    steps = 0
    while pending and steps < MAX_STEPS:
        steps += 1
        out = pending.pop(0)
        follow: list[Any] = []
        if isinstance(out, IvrNodeEntered):
            result.path.append(out.node)
        elif isinstance(out, MediaPlay):
            text = out.text or (f"[file {out.file}]" if out.file else "[music on hold]")
            if out.loop:
                continue  # queue music: the call waits for an agent; the simulation ends there
            result.prompts.append(text)
            now += len((out.text or "").split()) * 0.4
            follow = interp.handle(
                CallPlayFinished(tenant_id=SIM_TENANT, call_id=out.call_id, play_id=out.id), now
            )
        elif isinstance(out, MediaCollect):
            if out.text or out.file:
                result.prompts.append(out.text or f"[file {out.file}]")
            if script:
                keys = script.pop(0)
                used.append(keys)
                now += 1.0
                reason = "max_digits" if keys else "first_digit_timeout"
            else:
                keys, reason = "", "first_digit_timeout"
                now += out.first_digit_timeout
            follow = interp.handle(
                CallCollected(
                    tenant_id=SIM_TENANT,
                    call_id=out.call_id,
                    collect_id=out.id,
                    digits=keys,
                    reason=reason,  # type: ignore[arg-type]
                ),
                now,
            )
        elif isinstance(out, LookupRequest):
            result.lookups.append(out.node)
            stub = lookups.get(out.node)
            if out.node not in lookups:
                result.notes.append(f"lookup {out.node!r} has no stub: it times out")
            answer = _stub_result(out, stub)
            now += out.timeout if answer.error else 0.05
            follow = interp.handle(answer, now)
        elif isinstance(out, MediaRecord):
            now += 10.0
            follow = interp.handle(
                CallRecordFinished(
                    tenant_id=SIM_TENANT, call_id=out.call_id, record_id=out.id, file=out.file, seconds=10.0
                ),
                now,
            )
            result.voicemail = True
        elif isinstance(out, RoutingEnqueue):
            if out.preferred_agent_id:
                result.transfer = f"agent:{out.preferred_agent_id}"
            else:
                result.queue = out.queue
        elif isinstance(out, RoutingCallback):
            result.callback = out.number
            result.queue = out.queue
        elif isinstance(out, RoutingTask):
            result.queue = out.queue
        elif isinstance(out, MediaTransfer):
            result.transfer = f"number:{out.to}"
        elif isinstance(out, MediaHangup):
            pass
        elif isinstance(out, IvrCompleted):
            result.outcome = out.outcome
        pending[:0] = follow
    if interp.state.phase.value == "queued":
        result.outcome = "queued"
    elif interp.state.phase.value == "transferring":
        result.outcome = "transferred"
    if steps >= MAX_STEPS:
        result.notes.append("stopped after too many steps")
    if script:
        result.notes.append(f"digits not used: {','.join(script)}")
    result.attributes = {k: v for k, v in interp.state.attributes.items() if not k.startswith("ivr.")}
    result.seconds = round(now - start, 3)
    return result


# -- test suites -------------------------------------------------------------------------------------------


class SuiteError(ValueError):
    pass


class Expect(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: list[str] | None = None
    path_includes: list[str] | None = None
    queue: str | None = None
    transfer: str | None = None
    outcome: str | None = None
    attributes: dict[str, str] | None = None
    prompts_include: list[str] | None = None


class Case(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    digits: list[str] = msgspec.field(default_factory=list)
    caller: str = "+15550100000"
    dialled: str = "+15550199999"
    at: str | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    lookups: dict[str, Any] = msgspec.field(default_factory=dict)
    expect: Expect


class Suite(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    flow: str | None = None
    cases: list[Case]


class CaseResult(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    diffs: list[str]
    result: SimResult


def load_suite(path: Path) -> tuple[str | None, list[Case]]:
    """A suite file: a YAML list of cases, or {flow: FILE, cases: [...]}; the flow path is relative to it."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise SuiteError(f"cannot read {path}: {exc.strerror}") from None
    if isinstance(data, list):
        data = {"cases": data}
    for case in (data or {}).get("cases", []) if isinstance(data, dict) else []:
        if isinstance(case, dict):
            # YAML reads 1 as a number and yes as a boolean: a test file means the keys and the text.
            if "digits" in case and isinstance(case["digits"], list):
                case["digits"] = [str(d) for d in case["digits"]]
            for section in ("attributes",):
                if isinstance(case.get(section), dict):
                    case[section] = {k: _text(v) for k, v in case[section].items()}
            exp = case.get("expect")
            if isinstance(exp, dict) and isinstance(exp.get("attributes"), dict):
                exp["attributes"] = {k: _text(v) for k, v in exp["attributes"].items()}
            if isinstance(case.get("at"), datetime):
                case["at"] = case["at"].isoformat()
    try:
        suite = msgspec.convert(data, Suite)
    except msgspec.ValidationError as exc:
        raise SuiteError(f"{path}: {exc}") from None
    flow = str(path.parent / suite.flow) if suite.flow else None
    return flow, suite.cases


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_case(flow: Flow, case: Case) -> CaseResult:
    result = simulate(
        flow,
        digits=case.digits,
        attributes=case.attributes,
        caller=case.caller,
        dialled=case.dialled,
        at=parse_time(case.at) if case.at else parse_time("2026-01-05T12:00:00+00:00"),
        lookups=case.lookups,
    )
    exp = case.expect
    diffs: list[str] = []
    if exp.path is not None and exp.path != result.path:
        lines = difflib.unified_diff(exp.path, result.path, "expected path", "actual path", lineterm="")
        diffs.append("path differs:\n" + "\n".join(lines))
    if exp.path_includes is not None:
        missing = [n for n in exp.path_includes if n not in result.path]
        if missing:
            diffs.append(f"path {' > '.join(result.path)} lacks {missing}")
    for name in ("queue", "transfer", "outcome"):
        want = getattr(exp, name)
        got = getattr(result, name)
        if want is not None and want != got:
            diffs.append(f"{name}: expected {want!r}, got {got!r}")
    for key, want in (exp.attributes or {}).items():
        got = result.attributes.get(key)
        if got != want:
            diffs.append(f"attribute {key}: expected {want!r}, got {got!r}")
    for text in exp.prompts_include or []:
        if not any(text in p for p in result.prompts):
            diffs.append(f"no prompt contains {text!r}")
    return CaseResult(name=case.name, ok=not diffs, diffs=diffs, result=result)
