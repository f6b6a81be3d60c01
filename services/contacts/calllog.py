"""One info line per step a person follows a call by (arrival, routing decision, answer, end), each with the
contact id, from the coordinator's transitions; the others at debug. Pure: a transition in, a line out."""

from __future__ import annotations

from typing import Any

from services.kernel import events as ev

from .records import ContactRecord

__all__ = ["call_line"]

TERMINAL = ("ended", "abandoned", "failed")


def call_line(change: ev.ContactStateChanged, record: ContactRecord) -> tuple[str, str, dict[str, Any]]:
    """(level, event name, fields) for the log line of one transition of `record`'s contact."""
    fields: dict[str, Any] = {"contact_id": str(change.call_id), "tenant_id": str(change.tenant_id)}
    new = change.new
    if new == "arrived":
        if record.outcome == "refused":
            route = f"refused ({record.cause})"
        elif record.flow_id is not None:
            route = f"flow {record.flow_id}"
        elif record.queue_id is not None:
            route = f"queue {record.queue_name or record.queue_id}"
        else:
            route = "nowhere (unrouted)"
        return (
            "info",
            "call_arrived",
            {**fields, "caller": record.caller, "dialled": record.dialled, "route": route},
        )
    if new == "queued" and change.old in ("arrived", "in_ivr"):
        queue = record.queue_name or change.queue_id
        return "info", "call_routed", {**fields, "to": f"queue {queue}", "by": change.old}
    if new == "in_ivr":
        return "info", "call_routed", {**fields, "to": f"flow {record.flow_id}", "by": "number"}
    if new == "connected":
        return "info", "call_answered", {**fields, "agent_id": change.agent_id}
    if new in TERMINAL:
        seconds = round(record.ended_at - record.arrived_at, 1) if record.ended_at is not None else None
        return (
            "info",
            "call_ended",
            {**fields, "outcome": record.outcome, "cause": record.cause, "seconds": seconds},
        )
    return "debug", "contact_state", {**fields, "old": change.old, "new": new, "cause": change.cause}
