"""The shared steps of the interpreter: leaving and entering nodes, prompts, digit collection, endings. The
node kinds build on these (handoffs.py, interpreter.py); nothing here does I/O."""

from __future__ import annotations

from typing import Any

import msgspec
from switchboard.flowdef.flow import (
    Callback,
    Collect,
    DynamicMenu,
    Flow,
    Menu,
    Node,
    Prompt,
)
from switchboard.flowdef.validate import prompt_seconds

from services.kernel.events import (
    IvrCompleted,
    IvrNodeExited,
    MediaCollect,
    MediaHangup,
    MediaPlay,
)

from .conditions import render
from .state import CallState, Phase, next_id

__all__ = [
    "CALLBACK_DONE",
    "INVALID",
    "MAX_SILENT_HOPS",
    "NO_INPUT",
    "PLAY_SLACK_S",
    "QUEUE_CALLBACK",
    "SORRY",
    "VOICEMAIL_DONE",
    "Steps",
    "screen_pop",
]

# Extra time beyond a prompt's expected length before we assume media lost it and move on.
PLAY_SLACK_S = 15.0
MAX_SILENT_HOPS = 50
SORRY = "Sorry, we cannot take your call right now. Please call again later."
INVALID = "Sorry, that is not a valid choice."
NO_INPUT = "Sorry, I did not hear a choice."
QUEUE_CALLBACK = "To be called back without losing your place in line, press {digit}."
CALLBACK_DONE = "Thank you. We will call you back. Goodbye."
VOICEMAIL_DONE = "Thank you for your message. Goodbye."


def screen_pop(state: CallState) -> dict[str, str]:
    """What the caller did, as contact attributes for the agent's screen pop."""
    steps = [{"node": s.node, "seconds": round(s.seconds or 0.0, 3), "digits": s.digits} for s in state.path]
    return {
        "ivr.flow": f"{state.flow}@{state.version}",
        "ivr.path": ">".join(s.node for s in state.path),
        "ivr.digits": state.digits,
        "ivr.steps": msgspec.json.encode(steps).decode(),
    }


class Steps:
    def __init__(self, flow: Flow, state: CallState, *, lookup_secret: bytes = b"") -> None:
        self.flow = flow
        self.state = state
        self.lookup_secret = lookup_secret

    def _enter(self, target: str, now: float, out: list[Any]) -> None:
        raise NotImplementedError

    def _fallback(self, reason: str, now: float, out: list[Any]) -> None:
        raise NotImplementedError

    def _nodes(self, scope: str) -> dict[str, Node]:
        return self.flow.subflows[scope].nodes if scope else self.flow.nodes

    def _node(self) -> Node:
        return self._nodes(self.state.scope)[self.state.node]

    def _exit(self, result: str, now: float, out: list[Any]) -> None:
        s = self.state
        if not s.path or s.path[-1].seconds is not None:
            return
        step = s.path[-1]
        step.seconds = max(0.0, now - step.entered)
        step.result = result
        out.append(
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

    def _go(self, target: str, result: str, now: float, out: list[Any]) -> None:
        self._exit(result, now, out)
        self._enter(target, now, out)

    def _prompt(self, ref: Prompt | str | None) -> Prompt | None:
        if ref is None:
            return None
        if isinstance(ref, str):
            return self.flow.prompts.get(ref)
        return ref

    def _play(
        self,
        ref: Prompt | str | None,
        after: str,
        now: float,
        out: list[Any],
        *,
        interruptible: bool,
        loop: bool = False,
    ) -> None:
        s = self.state
        prompt = self._prompt(ref)
        if prompt is None:
            prompt = Prompt(say=" ")
        cmd = MediaPlay(
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
        out.append(cmd)
        s.phase = Phase.playing
        s.pending = cmd.id
        s.after = after
        s.deadline = now + prompt_seconds(prompt) + PLAY_SLACK_S

    def _say(self, text: str, after: str, now: float, out: list[Any]) -> None:
        self._play(Prompt(say=text), after, now, out, interruptible=False)

    def _collect(
        self,
        ref: Prompt | str | None,
        now: float,
        out: list[Any],
        *,
        min_digits: int = 1,
        max_digits: int = 1,
        terminator: str | None = None,
        first: float = 5.0,
        inter: float = 3.0,
    ) -> None:
        s = self.state
        prompt = self._prompt(ref)
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
        out.append(cmd)
        s.phase = Phase.collecting
        s.pending = cmd.id
        length = prompt_seconds(prompt) if prompt else 0.0
        s.deadline = now + length + first + inter * max_digits + PLAY_SLACK_S

    def _record_digits(self, digits: str) -> None:
        s = self.state
        s.hops = 0
        if digits:
            s.digits += digits
            if s.path:
                s.path[-1].digits += digits

    def _retry(
        self,
        node: Menu | DynamicMenu | Collect | Callback,
        ref: Prompt | str | None,
        invalid: bool,
        now: float,
        out: list[Any],
    ) -> None:
        s = self.state
        s.tries += 1
        retries = node.retries if not isinstance(node, Callback) else 2
        if s.tries > retries:
            target = node.on_fail if not isinstance(node, Callback) else node.next
            self._go(target, "invalid" if invalid else "timeout", now, out)
            return
        fallback_text = INVALID if invalid else NO_INPUT
        self._play(
            ref if ref is not None else Prompt(say=fallback_text), "collect", now, out, interruptible=True
        )

    def _clear_queue_timers(self) -> None:
        s = self.state
        s.announce_at = s.offer_at = s.give_up_at = None

    def _hangup(self, outcome: str, result: str, now: float, out: list[Any]) -> None:
        s = self.state
        # The outcome first: published before media ends the call, so the coordinator learns how the
        # caller left the IVR before call.ended (else a self-served caller is recorded as abandoned).
        self._finish(outcome, result, now, out)
        out.append(MediaHangup(tenant_id=s.tenant_id, call_id=s.call_id, id=next_id(s), ts=now))

    def _finish(self, outcome: str, result: str, now: float, out: list[Any]) -> None:
        s = self.state
        self._exit(result, now, out)
        s.phase = Phase.done
        s.outcome = outcome
        s.pending = None
        s.deadline = None
        self._clear_queue_timers()
        out.append(
            IvrCompleted(
                tenant_id=s.tenant_id,
                call_id=s.call_id,
                flow=s.flow,
                version=s.version,
                outcome=outcome,  # type: ignore[arg-type]
                seconds=max(0.0, now - s.started_at),
                path=[step.node for step in s.path],
                attributes={**s.attributes, **screen_pop(s)},
                id=next_id(s),
                ts=now,
            )
        )
