"""The sans-IO flow interpreter: one per call. Events in (media facts, lookup results, timers, all with
`now`), commands out (services.kernel.events Media* commands, routing's callback and task, ivr.* events and
LookupRequests for the adapter to perform). No sockets, no clock: `next_timer()` says when to call
`handle_timer(now)`. Its whole state is a CallState, so `Interpreter.restore(...).resume(now)` continues a
call in another process, or sends it to the flow's safe fallback when its node cannot be resumed."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from switchboard.flowdef.flow import Flow, Lookup, QueueNode, Transfer, Voicemail

from services.kernel.events import (
    CallAnswered,
    CallCollected,
    CallEnded,
    CallPlayFinished,
    CallRecordFinished,
)

from .call import SORRY, Call, screen_pop
from .kinds import AFTER_PROMPT, ANSWERED, RUN
from .lookup import LookupResult
from .nodes import lookup, queue, voicemail
from .outputs import Output
from .state import AskAgain, CallState, Continue, Finish, GoTo, Phase, decode_state, encode_state, next_id

__all__ = ["SORRY", "CommandFailed", "Interpreter", "Output", "screen_pop"]


class CommandFailed(msgspec.Struct, kw_only=True, frozen=True):
    """The adapter could not deliver a command (no responder, error reply): the interpreter recovers."""

    command_id: uuid.UUID
    error: str = ""


class Interpreter:
    def __init__(self, flow: Flow, state: CallState, *, lookup_secret: bytes = b"") -> None:
        self.call = Call(flow, state, run=RUN, lookup_secret=lookup_secret)

    @property
    def flow(self) -> Flow:
        return self.call.flow

    @property
    def state(self) -> CallState:
        return self.call.state

    # -- construction and persistence ---------------------------------------------------------------

    @classmethod
    def new(
        cls,
        flow: Flow,
        *,
        version: int,
        tenant_id: uuid.UUID,
        call_id: uuid.UUID,
        caller: str,
        dialled: str,
        now: float,
        attributes: dict[str, str] | None = None,
        lookup_secret: bytes = b"",
        language: str = "en",
        run_id: uuid.UUID | None = None,
    ) -> Interpreter:
        state = CallState(
            run_id=run_id,
            language=language,
            tenant_id=tenant_id,
            call_id=call_id,
            flow=flow.name,
            version=version,
            started_at=now,
            attributes={**(attributes or {}), "caller": caller, "dialled": dialled},
        )
        return cls(flow, state, lookup_secret=lookup_secret)

    @classmethod
    def restore(cls, flow: Flow, data: bytes, *, lookup_secret: bytes = b"") -> Interpreter:
        return cls(flow, decode_state(data), lookup_secret=lookup_secret)

    def dump(self) -> bytes:
        return encode_state(self.state)

    @property
    def done(self) -> bool:
        return self.state.phase is Phase.done

    # -- inputs ---------------------------------------------------------------------------------------

    def start(self, now: float, *, at: str = "", scope: str = "") -> list[Output]:
        """The call is answered: enter the start node, or `at` (a node of the main flow, or of the subflow
        `scope`: a flow that continues where it handed the caller over, e.g. a queue node's on_timeout)."""
        if self.state.phase is Phase.new:
            self.state.scope = scope if at else ""
            self.call.enter(at or self.flow.start, now)
        return self.call.take()

    def handle(self, event: Any, now: float) -> list[Output]:
        call, s = self.call, self.state
        if (
            isinstance(event, CommandFailed)
            and s.outcome == "transferred"
            and event.command_id == s.routing_id
        ):
            # The hand-over to an outside number never happened: the call is ours again.
            s.phase = Phase.transferring
            s.outcome = None
            self._command_failed(event, now)
            return call.take()
        if s.phase is Phase.done:
            return []
        if isinstance(event, CallAnswered):
            return self.start(now)
        if s.phase is Phase.new:
            return []
        if isinstance(event, CallEnded):
            self._caller_left(now)
        elif isinstance(event, CallPlayFinished):
            if event.reason == "stopped":
                # Media stopped it, not the caller: the call is ending (call.ended follows) or a stop
                # command came. Moving on (or restarting the music) would only send commands to a call that
                # is gone; the prompt's deadline still moves a call that goes on.
                pass
            elif event.play_id == s.pending and s.phase is Phase.playing:
                self._play_done(now)
        elif isinstance(event, CallCollected):
            # "stopped": media ended the collection itself, almost always because the caller hung up (its
            # call.ended follows); that is not a caller who said nothing, so no retry prompt. Should the call
            # go on, the collect's deadline still moves it along.
            if event.collect_id == s.pending and s.phase is Phase.collecting and event.reason != "stopped":
                self._answered(event.digits, now)
        elif isinstance(event, LookupResult):
            if event.id == s.pending and s.phase is Phase.lookup:
                lookup.done(call, self._node(Lookup), event, now)
        elif isinstance(event, CallRecordFinished):
            if s.phase is Phase.recording and event.record_id == s.pending:
                voicemail.recorded(call, self._node(Voicemail), event, now)
        elif isinstance(event, CommandFailed):
            self._command_failed(event, now)
        return call.take()

    def next_timer(self) -> float | None:
        s = self.state
        if s.phase is Phase.done:
            return None
        return s.deadline

    def handle_timer(self, now: float) -> list[Output]:
        call, s = self.call, self.state
        if s.phase is Phase.done:
            return []
        if s.deadline is not None and now >= s.deadline:
            # Never leave a caller in silence: a step whose answer did not come moves on as if it had failed.
            s.deadline = None
            if s.phase is Phase.playing:
                self._play_done(now)
            elif s.phase is Phase.collecting:
                self._answered("", now)
            elif s.phase is Phase.lookup:
                result = LookupResult(id=s.pending or next_id(s), error="timeout")
                lookup.done(call, self._node(Lookup), result, now)
            elif s.phase is Phase.recording:
                voicemail.recorded(call, self._node(Voicemail), None, now)
        return call.take()

    def resume(self, now: float) -> list[Output]:
        """Continue after a restart from a saved state: replay the current node's prompt, or if the node
        cannot be resumed (a recording in progress, a node the flow no longer has), go to the fallback."""
        call, s = self.call, self.state
        s.resumed += 1
        if s.phase is Phase.done:
            return []
        if s.phase is Phase.new:
            return self.start(now)
        nodes = call.nodes(s.scope)
        if s.node not in nodes or s.phase is Phase.recording:
            call.fallback("cannot resume", now)
        elif s.phase is Phase.queued:
            # Saved by an IVR that kept queued callers company itself: the caller is handed back now (the
            # coordinator, which has them in line already, keeps the wait's terms).
            queue.run(call, self._node(QueueNode), now)
        elif s.phase is Phase.transferring:
            pass
        elif isinstance(s.after, Finish):
            call.hangup(s.after.outcome, s.after.result, now)  # only the goodbye was left
        else:
            s.pending = None
            s.deadline = None
            call.run(nodes[s.node], now)
        return call.take()

    # -- steps --------------------------------------------------------------------------------------

    def _node(self, kind: type[Any]) -> Any:
        """The current node, which the phase says is of this kind."""
        node = self.call.node()
        assert isinstance(node, kind), (type(node).__name__, kind.__name__)
        return node

    def _play_done(self, now: float) -> None:
        call, s = self.call, self.state
        s.hops = 0  # the caller heard something: not a silent loop
        s.pending = None
        s.deadline = None
        after, s.after = s.after, None
        node = call.node()
        if isinstance(after, GoTo):
            call.go(after.node, "played", now)
        elif isinstance(after, AskAgain):
            call.run(node, now)
        elif isinstance(after, Continue):
            AFTER_PROMPT[type(node)](call, node, now)
        elif isinstance(after, Finish):
            call.hangup(after.outcome, after.result, now)

    def _answered(self, digits: str, now: float) -> None:
        call, s = self.call, self.state
        s.pending = None
        s.deadline = None
        call.record_digits(digits)
        node = call.node()
        answered = ANSWERED.get(type(node))
        if answered is not None:
            answered(call, node, digits, now)

    # -- endings and recovery -------------------------------------------------------------------------

    def _caller_left(self, now: float) -> None:
        call, s = self.call, self.state
        if s.phase is Phase.transferring:
            s.phase = Phase.done  # routing owns the contact now; its own events say what happened
            return
        if s.attributes.get("callback") == "requested":
            # A caller who hangs up once the call back is agreed has not abandoned: the wait goes on without them.
            call.finish("callback", "hangup", now)
            return
        call.finish("abandoned", "hangup", now)

    def _command_failed(self, event: CommandFailed, now: float) -> None:
        call, s = self.call, self.state
        if event.command_id not in (s.pending, s.routing_id):
            return
        node = call.node()
        if isinstance(node, Transfer) and node.on_fail and s.phase is Phase.transferring:
            s.phase = Phase.playing
            call.enter(node.on_fail, now)
            return
        call.fallback(f"command failed: {event.error}", now)
