"""One call's step in progress: the flow, its saved state, and the outputs the step makes. The steps every
node kind shares live here (prompts, digit collection, entering and leaving nodes, endings and the safe
fallback); what each kind does is in services/ivr/nodes/, reached through its dispatch tables. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from switchboard.flowdef.flow import RETURN, Callback, Collect, DynamicMenu, Flow, Menu, Node, Prompt
from switchboard.flowdef.validate import prompt_seconds

from services.kernel.events import (
    IvrCompleted,
    IvrNodeEntered,
    IvrNodeExited,
    IvrOutcome,
    IvrQueueWait,
    MediaCollect,
    MediaHangup,
    MediaPlay,
)

from .conditions import render
from .state import After, AskAgain, CallState, Continue, Finish, Phase, Step, next_id

if TYPE_CHECKING:
    from .outputs import Output

__all__ = ["INVALID", "MAX_SILENT_HOPS", "NO_INPUT", "PLAY_SLACK_S", "SORRY", "Call", "Run", "screen_pop"]

# Extra time beyond a prompt's expected length before we assume media lost it and move on.
PLAY_SLACK_S = 15.0
MAX_SILENT_HOPS = 50
SORRY = "Sorry, we cannot take your call right now. Please call again later."
INVALID = "Sorry, that is not a valid choice."
NO_INPUT = "Sorry, I did not hear a choice."


# How a node kind starts (services/ivr/nodes/): given to Call by the interpreter, so this module, which the
# kinds build on, does not import them.
Run = Callable[["Call", Any, float], None]


def screen_pop(state: CallState) -> dict[str, str]:
    """What the caller did, as contact attributes for the agent's screen pop."""
    steps = [{"node": s.node, "seconds": round(s.seconds or 0.0, 3), "digits": s.digits} for s in state.path]
    return {
        "ivr.flow": f"{state.flow}@{state.version}",
        "ivr.path": ">".join(s.node for s in state.path),
        "ivr.digits": state.digits,
        "ivr.steps": msgspec.json.encode(steps).decode(),
    }


class Call:
    def __init__(
        self, flow: Flow, state: CallState, *, run: Mapping[type[Node], Run], lookup_secret: bytes = b""
    ) -> None:
        self.flow = flow
        self.state = state
        self.lookup_secret = lookup_secret
        self.out: list[Output] = []
        self._run = run

    def take(self) -> list[Output]:
        """The outputs made since the last take, in order."""
        out, self.out = self.out, []
        return out

    def emit(self, output: Output) -> None:
        self.out.append(output)

    # -- where the call is --------------------------------------------------------------------------

    def nodes(self, scope: str) -> dict[str, Node]:
        nodes: dict[str, Node] = self.flow.subflows[scope].nodes if scope else self.flow.nodes
        return nodes

    def node(self) -> Node:
        return self.nodes(self.state.scope)[self.state.node]

    def run(self, node: Node, now: float) -> None:
        self._run[type(node)](self, node, now)

    # -- entering and leaving nodes -----------------------------------------------------------------

    def enter(self, target: str, now: float) -> None:
        s = self.state
        s.hops += 1
        if s.hops > MAX_SILENT_HOPS:
            self.fallback("loop without input", now)
            return
        while target == RETURN:
            if not s.stack:
                # Leaving the main flow with nowhere to go (e.g. a queue timeout without on_timeout).
                self.fallback("end of flow", now)
                return
            frame = s.stack.pop()
            s.scope, target = frame.scope, frame.next
        nodes = self.nodes(s.scope)
        if target not in nodes:
            self.fallback(f"no node {target!r}", now)
            return
        s.node = target
        s.tries = 0
        s.sub = 0
        s.pending = None
        s.deadline = None
        s.after = None
        s.path.append(Step(node=target, scope=s.scope, entered=now))
        self.emit(
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
        self.run(nodes[target], now)

    def exit(self, result: str, now: float) -> None:
        s = self.state
        if not s.path or s.path[-1].seconds is not None:
            return
        step = s.path[-1]
        step.seconds = max(0.0, now - step.entered)
        step.result = result
        self.emit(
            IvrNodeExited(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                flow=s.flow,
                version=s.version,
                node=step.node,
                digits=step.digits,
                seconds=step.seconds,
                result=result,
                id=next_id(s),
                ts=now,
            )
        )

    def go(self, target: str, result: str, now: float) -> None:
        self.exit(result, now)
        self.enter(target, now)

    # -- prompts and digits -------------------------------------------------------------------------

    def prompt(self, ref: Prompt | str | None) -> Prompt | None:
        if ref is None:
            return None
        if isinstance(ref, str):
            return self.flow.prompts.get(ref)
        return ref

    def play(
        self, ref: Prompt | str | None, after: After, now: float, *, interruptible: bool, loop: bool = False
    ) -> None:
        s = self.state
        prompt = self.prompt(ref)
        if prompt is None:
            prompt = Prompt(say=" ")
        cmd = self.media_play(prompt, now, interruptible=interruptible, loop=loop)
        self.emit(cmd)
        s.phase = Phase.playing
        s.pending = cmd.id
        s.after = after
        s.deadline = now + prompt_seconds(prompt) + PLAY_SLACK_S

    def media_play(self, prompt: Prompt, now: float, *, interruptible: bool, loop: bool = False) -> MediaPlay:
        """The command that plays `prompt` to the caller, its text rendered with the flow's attributes."""
        s = self.state
        return MediaPlay(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            text=render(prompt.say, s.attributes) if prompt.say else None,
            file=prompt.file,
            voice=prompt.voice,
            interruptible=interruptible,
            loop=loop,
            id=next_id(s),
            ts=now,
        )

    def prompt_first(self, node: Any, now: float, then: Run) -> None:
        """A node's optional prompt (`node.prompt`) before its own next step: `then` runs now when the node
        has none, else after the prompt ends (the `Continue` continuation, kinds.AFTER_PROMPT)."""
        if node.prompt is None:
            then(self, node, now)
        else:
            self.play(node.prompt, Continue(), now, interruptible=False)

    def say(self, text: str, after: After, now: float) -> None:
        self.play(Prompt(say=text), after, now, interruptible=False)

    def collect(
        self,
        ref: Prompt | str | None,
        now: float,
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = None,
        first: float = 5.0,
        inter: float = 3.0,
    ) -> None:
        s = self.state
        prompt = self.prompt(ref)
        cmd = MediaCollect(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            min_digits=min_digits,
            max_digits=max_digits,
            terminator=terminator,
            first_digit_timeout=first,
            inter_digit_timeout=inter,
            text=render(prompt.say, s.attributes) if prompt and prompt.say else None,
            file=prompt.file if prompt else None,
            voice=prompt.voice if prompt else "en-us",
            id=next_id(s),
            ts=now,
        )
        self.emit(cmd)
        s.phase = Phase.collecting
        s.pending = cmd.id
        length = prompt_seconds(prompt) if prompt else 0.0
        s.deadline = now + length + first + inter * max_digits + PLAY_SLACK_S

    def record_digits(self, digits: str) -> None:
        s = self.state
        s.hops = 0
        if digits:
            s.digits += digits
            if s.path:
                s.path[-1].digits += digits

    def retry(
        self,
        node: Menu | DynamicMenu | Collect | Callback,
        ref: Prompt | str | None,
        invalid: bool,
        now: float,
    ) -> None:
        """A wrong or missing answer: an error prompt then the question again, or the node's way out."""
        s = self.state
        s.tries += 1
        retries = node.retries if not isinstance(node, Callback) else 2
        if s.tries > retries:
            target = node.on_fail if not isinstance(node, Callback) else node.next
            self.go(target, "invalid" if invalid else "timeout", now)
            return
        fallback_text = INVALID if invalid else NO_INPUT
        self.play(ref if ref is not None else Prompt(say=fallback_text), AskAgain(), now, interruptible=True)

    # -- endings and recovery -----------------------------------------------------------------------

    def hangup(self, outcome: IvrOutcome, result: str, now: float) -> None:
        s = self.state
        # The outcome first: published before media ends the call, so the coordinator learns how the
        # caller left the IVR before call.ended (else a self-served caller is recorded as abandoned).
        self.finish(outcome, result, now)
        self.emit(MediaHangup(tenant_id=s.tenant_id, call_id=s.call_id, id=next_id(s), ts=now))

    def finish(
        self, outcome: IvrOutcome, result: str, now: float, *, queue: IvrQueueWait | None = None
    ) -> None:
        """The IVR's step ends (`queue`: the caller is handed to the coordinator for that queue)."""
        s = self.state
        self.exit(result, now)
        s.phase = Phase.done
        s.outcome = outcome
        s.pending = None
        s.deadline = None
        self.emit(
            IvrCompleted(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                flow=s.flow,
                version=s.version,
                outcome=outcome,
                seconds=max(0.0, now - s.started_at),
                path=[step.node for step in s.path],
                attributes={**s.attributes, **screen_pop(s)},
                queue=queue,
                id=next_id(s),
                ts=now,
            )
        )

    def fallback(self, reason: str, now: float) -> None:
        """Somewhere safe rather than silence: the flow's fallback node, or an apology and a hang-up."""
        s = self.state
        used = "ivr.fallback" in s.attributes
        s.attributes["ivr.fallback"] = reason
        self.exit("fallback", now)
        s.routing_id = None
        fallback = self.flow.fallback
        if fallback and fallback in self.flow.nodes and not used:
            s.scope = ""
            s.stack.clear()
            s.hops = 0
            self.enter(fallback, now)
            return
        s.phase = Phase.playing
        self.say(SORRY, Finish(outcome="failed", result="failed"), now)
