"""The flow simulator: runs the real interpreter offline with scripted digits, stubbed lookups and a chosen
time, and reports the path taken; and test suites (YAML cases with expected results) that `switchboard flows
test --suite` runs, each mismatch shown as a readable diff."""

from __future__ import annotations

import difflib
import uuid
from typing import Any, Literal

import msgspec
from switchboard.flowdef.flow import Flow, QueueNode
from switchboard.flowdef.suite import (
    Case,
    CaseResult,
    SimResult,
    SuiteError,
    load_suite,
    parse_time,
)

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
            reason: Literal["max_digits", "first_digit_timeout"]
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
                    reason=reason,
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
            if out.queue is not None:  # handed to a queue: the coordinator's wait, where simulation ends
                enqueue = out.queue.enqueue
                if enqueue.preferred_agent_id:
                    result.transfer = f"agent:{enqueue.preferred_agent_id}"
                else:
                    result.queue = enqueue.queue
                node = interp.call.nodes(interp.state.scope).get(interp.state.node)
                result.outcome = "queued" if isinstance(node, QueueNode) else "transferred"
        pending[:0] = follow
    if interp.state.phase.value == "transferring":
        result.outcome = "transferred"
    if steps >= MAX_STEPS:
        result.notes.append("stopped after too many steps")
    if script:
        result.notes.append(f"digits not used: {','.join(script)}")
    result.attributes = {k: v for k, v in interp.state.attributes.items() if not k.startswith("ivr.")}
    result.seconds = round(now - start, 3)
    return result


# -- test suites -------------------------------------------------------------------------------------------


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
