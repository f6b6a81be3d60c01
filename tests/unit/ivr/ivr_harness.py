"""Test helpers: a flow from YAML text, and a call driven by hand with an explicit clock."""

from __future__ import annotations

import uuid
from textwrap import dedent
from typing import Any, TypeVar

from switchboard.flowdef.flow import Flow
from switchboard.flowdef.validate import validate_text

from services.ivr.interpreter import Interpreter
from services.kernel.events import (
    CallCollected,
    CallPlayFinished,
    IvrCompleted,
    IvrQueueWait,
    MediaCollect,
    MediaPlay,
    RoutingEnqueue,
)

T = TypeVar("T")
TENANT = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
CALL = uuid.UUID("00000000-0000-0000-0000-0000000000bb")
# Monday 2026-11-23 12:00 UTC.
NOON_MONDAY = 1795435200.0


def flow_of(text: str) -> Flow:
    report = validate_text(dedent(text))
    assert report.flow is not None and not report.errors, report.issues
    return report.flow


class Call:
    def __init__(
        self,
        flow: Flow,
        *,
        now: float = NOON_MONDAY,
        caller: str = "+15551230000",
        attributes: dict[str, str] | None = None,
        secret: bytes = b"k",
        language: str = "en",
    ) -> None:
        self.flow = flow
        self.now = now
        self.ivr = Interpreter.new(
            flow,
            version=3,
            tenant_id=TENANT,
            call_id=CALL,
            caller=caller,
            dialled="+15550001111",
            now=now,
            attributes=attributes,
            lookup_secret=secret,
            language=language,
        )
        self.out: list[Any] = self.ivr.start(now)

    def send(self, event: Any, advance: float = 1.0) -> list[Any]:
        self.now += advance
        self.out = self.ivr.handle(event, self.now)
        return self.out

    def timer(self, at: float | None = None) -> list[Any]:
        t = self.ivr.next_timer() if at is None else at
        assert t is not None
        self.now = t
        self.out = self.ivr.handle_timer(t)
        return self.out

    def one(self, kind: type[T]) -> T:
        found = [o for o in self.out if isinstance(o, kind)]
        assert len(found) == 1, f"expected one {kind.__name__} in {[type(o).__name__ for o in self.out]}"
        return found[0]

    def handed(self) -> IvrQueueWait:
        """The queue and its terms the flow handed to the coordinator (the IVR's step ended there)."""
        wait = self.one(IvrCompleted).queue
        assert wait is not None, "the flow ended without reaching a queue"
        return wait

    def enqueued(self) -> RoutingEnqueue:
        return self.handed().enqueue

    def has(self, kind: type) -> bool:
        return any(isinstance(o, kind) for o in self.out)

    def finish_play(self, advance: float = 1.0) -> list[Any]:
        play = self.one(MediaPlay)
        return self.send(CallPlayFinished(tenant_id=TENANT, call_id=CALL, play_id=play.id), advance)

    def press(self, digits: str, advance: float = 1.0) -> list[Any]:
        collect = self.one(MediaCollect)
        reason = "max_digits" if digits else "first_digit_timeout"
        return self.send(
            CallCollected(
                tenant_id=TENANT, call_id=CALL, collect_id=collect.id, digits=digits, reason=reason
            ),  # type: ignore[arg-type]
            advance,
        )

    @property
    def node(self) -> str:
        return self.ivr.state.node
