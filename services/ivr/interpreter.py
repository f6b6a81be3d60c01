"""The sans-IO flow interpreter: one per call. Events in (media and routing facts, lookup results, timers, all
with `now`), commands out (services.kernel.events Media*/Routing* commands, ivr.* analytics events and
LookupRequests for the adapter to perform). No sockets, no clock: `next_timer()` says when to call
`handle_timer(now)`. Its whole state is a CallState, so `Interpreter.restore(...).resume(now)` continues a
call in another process, or sends it to the flow's safe fallback when its node cannot be resumed."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from switchboard.flowdef.flow import (
    RETURN,
    Branch,
    Callback,
    Collect,
    DynamicMenu,
    Flow,
    Hangup,
    Lookup,
    Menu,
    Node,
    Play,
    Prompt,
    QueueNode,
    SetNode,
    Subflow,
    Survey,
    Transfer,
    Voicemail,
)

from services.kernel.events import (
    CallAnswered,
    CallCollected,
    CallDtmf,
    CallEnded,
    CallPlayFinished,
    CallRecordFinished,
    ContactAccepted,
    ContactPositionChanged,
    ContactQueued,
    IvrNodeEntered,
    IvrSurveyAnswered,
    MediaRecord,
    MediaStop,
    RoutingCancel,
)

from .conditions import evaluate, render
from .handoffs import Handoffs
from .lookup import LookupResult
from .state import CallState, Frame, Phase, Step, decode_state, encode_state, next_id
from .steps import MAX_SILENT_HOPS, PLAY_SLACK_S, SORRY, screen_pop

__all__ = ["SORRY", "CommandFailed", "Interpreter", "screen_pop"]


class CommandFailed(msgspec.Struct, kw_only=True, frozen=True):
    """The adapter could not deliver a command (no responder, error reply): the interpreter recovers."""

    command_id: uuid.UUID
    error: str = ""


class Interpreter(Handoffs):
    def __init__(self, flow: Flow, state: CallState, *, lookup_secret: bytes = b"") -> None:
        self.flow = flow
        self.state = state
        self.lookup_secret = lookup_secret

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
    ) -> Interpreter:
        state = CallState(
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

    def start(self, now: float) -> list[Any]:
        """The call is answered: enter the start node."""
        out: list[Any] = []
        if self.state.phase is Phase.new:
            self._enter(self.flow.start, now, out)
        return out

    def handle(self, event: Any, now: float) -> list[Any]:
        out: list[Any] = []
        s = self.state
        if (
            isinstance(event, CommandFailed)
            and s.outcome == "transferred"
            and event.command_id == s.routing_id
        ):
            # The hand-over to an outside number never happened: the call is ours again.
            s.phase = Phase.transferring
            s.outcome = None
            self._command_failed(event, now, out)
            return out
        if s.phase is Phase.done:
            return out
        if isinstance(event, CallAnswered):
            return self.start(now)
        if s.phase is Phase.new:
            return out
        if isinstance(event, CallEnded):
            self._caller_left(now, out)
        elif isinstance(event, CallPlayFinished):
            if event.reason == "stopped":
                # Media stopped it, not the caller: the call is ending (call.ended follows) or a stop
                # command came. Moving on (or restarting the music) would only send commands to a call that
                # is gone; the prompt's deadline still moves a call that goes on.
                pass
            elif event.play_id == s.pending and s.phase is Phase.playing:
                self._play_done(now, out)
            elif s.phase is Phase.queued and event.play_id == s.pending:
                # An announcement or the callback offer ended (digits arrive as call.dtmf): music again.
                self._music(now, out)
        elif isinstance(event, CallCollected):
            # "stopped": media ended the collection itself, almost always because the caller hung up (its
            # call.ended follows); that is not a caller who said nothing, so no retry prompt. Should the call
            # go on, the collect's deadline still moves it along.
            if event.collect_id == s.pending and s.phase is Phase.collecting and event.reason != "stopped":
                self._collected(event.digits, event.reason, now, out)
        elif isinstance(event, CallDtmf):
            if s.phase is Phase.queued:
                self._queue_digit(event.digit, now, out)
        elif isinstance(event, LookupResult):
            if event.id == s.pending and s.phase is Phase.lookup:
                self._lookup_done(event, now, out)
        elif isinstance(event, CallRecordFinished):
            if s.phase is Phase.recording and event.record_id == s.pending:
                self._recorded(event, now, out)
        elif isinstance(event, (ContactQueued, ContactPositionChanged)):
            if s.phase is Phase.queued:
                s.position = event.position
                s.expected_wait_s = event.expected_wait_s
        elif isinstance(event, ContactAccepted):
            if s.phase in (Phase.queued, Phase.transferring):
                s.attributes["agent_id"] = event.agent_id
                out.append(MediaStop(tenant_id=s.tenant_id, call_id=s.call_id, id=next_id(s), ts=now))
                self._finish("transferred", "agent", now, out)
        elif isinstance(event, CommandFailed):
            self._command_failed(event, now, out)
        return out

    def next_timer(self) -> float | None:
        s = self.state
        if s.phase is Phase.done:
            return None
        times = [t for t in (s.deadline, s.announce_at, s.offer_at, s.give_up_at) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Any]:
        out: list[Any] = []
        s = self.state
        if s.phase is Phase.done:
            return out
        if s.deadline is not None and now >= s.deadline:
            s.deadline = None
            if s.phase is Phase.playing:
                self._play_done(now, out)
            elif s.phase is Phase.collecting:
                self._collected("", "first_digit_timeout", now, out)
            elif s.phase is Phase.lookup:
                self._lookup_done(LookupResult(id=s.pending or next_id(s), error="timeout"), now, out)
            elif s.phase is Phase.recording:
                self._recorded(None, now, out)
        if s.phase is Phase.queued:
            if s.give_up_at is not None and now >= s.give_up_at:
                s.give_up_at = None
                node = self._node()
                assert isinstance(node, QueueNode)
                out.append(
                    RoutingCancel(
                        tenant_id=s.tenant_id, call_id=s.call_id, reason="max_wait", id=next_id(s), ts=now
                    )
                )
                self._clear_queue_timers()
                self._go(node.on_timeout or RETURN, "timeout", now, out)
                return out
            if s.offer_at is not None and now >= s.offer_at:
                s.offer_at = None
                self._offer_callback(now, out)
            elif s.announce_at is not None and now >= s.announce_at:
                self._announce(now, out)
        return out

    def resume(self, now: float) -> list[Any]:
        """Continue after a restart from a saved state: replay the current node's prompt, or if the node
        cannot be resumed (a recording in progress, a node the flow no longer has), go to the fallback."""
        out: list[Any] = []
        s = self.state
        s.resumed += 1
        if s.phase is Phase.done:
            return out
        if s.phase is Phase.new:
            return self.start(now)
        nodes = self._nodes(s.scope)
        if s.node not in nodes or s.phase is Phase.recording:
            self._fallback("cannot resume", now, out)
            return out
        if s.phase is Phase.queued:
            node = self._node()
            assert isinstance(node, QueueNode)
            self._music(now, out)  # routing kept the caller's place; only the treatment restarts
            return out
        if s.phase is Phase.transferring:
            return out
        if s.after.startswith("finish:"):
            self._hangup(s.after[7:], s.after[7:], now, out)  # only the goodbye was left
            return out
        s.pending = None
        s.deadline = None
        self._run(nodes[s.node], now, out)
        return out

    # -- entering and leaving nodes -------------------------------------------------------------------

    def _enter(self, target: str, now: float, out: list[Any]) -> None:
        s = self.state
        s.hops += 1
        if s.hops > MAX_SILENT_HOPS:
            self._fallback("loop without input", now, out)
            return
        while target == RETURN:
            if not s.stack:
                # Leaving the main flow with nowhere to go (e.g. a queue timeout without on_timeout).
                self._fallback("end of flow", now, out)
                return
            frame = s.stack.pop()
            s.scope, target = frame.scope, frame.next
        nodes = self._nodes(s.scope)
        if target not in nodes:
            self._fallback(f"no node {target!r}", now, out)
            return
        s.node = target
        s.tries = 0
        s.sub = 0
        s.pending = None
        s.deadline = None
        s.after = ""
        s.path.append(Step(node=target, scope=s.scope, entered=now))
        out.append(
            IvrNodeEntered(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                flow=s.flow,
                version=s.version,
                node=target,
                id=next_id(s),
                ts=now,
            )
        )
        self._run(nodes[target], now, out)

    def _run(self, node: Node, now: float, out: list[Any]) -> None:
        s = self.state
        if isinstance(node, Play):
            self._play(node.prompt, f"next:{node.next}", now, out, interruptible=node.interruptible)
        elif isinstance(node, (Menu, DynamicMenu)):
            self._menu_collect(node, now, out)
        elif isinstance(node, Collect):
            self._collect(
                node.prompt,
                now,
                out,
                min_digits=node.min_digits,
                max_digits=node.max_digits,
                terminator=node.terminator,
                first=node.first_digit_timeout,
                inter=node.inter_digit_timeout,
            )
        elif isinstance(node, SetNode):
            for name, value in node.attributes.items():
                s.attributes[name] = render(value, s.attributes)
            self._go(node.next, "set", now, out)
        elif isinstance(node, Branch):
            for i, rule in enumerate(node.rules):
                if evaluate(self.flow, rule.when, s.attributes, now):
                    self._go(rule.next, f"rule {i}", now, out)
                    return
            self._go(node.default, "default", now, out)
        elif isinstance(node, Lookup):
            self._lookup(node, now, out)
        elif isinstance(node, QueueNode):
            self._enqueue(node, now, out)
        elif isinstance(node, Callback):
            self._callback_step(node, now, out)
        elif isinstance(node, Voicemail):
            self._play(node.prompt, "record", now, out, interruptible=False)
        elif isinstance(node, Transfer):
            self._transfer(node, now, out)
        elif isinstance(node, Survey):
            self._survey_ask(node, now, out)
        elif isinstance(node, Subflow):
            s.stack.append(Frame(scope=s.scope, next=node.next))
            s.scope = node.flow
            self._exit("enter", now, out)
            self._enter(self.flow.subflows[node.flow].start, now, out)
        elif isinstance(node, Hangup):
            if node.prompt is not None:
                self._play(node.prompt, "hangup", now, out, interruptible=False)
            else:
                self._hangup("self_served", "hangup", now, out)

    # -- prompts and digits ---------------------------------------------------------------------------

    def _menu_options(self, node: Menu | DynamicMenu) -> tuple[Prompt | str, dict[str, str]]:
        if isinstance(node, DynamicMenu) and self.state.sub > 0:
            variant = node.variants[self.state.sub - 1]
            return variant.prompt, variant.options
        return node.prompt, node.options

    def _menu_collect(self, node: Menu | DynamicMenu, now: float, out: list[Any]) -> None:
        s = self.state
        if isinstance(node, DynamicMenu) and s.tries == 0 and s.sub == 0:
            for i, variant in enumerate(node.variants):
                if evaluate(self.flow, variant.when, s.attributes, now):
                    s.sub = i + 1
                    break
        prompt, _ = self._menu_options(node)
        self._collect(prompt, now, out, first=node.timeout)

    def _collected(self, digits: str, reason: str, now: float, out: list[Any]) -> None:
        s = self.state
        s.pending = None
        s.deadline = None
        self._record_digits(digits)
        node = self._node()
        if isinstance(node, (Menu, DynamicMenu)):
            _, options = self._menu_options(node)
            if digits and digits[0] in options:
                self._go(options[digits[0]], digits[0], now, out)
                return
            self._retry(node, node.invalid_prompt if digits else node.timeout_prompt, bool(digits), now, out)
        elif isinstance(node, Collect):
            ok = len(digits) >= node.min_digits and (
                node.pattern is None or re.fullmatch(node.pattern, digits) is not None
            )
            if ok:
                s.attributes[node.into] = digits
                self._go(node.next, "collected", now, out)
                return
            self._retry(node, node.invalid_prompt, bool(digits), now, out)
        elif isinstance(node, Survey):
            question = node.questions[s.sub]
            if len(digits) == 1 and digits.isdigit() and question.min <= int(digits) <= question.max:
                s.attributes[question.into] = digits
                out.append(
                    IvrSurveyAnswered(
                        tenant_id=s.tenant_id,
                        call_id=s.call_id,
                        flow=s.flow,
                        version=s.version,
                        node=s.node,
                        question=question.into,
                        score=int(digits),
                        min=question.min,
                        max=question.max,
                        id=next_id(s),
                        ts=now,
                    )
                )
            s.sub += 1
            if s.sub >= len(node.questions):
                self._go(node.next, "answered", now, out)
            else:
                self._survey_ask(node, now, out)
        elif isinstance(node, Callback):
            self._callback_input(node, digits, now, out)

    def _play_done(self, now: float, out: list[Any]) -> None:
        s = self.state
        s.hops = 0  # the caller heard something: not a silent loop
        s.pending = None
        s.deadline = None
        after, s.after = s.after, ""
        node = self._node()
        if after.startswith("next:"):
            self._go(after[5:], "played", now, out)
        elif after == "collect":
            # Ask again after an error prompt.
            if isinstance(node, (Menu, DynamicMenu)):
                self._menu_collect(node, now, out)
            elif isinstance(node, Callback):
                self._callback_step(node, now, out)
            else:
                self._run(node, now, out)
        elif after == "record":
            assert isinstance(node, Voicemail)
            cmd = MediaRecord(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                file=f"voicemail/{s.call_id}.wav",
                max_seconds=node.max_seconds,
                id=next_id(s),
                ts=now,
            )
            out.append(cmd)
            s.phase = Phase.recording
            s.pending = cmd.id
            s.deadline = now + node.max_seconds + PLAY_SLACK_S
        elif after == "transfer":
            assert isinstance(node, Transfer)
            self._do_transfer(node, now, out)
        elif after == "hangup":
            self._hangup("self_served", "hangup", now, out)
        elif after.startswith("finish:"):
            self._hangup(after[7:], after[7:], now, out)

    # -- node kinds -----------------------------------------------------------------------------------

    # -- endings and recovery -------------------------------------------------------------------------

    def _caller_left(self, now: float, out: list[Any]) -> None:
        s = self.state
        if s.phase is Phase.queued:
            out.append(
                RoutingCancel(
                    tenant_id=s.tenant_id, call_id=s.call_id, reason="abandoned", id=next_id(s), ts=now
                )
            )
        if s.phase is Phase.transferring:
            s.phase = Phase.done  # routing owns the contact now; its own events say what happened
            return
        if s.attributes.get("callback") == "requested":
            # A caller who hangs up once the call back is agreed has not abandoned: the wait goes on without them.
            self._finish("callback", "hangup", now, out)
            return
        self._finish("abandoned", "hangup", now, out)

    def _command_failed(self, event: CommandFailed, now: float, out: list[Any]) -> None:
        s = self.state
        if event.command_id not in (s.pending, s.routing_id):
            return
        if s.phase is Phase.queued and event.command_id == s.pending:
            return  # music or an announcement failed: the caller is still in line, keep waiting
        node = self._node()
        if isinstance(node, Transfer) and node.on_fail and s.phase is Phase.transferring:
            s.phase = Phase.playing
            self._enter(node.on_fail, now, out)
            return
        self._fallback(f"command failed: {event.error}", now, out)

    def _fallback(self, reason: str, now: float, out: list[Any]) -> None:
        """Somewhere safe rather than silence: the flow's fallback node, or an apology and a hang-up."""
        s = self.state
        used = "ivr.fallback" in s.attributes
        s.attributes["ivr.fallback"] = reason
        self._exit("fallback", now, out)
        self._clear_queue_timers()
        s.routing_id = None
        fallback = self.flow.fallback
        if fallback and fallback in self.flow.nodes and not used:
            s.scope = ""
            s.stack.clear()
            s.hops = 0
            self._enter(fallback, now, out)
            return
        s.phase = Phase.playing
        self._say(SORRY, "finish:failed", now, out)
