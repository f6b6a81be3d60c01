"""voicemail: a prompt, a recording, and the recording offered to an agent as a task of its own."""

from __future__ import annotations

from switchboard.flowdef.flow import Voicemail

from services.kernel.events import CallRecordFinished, MediaRecord, RoutingTask
from services.kernel.ids import voicemail_id

from ..call import PLAY_SLACK_S, Call, screen_pop
from ..state import Continue, Finish, Phase, next_id

__all__ = ["after_prompt", "recorded", "run"]

VOICEMAIL_DONE = "Thank you for your message. Goodbye."


def run(call: Call, node: Voicemail, now: float) -> None:
    call.play(node.prompt, Continue(), now, interruptible=False)


def after_prompt(call: Call, node: Voicemail, now: float) -> None:
    """The prompt ended: record."""
    s = call.state
    cmd = MediaRecord(
        tenant_id=s.tenant_id,
        call_id=s.call_id,
        file=f"voicemail/{s.call_id}.wav",
        max_seconds=node.max_seconds,
        id=next_id(s),
        ts=now,
    )
    call.emit(cmd)
    s.phase = Phase.recording
    s.pending = cmd.id
    s.deadline = now + node.max_seconds + PLAY_SLACK_S


def recorded(call: Call, node: Voicemail, event: CallRecordFinished | None, now: float) -> None:
    """The recording ended (None: media never said so before the deadline)."""
    s = call.state
    s.pending = None
    s.deadline = None
    if event is not None and event.error is None and event.file:
        call.emit(
            RoutingTask(
                tenant_id=s.tenant_id,
                # A task of its own (the caller's call ends soon): offered to an agent through the desk.
                call_id=voicemail_id(s.call_id),
                queue=node.queue,
                file=event.file,
                seconds=event.seconds,
                attributes={**s.attributes, **screen_pop(s), "voicemail_of": str(s.call_id)},
                id=next_id(s),
                ts=now,
            )
        )
        s.attributes["voicemail"] = event.file
    if node.next:
        call.go(node.next, "recorded", now)
    else:
        call.say(VOICEMAIL_DONE, Finish(outcome="self_served", result="self_served"), now)
