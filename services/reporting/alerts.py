"""Queue alerts (sans-IO): the tenant's notification policy applied to one queue's live figures.

A policy has four thresholds (docs/supervisor.md, "Alerts"); the tenant's default applies to every queue
unless the queue has its own. Unset thresholds: the longest wait is held to the queue's own SL threshold
(sl_seconds), the service level to the queue's own target (sl_percent); waiting and away are not watched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["Alert", "AlertBook", "Change", "Policy", "evaluate", "resolve"]


class Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    longest_wait_seconds: int | None = None
    service_level_below_percent: int | None = None
    waiting_over: int | None = None
    away_over_percent: int | None = None


class Alert(msgspec.Struct, kw_only=True):
    kind: str  # longest_wait | service_level | waiting | away
    value: float
    threshold: float
    message: str


def resolve(queue: dict[str, Any], policy: Policy) -> dict[str, float | None]:
    """The thresholds in force for a queue (its own figures where the policy leaves them unset)."""
    sl_percent = policy.service_level_below_percent
    return {
        "longest_wait_s": float(policy.longest_wait_seconds or queue["sl_seconds"]),
        "service_level_below": sl_percent / 100 if sl_percent is not None else float(queue["sl_target"]),
        "waiting_over": float(policy.waiting_over) if policy.waiting_over is not None else None,
        "away_over": policy.away_over_percent / 100 if policy.away_over_percent is not None else None,
    }


def evaluate(queue: dict[str, Any], thresholds: dict[str, float | None]) -> list[Alert]:
    """The thresholds a queue's realtime row crosses now (the row of /v1/realtime/queues)."""
    out: list[Alert] = []
    longest, limit = float(queue["longest_wait_s"] or 0.0), thresholds["longest_wait_s"]
    if queue["waiting"] and limit is not None and longest > limit:
        out.append(
            Alert(
                kind="longest_wait",
                value=longest,
                threshold=limit,
                message=f"a caller has waited {longest:.0f} s (alert over {limit:.0f} s)",
            )
        )
    sl, below = queue.get("service_level"), thresholds["service_level_below"]
    if sl is not None and below is not None and sl < below:
        out.append(
            Alert(
                kind="service_level",
                value=sl,
                threshold=below,
                message=f"service level {sl:.0%} today, under {below:.0%}",
            )
        )
    over = thresholds["waiting_over"]
    if over is not None and queue["waiting"] > over:
        out.append(
            Alert(
                kind="waiting",
                value=float(queue["waiting"]),
                threshold=over,
                message=f"{queue['waiting']} callers waiting (alert over {over:.0f})",
            )
        )
    away_over = thresholds["away_over"]
    agents = {k: int(v) for k, v in (queue.get("agents") or {}).items() if k != "logged_out"}
    signed_in = sum(agents.values())
    if away_over is not None and signed_in:
        share = agents.get("away", 0) / signed_in
        if share > away_over:
            out.append(
                Alert(
                    kind="away",
                    value=share,
                    threshold=away_over,
                    message=f"{share:.0%} of signed-in agents are away (alert over {away_over:.0%})",
                )
            )
    return out


@dataclass(frozen=True)
class Change:
    """An alert raised (`alert` set) or cleared (`alert` None) for a queue."""

    queue_id: str
    queue_name: str
    kind: str
    alert: Alert | None


@dataclass
class AlertBook:
    """Which alerts of one tenant are raised, so each is announced once when crossed and once when
    cleared. `update` takes every queue's realtime row with its thresholds (`annotate`'s shape) at `now`
    and returns the changes and when to look again: the moment the longest wait of a queue with callers
    will cross its threshold if nothing else happens (None: no such moment)."""

    raised: dict[tuple[str, str], Alert] = field(default_factory=dict)

    def update(self, rows: list[dict[str, Any]], now: float) -> tuple[list[Change], float | None]:
        changes: list[Change] = []
        seen: set[str] = set()
        wake: float | None = None
        for row in rows:
            qid, name = str(row["queue_id"]), str(row.get("queue_name", ""))
            seen.add(qid)
            thresholds = row["thresholds"]
            crossed = {a.kind: a for a in evaluate(row, thresholds)}
            for kind, alert in crossed.items():
                if (qid, kind) not in self.raised:
                    changes.append(Change(qid, name, kind, alert))
                self.raised[(qid, kind)] = alert
            for key in [k for k in self.raised if k[0] == qid and k[1] not in crossed]:
                del self.raised[key]
                changes.append(Change(qid, name, key[1], None))
            limit, longest = thresholds["longest_wait_s"], float(row["longest_wait_s"] or 0.0)
            if row["waiting"] and limit is not None and "longest_wait" not in crossed:
                due = now + max(0.0, limit - longest) + 0.05  # just past the threshold: crossed then
                wake = due if wake is None else min(wake, due)
        for key in [k for k in self.raised if k[0] not in seen]:  # a queue removed meanwhile
            del self.raised[key]
            changes.append(Change(key[0], "", key[1], None))
        return changes, wake
