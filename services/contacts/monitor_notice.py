"""Who is told that a supervisor stepped into a call, by the tenant's `monitor_notice` policy (sans-IO).

The agent is told of every change of mode (joined to listen, now whispering, barged in, left), so its desk
always shows what the supervisor is doing; the caller is told once, when a supervisor joins, by a short
announcement (what it hears afterwards in a barge is the supervisor itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["POLICIES", "Notice", "Policy", "caller_text", "notice_for"]

Policy = Literal["none", "agent", "caller", "both"]
POLICIES: tuple[Policy, ...] = ("none", "agent", "caller", "both")

_CALLER_TEXT = {
    "en": "This call may be monitored.",
    "fr": "Cet appel peut être écouté.",
    "es": "Esta llamada puede ser supervisada.",
    "de": "Dieser Anruf kann mitgehört werden.",
}


@dataclass(frozen=True, slots=True)
class Notice:
    agent: bool
    caller: bool


NOBODY = Notice(agent=False, caller=False)


def notice_for(policy: str, previous: str, mode: str) -> Notice:
    """`previous` and `mode`: the monitor's mode before and after the command (listen, whisper, barge or
    none). An unknown policy tells nobody (the column's check keeps it from happening)."""
    if previous == mode:
        return NOBODY
    agent = policy in ("agent", "both")
    caller = policy in ("caller", "both") and previous == "none" and mode != "none"
    return Notice(agent=agent, caller=caller)


def caller_text(language: str) -> str:
    return _CALLER_TEXT.get(language, _CALLER_TEXT["en"])
