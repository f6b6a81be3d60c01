"""Overload shedding for new calls, sans-IO: admit an INVITE or answer it 503 with Retry-After at once.

Consulted before any database work, so that past capacity the edge refuses cleanly in microseconds
instead of queueing calls until the caller's timers fire. Three signals, any of which sheds:

- concurrent calls (the process's `max_calls`);
- new INVITEs still being set up (looked up, auth-checked, given ports) beyond `max_setup`: a burst the
  process cannot absorb quickly;
- event-loop lag (how late a periodic probe ran) above `max_lag`: the loop is behind;
- the process's own CPU use (CPU seconds per wall second, smoothed) above `max_cpu`: the process is
  saturated. This is the signal that matters for UDP: asyncio reads one datagram per readiness event, so
  under overload the backlog grows in the kernel's socket buffer, where the loop lag does not see it,
  and every INVITE waits behind it. Shedding keeps the process just below saturation, so the backlog
  stays short for the calls it admits.

A limit of 0 disables the lag or CPU signal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Admission", "AdmissionController", "Decision"]


class Decision(enum.Enum):
    ADMIT = "admit"
    CAPACITY = "capacity"  # concurrent calls at the configured maximum
    SETUP = "setup"  # too many INVITEs in set-up at once
    LAG = "lag"  # the event loop is behind
    CPU = "cpu"  # the process uses (nearly) all of its core


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    retry_after: int = 0  # seconds, for the 503's Retry-After

    @property
    def admitted(self) -> bool:
        return self.decision is Decision.ADMIT

    @property
    def reason(self) -> str:
        return {
            Decision.ADMIT: "",
            Decision.CAPACITY: "Service Unavailable (capacity)",
            Decision.SETUP: "Service Unavailable (overloaded)",
            Decision.LAG: "Service Unavailable (overloaded)",
            Decision.CPU: "Service Unavailable (overloaded)",
        }[self.decision]


class AdmissionController:
    def __init__(
        self, *, max_calls: int, max_setup: int = 200, max_lag: float = 0.25, max_cpu: float = 0.95
    ) -> None:
        if max_calls < 0 or max_setup < 1 or max_lag < 0 or max_cpu < 0:
            raise ValueError("need max_calls >= 0, max_setup >= 1, max_lag >= 0 and max_cpu >= 0")
        self.max_calls = max_calls
        self.max_setup = max_setup
        self.max_lag = max_lag
        self.max_cpu = max_cpu
        self.lag = 0.0  # smoothed, seconds
        self.cpu = 0.0  # smoothed, CPU seconds per second
        self.shed: dict[Decision, int] = {d: 0 for d in Decision if d is not Decision.ADMIT}

    def observe_lag(self, lag: float) -> None:
        """How late the loop probe ran (seconds). Rises at once, decays over a few probes."""
        lag = max(0.0, lag)
        self.lag = lag if lag > self.lag else self.lag * 0.7 + lag * 0.3

    def observe_cpu(self, cpu_seconds: float, wall_seconds: float) -> None:
        """CPU time the process used over the last `wall_seconds`; smoothed over a few probes."""
        if wall_seconds > 0:
            self.cpu = self.cpu * 0.7 + min(2.0, max(0.0, cpu_seconds / wall_seconds)) * 0.3

    def check(self, *, calls: int, setting_up: int) -> Admission:
        if calls >= self.max_calls:
            decision, retry = Decision.CAPACITY, 5
        elif setting_up >= self.max_setup:
            decision, retry = Decision.SETUP, 1
        elif self.max_lag and self.lag > self.max_lag:
            decision, retry = Decision.LAG, 2
        elif self.max_cpu and self.cpu > self.max_cpu:
            decision, retry = Decision.CPU, 2
        else:
            return Admission(Decision.ADMIT)
        self.shed[decision] += 1
        return Admission(decision, retry)
