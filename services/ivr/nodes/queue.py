"""queue: hand the caller to routing and keep them company while they wait (music, position announcements,
the callback offer, the maximum wait). Routing keeps the place; this node keeps only the treatment."""

from __future__ import annotations

from typing import Any

from switchboard.flowdef.flow import RETURN, Prompt, QueueNode

from services.kernel.announcements import position_play
from services.kernel.events import MediaPlay, RoutingCallback, RoutingCancel, RoutingEnqueue

from ..call import Call, screen_pop
from ..conditions import render
from ..state import Finish, Phase, next_id
from .callback import CALLBACK_DONE, callback_requested

__all__ = ["digit", "enqueue_command", "music", "run", "timer"]

QUEUE_CALLBACK = "To be called back without losing your place in line, press {digit}."


def enqueue_command(call: Call, queue: str, now: float, **extra: Any) -> RoutingEnqueue:
    """Routing's enqueue carrying the caller's attributes and IVR path (the agent's screen pop)."""
    s = call.state
    return RoutingEnqueue(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        queue=queue,
        attributes={**s.attributes, **screen_pop(s), **extra.pop("attributes", {})},
        id=next_id(s),
        ts=now,
        **extra,
    )


def run(call: Call, node: QueueNode, now: float) -> None:
    s = call.state
    attrs = {k: render(v, s.attributes) for k, v in node.attributes.items()}
    s.attributes.update(attrs)
    s.attributes["queue"] = node.queue
    call.exit("queued", now)  # time in the IVR ends here; the wait is routing's to measure
    cmd = enqueue_command(call, node.queue, now, priority=node.priority, skills=dict(node.skills))
    call.emit(cmd)
    s.routing_id = cmd.id
    s.phase = Phase.queued
    s.announce_at = now + node.announce_every if node.announce_every else None
    s.offer_at = now + node.callback_after if node.callback_after is not None else None
    s.give_up_at = now + node.max_wait if node.max_wait is not None else None
    s.offered = False
    music(call, node, now)


def music(call: Call, node: QueueNode, now: float) -> None:
    s = call.state
    chosen = call.prompt(node.music)
    cmd = MediaPlay(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        tone=None if chosen else "moh",
        text=chosen.say if chosen else None,
        file=chosen.file if chosen else None,
        loop=True,
        id=next_id(s),
        ts=now,
    )
    call.emit(cmd)
    s.pending = cmd.id


def timer(call: Call, node: QueueNode, now: float) -> None:
    """The queue's own times: the maximum wait first, then the callback offer, then an announcement."""
    s = call.state
    if s.give_up_at is not None and now >= s.give_up_at:
        s.give_up_at = None
        call.emit(
            RoutingCancel(tenant_id=s.tenant_id, call_id=s.call_id, reason="max_wait", id=next_id(s), ts=now)
        )
        call.clear_queue_timers()
        call.go(node.on_timeout or RETURN, "timeout", now)
        return
    if s.offer_at is not None and now >= s.offer_at:
        s.offer_at = None
        _offer_callback(call, node, now)
    elif s.announce_at is not None and now >= s.announce_at:
        _announce(call, node, now)


def _announce(call: Call, node: QueueNode, now: float) -> None:
    s = call.state
    s.announce_at = now + node.announce_every if node.announce_every else None
    cmd = position_play(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        position=s.position,
        expected_wait_s=s.expected_wait_s,
        language=s.language,
        id=next_id(s),
        ts=now,
    )
    call.emit(cmd)
    s.pending = cmd.id  # when it finishes, the music resumes


def _offer_callback(call: Call, node: QueueNode, now: float) -> None:
    s = call.state
    s.offered = True
    prompt = call.prompt(node.callback_prompt) or Prompt(say=QUEUE_CALLBACK.format(digit=node.callback_digit))
    cmd = MediaPlay(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        text=render(prompt.say, s.attributes) if prompt.say else None,
        file=prompt.file,
        interruptible=True,
        id=next_id(s),
        ts=now,
    )
    call.emit(cmd)
    s.pending = cmd.id


def digit(call: Call, node: QueueNode, pressed: str, now: float) -> None:
    s = call.state
    call.record_digits(pressed)
    if not s.offered or pressed != node.callback_digit:
        return
    # The caller keeps their place: routing calls them back when they reach the front. The request is
    # published first: routing may find the contact due at once, and the coordinator must know why.
    caller = s.attributes.get("caller", "")
    call.emit(callback_requested(call, node.queue, caller, True, None, now))
    call.emit(
        RoutingCallback(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            queue=node.queue,
            number=caller,
            keep_place=True,
            attributes={**s.attributes, **screen_pop(s)},
            id=next_id(s),
            ts=now,
        )
    )
    s.attributes["callback"] = "requested"
    call.clear_queue_timers()
    s.phase = Phase.playing
    if node.on_callback:
        call.enter(node.on_callback, now)
    else:
        call.say(CALLBACK_DONE, Finish(outcome="callback", result="callback"), now)
