"""The flow test format: the cases a suite file holds (YAML), what a simulated call gives (SimResult) and a
case's verdict (CaseResult). The simulator that runs them is the platform's (services/ivr/simulator.py: it
runs the IVR interpreter); the CLI reads suites here and gets results from it, in-process where the platform
is installed or from the API (POST /v1/flows/simulate)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import yaml

__all__ = ["Case", "CaseResult", "Expect", "SimResult", "Suite", "SuiteError", "load_suite", "parse_time"]


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
