"""queue: the flow reached a queue and the IVR's step ends there. The queue and its terms (priority, skills,
the flow's attributes and screen pop, the node's music, announcements, callback offer and maximum wait) go
to the contact coordinator in `ivr.completed` (`IvrQueueWait`); the coordinator puts the caller in line and
keeps them company, and continues the flow with `ivr.run` at `on_timeout` / `on_callback`
(docs/architecture.md, "One owner for the caller")."""

from __future__ import annotations

from typing import Any

from switchboard.flowdef.flow import Prompt, QueueNode

from services.kernel.events import IvrQueueWait, MediaPlay, RoutingEnqueue

from ..call import Call, screen_pop
from ..conditions import render
from ..state import next_id

__all__ = ["QUEUE_CALLBACK", "enqueue_command", "hand_back", "run"]

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
    call.exit("queued", now)  # time in the IVR ends here; the wait is the coordinator's and routing's
    enqueue = enqueue_command(call, node.queue, now, priority=node.priority, skills=dict(node.skills))
    offer = None
    if node.callback_after is not None:
        prompt = call.prompt(node.callback_prompt) or Prompt(
            say=QUEUE_CALLBACK.format(digit=node.callback_digit)
        )
        offer = call.media_play(prompt, now, interruptible=True)
    hand_back(
        call,
        enqueue,
        now,
        music=call.prompt(node.music),
        announce_every=node.announce_every,
        callback_after=node.callback_after,
        callback_digit=node.callback_digit,
        callback_offer=offer,
        max_wait=node.max_wait,
        on_timeout=node.on_timeout or "",
        on_callback=node.on_callback or "",
    )


def hand_back(
    call: Call, enqueue: RoutingEnqueue, now: float, *, music: Prompt | None, on_fail: str = "", **terms: Any
) -> None:
    """End the IVR's step with the caller handed to the coordinator for `enqueue` (a queue node, or a
    transfer to a queue or an agent). Where the flow goes if routing refuses: `on_fail` (a transfer's),
    else the flow's fallback unless it was used already (the coordinator apologizes then)."""
    s = call.state
    flow = call.flow
    fallback = on_fail if on_fail and not s.scope else ""
    if not fallback and flow.fallback in flow.nodes and "ivr.fallback" not in s.attributes:
        fallback = flow.fallback or ""
    wait = IvrQueueWait(
        enqueue=enqueue,
        music=MediaPlay(
            tenant_id=s.tenant_id,
            call_id=s.call_id,
            tone=None if music else "moh",
            text=music.say if music else None,
            file=music.file if music else None,
            voice=music.voice if music else "en-us",
            loop=True,
            id=next_id(s),
            ts=now,
        ),
        language=s.language,
        fallback=fallback,
        scope=s.scope,
        **terms,
    )
    call.finish("transferred", "queued", now, queue=wait)
