"""Restart decisions for supervised child processes, without I/O or a clock of its own (sans-IO).

The asyncio adapter (supervisor.py) reports what happened (`started`, `exited`) with the time, asks
`next_timer()` when to wake up, and calls `handle_timer(now)` then; every call returns the actions to carry
out. A child that crashes is restarted after a back-off that starts at 0.5 s and doubles up to 30 s; a child
that ran for 60 s before it crashed counts as healthy again, so its next restart is quick. Nothing is ever
given up on: every crash is reported so that a human sees a flapping service.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ChildState",
    "Policy",
    "RestartScheduled",
    "Start",
    "SupervisorCore",
]


class ChildState(enum.Enum):
    WAITING = "waiting"  # not running, a start is due at `due`
    RUNNING = "running"
    STOPPED = "stopped"  # the supervisor is stopping: no more starts


@dataclass(frozen=True)
class Policy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # A run at least this long resets the back-off: the crash that ends it is treated as a first crash.
    healthy_after_s: float = 60.0


@dataclass(frozen=True)
class Start:
    """Start (or restart) the child `name` now."""

    name: str
    attempt: int  # 0 for the first start, then 1, 2, ... per restart


@dataclass(frozen=True)
class RestartScheduled:
    """A report for humans: `name` exited with `returncode` and will start again in `delay_s`."""

    name: str
    returncode: int
    ran_for_s: float
    delay_s: float
    restarts: int  # how many restarts this one will be, counting from the first start


Action = Start | RestartScheduled


@dataclass
class _Child:
    name: str
    state: ChildState = ChildState.WAITING
    due: float = 0.0
    started_at: float = 0.0
    backoff_s: float = 0.0
    restarts: int = 0


class SupervisorCore:
    def __init__(self, names: Iterable[str], policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._children = {name: _Child(name, backoff_s=self.policy.initial_backoff_s) for name in names}
        if not self._children:
            raise ValueError("a supervisor needs at least one child")
        self._stopping = False

    @property
    def names(self) -> list[str]:
        return list(self._children)

    def state(self, name: str) -> ChildState:
        return self._children[name].state

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    def start(self, now: float) -> list[Action]:
        """Start every child now."""
        for child in self._children.values():
            child.due = now
        return self.handle_timer(now)

    def exited(self, name: str, returncode: int, now: float) -> list[Action]:
        """The child `name` exited: schedule its restart (unless we are stopping)."""
        child = self._children[name]
        if child.state is not ChildState.RUNNING:
            return []
        if self._stopping:
            child.state = ChildState.STOPPED
            return []
        ran_for = now - child.started_at
        if ran_for >= self.policy.healthy_after_s:
            child.backoff_s = self.policy.initial_backoff_s
        delay = child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, self.policy.max_backoff_s)
        child.state = ChildState.WAITING
        child.due = now + delay
        child.restarts += 1
        return [RestartScheduled(name, returncode, ran_for, delay, child.restarts)]

    def next_timer(self) -> float | None:
        """When the adapter should call `handle_timer` next, or None if nothing is waiting."""
        dues = [c.due for c in self._children.values() if c.state is ChildState.WAITING]
        return min(dues) if dues and not self._stopping else None

    def handle_timer(self, now: float) -> list[Action]:
        """Start every child whose time has come."""
        if self._stopping:
            return []
        actions: list[Action] = []
        for child in self._children.values():
            if child.state is ChildState.WAITING and child.due <= now:
                child.state = ChildState.RUNNING
                child.started_at = now
                actions.append(Start(child.name, child.restarts))
        return actions

    def start_failed(self, name: str, now: float) -> list[Action]:
        """The adapter could not even spawn `name` (e.g. fork failed): treat it as an immediate crash."""
        return self.exited(name, -1, now)

    def stop(self) -> None:
        """From now on nothing is started; children still running move to STOPPED as they exit."""
        self._stopping = True
        for child in self._children.values():
            if child.state is ChildState.WAITING:
                child.state = ChildState.STOPPED

    @property
    def stopping(self) -> bool:
        return self._stopping

    def running(self) -> list[str]:
        return [c.name for c in self._children.values() if c.state is ChildState.RUNNING]
