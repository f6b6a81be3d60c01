"""A queue's routing rules (docs/routing.md, "Queue rules"): strategy, overflow, opening hours and holidays
with a closed treatment, priority rules, preferred-site spill thresholds and position announcements.

The shapes are checked by msgspec; what it cannot express (a weekday name, a window's order, a target that
is another queue of the tenant) is checked here, each failure a 422 naming the field (`overflow[1].
target_queue_id`). Hours are checked by the routing core's own `validate_schedule`, so the API accepts
exactly what routing can run."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

import asyncpg
import msgspec

from services.routing.core.schedule import WEEKDAYS, Schedule, validate_schedule

from .problems import validation
from .validation import check_text

__all__ = [
    "RULE_COLUMNS",
    "ClosedTreatment",
    "OverflowRule",
    "PriorityRule",
    "Seconds",
    "Strategy",
    "check_rules",
    "check_targets",
    "rule_changes",
    "rules_from_row",
]

RULE_COLUMNS = (
    "strategy, overflow, hours, holidays, closed_treatment, closed_message, closed_queue_id, closed_flow_id, "
    "survey_flow_id, priority_rules, "
    "spill_after_seconds, spill_expected_wait_seconds, announce_seconds"
)
Strategy = Literal["longest_idle", "most_skilled", "round_robin", "least_occupied"]
ClosedTreatment = Literal["message", "queue", "flow"]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=86400)]
_WINDOW = re.compile(r"^(\d\d:\d\d)-(\d\d:\d\d)$")
_ATTRIBUTE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_RULES = 20


class OverflowRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Move a waiting contact to `target_queue_id` after `after_seconds` in this queue, or as soon as its
    expected wait is over `expected_wait_over_seconds` (one of them, or both: the first that fires)."""

    target_queue_id: uuid.UUID
    after_seconds: Seconds | None = None
    expected_wait_over_seconds: Seconds | None = None


class PriorityRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A contact whose attribute `attribute` equals `equals` gets `raise_by` added to its priority."""

    attribute: str
    equals: Annotated[str, msgspec.Meta(max_length=200)]
    raise_by: Annotated[int, msgspec.Meta(ge=-98, le=98)]


def rules_from_row(row: asyncpg.Record) -> dict[str, Any]:
    """The rule fields of a queue row, as the API shows them."""
    return {
        "strategy": row["strategy"],
        "overflow": msgspec.json.decode(row["overflow"], type=list[OverflowRule]),
        "hours": msgspec.json.decode(row["hours"], type=dict[str, list[str]]) if row["hours"] else None,
        "holidays": list(row["holidays"] or []),
        "closed_treatment": row["closed_treatment"],
        "closed_message": row["closed_message"],
        "closed_queue_id": row["closed_queue_id"],
        "closed_flow_id": row["closed_flow_id"],
        "survey_flow_id": row["survey_flow_id"],
        "priority_rules": msgspec.json.decode(row["priority_rules"], type=list[PriorityRule]),
        "spill_after_seconds": row["spill_after_seconds"],
        "spill_expected_wait_seconds": row["spill_expected_wait_seconds"],
        "announce_seconds": row["announce_seconds"],
    }


def _check_hours(hours: dict[str, list[str]]) -> dict[str, list[str]]:
    windows: dict[str, list[tuple[str, str]]] = {}
    for day, spans in hours.items():
        if day not in WEEKDAYS:
            raise validation(f"hours.{day}", f"weekdays are {', '.join(WEEKDAYS)}")
        for i, span in enumerate(spans):
            m = _WINDOW.match(span)
            if m is None:
                raise validation(
                    f"hours.{day}[{i}]", f"{span!r} is not a window HH:MM-HH:MM (e.g. 09:00-17:00)"
                )
            windows.setdefault(day, []).append((m.group(1), m.group(2)))
            if err := validate_schedule(Schedule(tz="UTC", hours={day: [windows[day][-1]]})):
                raise validation(f"hours.{day}[{i}]", err)
    return hours


def check_rules(data: Any) -> dict[str, Any]:
    """The rule fields set in a create or patch body (UNSET ones left out), checked, as column values.
    Targets are checked against the tenant by `check_targets` inside the transaction."""
    out: dict[str, Any] = {}
    unset = msgspec.UNSET
    if (strategy := getattr(data, "strategy", unset)) is not unset:
        out["strategy"] = strategy
    if (overflow := getattr(data, "overflow", unset)) is not unset:
        if len(overflow) > MAX_RULES:
            raise validation("overflow", f"at most {MAX_RULES} rules")
        for i, rule in enumerate(overflow):
            if rule.after_seconds is None and rule.expected_wait_over_seconds is None:
                raise validation(
                    f"overflow[{i}]", "give after_seconds, expected_wait_over_seconds or both: when it moves"
                )
        out["overflow"] = msgspec.json.encode(overflow).decode()
    if (hours := getattr(data, "hours", unset)) is not unset:
        out["hours"] = None if hours is None else msgspec.json.encode(_check_hours(hours)).decode()
    if (holidays := getattr(data, "holidays", unset)) is not unset:
        if len(holidays) > 366:
            raise validation("holidays", "at most 366 dates")
        out["holidays"] = sorted(set(holidays))
    if (treatment := getattr(data, "closed_treatment", unset)) is not unset:
        out["closed_treatment"] = treatment
    if (message := getattr(data, "closed_message", unset)) is not unset:
        out["closed_message"] = (
            None if message is None else check_text("closed_message", message, max_len=500)
        )
    for name in ("closed_queue_id", "closed_flow_id", "survey_flow_id"):
        if (target := getattr(data, name, unset)) is not unset:
            out[name] = target
    if (rules := getattr(data, "priority_rules", unset)) is not unset:
        if len(rules) > MAX_RULES:
            raise validation("priority_rules", f"at most {MAX_RULES} rules")
        for i, rule in enumerate(rules):
            if not _ATTRIBUTE.match(rule.attribute):
                raise validation(
                    f"priority_rules[{i}].attribute", "1-64 letters, digits or _ . : - (e.g. vip, caller)"
                )
        out["priority_rules"] = msgspec.json.encode(rules).decode()
    for name in ("spill_after_seconds", "spill_expected_wait_seconds", "announce_seconds"):
        if (value := getattr(data, name, unset)) is not unset:
            out[name] = value
    return out


async def check_targets(
    conn: asyncpg.Connection, queue_id: uuid.UUID | None, changes: dict[str, Any]
) -> None:
    """Overflow and closed targets are other queues of the tenant (RLS shows only its own), and a queue
    that sends closed callers to a queue names it. `queue_id` None: the queue is being created."""
    targets: list[tuple[str, uuid.UUID]] = []
    if "overflow" in changes:
        rules = msgspec.json.decode(changes["overflow"], type=list[OverflowRule])
        targets += [(f"overflow[{i}].target_queue_id", r.target_queue_id) for i, r in enumerate(rules)]
    if changes.get("closed_queue_id") is not None:
        targets.append(("closed_queue_id", changes["closed_queue_id"]))
    for field, target in targets:
        if target == queue_id:
            raise validation(field, "a queue cannot send its contacts to itself")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM queues WHERE id = $1)", target):
            raise validation(field, f"no queue with id {target}")
    for field in ("closed_flow_id", "survey_flow_id"):
        flow = changes.get(field)
        if flow is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM flows WHERE id = $1)", flow
        ):
            raise validation(field, f"no flow with id {flow}")
    if {"closed_treatment", "closed_queue_id", "closed_flow_id"} & changes.keys():
        row = None
        if queue_id is not None:
            row = await conn.fetchrow(
                "SELECT closed_treatment, closed_queue_id, closed_flow_id FROM queues WHERE id = $1", queue_id
            )
        treatment = changes.get("closed_treatment", row["closed_treatment"] if row else "message")
        for kind, field in (("queue", "closed_queue_id"), ("flow", "closed_flow_id")):
            named = changes.get(field, row[field] if row else None)
            if treatment == kind and named is None:
                raise validation(field, f"closed_treatment {kind!r} needs the {kind} callers go to")


def rule_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """An audit-friendly copy of the rule changes (JSON documents decoded, ids and dates as text)."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("overflow", "hours", "priority_rules") and isinstance(value, str):
            out[key] = msgspec.json.decode(value)
        elif key == "holidays":
            out[key] = [d.isoformat() for d in value]
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out
