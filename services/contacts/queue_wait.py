"""A caller waiting in line, whoever put them there: on a number routed straight to a queue (no IVR) the
recording notice before the line, music, position and expected wait at the queue's interval, the closed
treatment (a flow, or a message then goodbye); in a flow's queue (handed back by the IVR, ivr_step.py) the
node's music, announcements, its callback offer that keeps the caller's place, and its maximum wait, after
which the flow continues in the IVR. Sans-IO functions of the `Lifecycle` (lifecycle.py), as in consult.py:
they take `now` and emit through the machine; phases move only through its `_transition`
(contact_state.PHASES)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import msgspec

from services.kernel import events as ev
from services.kernel.announcements import CALLBACK_DONE, closed_play, position_play, voice_of

from . import callbacks

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = [
    "CLOSED",
    "Waiting",
    "announce",
    "closed",
    "continue_flow",
    "digit",
    "end_flow_wait",
    "flow_timer",
    "music",
    "notice_over",
    "play_finished",
    "queued",
    "resume",
    "wait_in_queue",
]

CLOSED = "closed"  # outcome of a call to a number whose queue was closed (the caller heard its message)
CLOSED_MESSAGE_MAX_S = 60.0  # the closed message has played by then (or its end was lost): hang up
# The recording announcement's end never reported (media lost it): the caller is put in line, unrecorded.
NOTICE_MAX_S = 60.0
GOODBYE_MAX_S = 30.0  # the goodbye after a call back agreed has played by then (or its end was lost)


class Waiting(msgspec.Struct, kw_only=True, frozen=True):
    """What a caller on a number routed straight to a queue hears (the queue's and the tenant's settings)."""

    announce_every: float | None = None  # position announcements; None: music only
    language: str = "en"
    closed_message: str | None = None  # None: the platform's, in the tenant's language
    # "This call may be recorded": played before the caller is put in line when this contact will be
    # recorded and the queue or tenant has an announcement (docs/recording.md); recording starts only once
    # it has been heard to its end.
    recording_notice: str | None = None
    closed_flow: str | None = None  # closed treatment "flow": the IVR flow the caller is handed to


def wait_in_queue(m: Lifecycle) -> None:
    """The caller we answered is up (`call.answered`, or the answer's reply: a WebRTC caller's leg is
    answered before its arrival is announced): music and in line, once."""
    s = m.state
    if m.phase != "arrived" or s.deadline is None or s.notice == "playing" or s.record.outcome == CLOSED:
        return  # (the closed message's own deadline is not "not yet in line")
    s.deadline = None
    if s.waiting is not None and s.waiting.recording_notice and not s.notice:
        # The caller hears that the call may be recorded before being put in line, so before any agent
        # and any recording; in line once it has been played (or could not be).
        play = ev.MediaPlay(
            **m._stamp(),
            call_id=m.contact_id,
            text=s.waiting.recording_notice,
            voice=voice_of(s.waiting.language),
        )
        s.notice, s.playing = "playing", str(play.id)
        s.deadline = m._now + NOTICE_MAX_S
        m._event("recording_notice", m._now)
        m._send(play, "recording_notice")
        return
    m._send(ev.MediaPlay(**m._stamp(), call_id=m.contact_id, tone="moh", loop=True), "moh")
    assert s.record.queue_id is not None
    m._send(
        ev.RoutingEnqueue(
            **m._stamp(),
            call_id=m.contact_id,
            queue="",
            queue_id=s.record.queue_id,
            # What the queue's priority rules can match without an IVR (e.g. caller=+15550100: +30).
            attributes={"caller": s.record.caller, "dialled": s.record.dialled},
        ),
        "enqueue",
    )


def notice_over(m: Lifecycle, now: float, *, heard: bool) -> None:
    """The recording announcement ended: heard to its end, the call may be recorded; cut short or never
    played (the caller was not told), it is not. In line either way."""
    s = m.state
    s.notice = "heard" if heard else "failed"
    m._event("recording_notice_heard" if heard else "recording_notice_failed", now)
    s.deadline = now  # wait_in_queue's "not yet in line" mark
    wait_in_queue(m)


def queued(m: Lifecycle, event: ev.ContactQueued, now: float) -> None:
    """Routing put the caller in line (from the IVR, straight from the number, or again after a transfer)."""
    s, r = m.state, m.state.record
    if event.attributes.get("kind") == "voicemail":
        # The IVR's voicemail task for this call, not the caller waiting: a note in the timeline.
        m._event("voicemail_task", now, queue_id=event.queue)
        return
    s.position, s.expected_wait_s = event.position or None, event.expected_wait_s
    r.attributes.update(event.attributes)
    if "ivr.digits" in event.attributes and not r.ivr_digits:
        r.ivr_digits = event.attributes["ivr.digits"]
    if "ivr.path" in event.attributes and not r.ivr_path:
        r.ivr_path = event.attributes["ivr.path"].split(">")
    if m.phase in ("arrived", "in_ivr"):
        if m.phase == "in_ivr":
            r.ivr_s = round(now - r.arrived_at, 3)
        r.queued_at = now
        r.outcome = None
        try:
            r.queue_id = uuid.UUID(event.queue)
        except ValueError:
            pass
        m._transition("queued", now, "enqueued", queue_id=event.queue)
    elif m.phase in ("queued", "callback") and s.offer_id is None:
        m._event("queued", now, queue_id=event.queue)


def announce(m: Lifecycle, now: float) -> None:
    """The caller's position and expected wait at the queue's interval, as the IVR's queue node says
    them (services/kernel/announcements.py); only while in line, where we play the music."""
    s = m.state
    every = s.waiting.announce_every if s.waiting else None
    if m.phase not in ("queued", "offered") or callbacks.awaits_customer(m) or every is None:
        s.announce_at = None
        return
    s.announce_at = now + every
    if m.phase == "offered":
        return  # an agent's phone is ringing: the next one, if the caller is still waiting
    assert s.waiting is not None
    stamp = m._stamp()
    play = position_play(
        tenant_id=stamp["tenant_id"],
        call_id=m.caller_call,
        position=s.position,
        expected_wait_s=s.expected_wait_s,
        language=s.waiting.language,
        id=stamp["id"],
        ts=now,
    )
    s.playing = str(play.id)
    m._event("announced", now, position=str(s.position or ""))
    m._send(play, "announce")


def play_finished(m: Lifecycle, event: ev.CallPlayFinished, now: float) -> None:
    s = m.state
    if event.call_id != m.caller_call or event.play_id is None or str(event.play_id) != s.playing:
        return
    s.playing = None
    if m.phase == "arrived" and s.notice == "playing":
        notice_over(m, now, heard=event.reason == "done")
    elif m.phase == "arrived" and s.record.outcome == CLOSED:
        m._hang_up_caller(CLOSED)
    elif s.bye:
        bye, s.bye, s.deadline = s.bye, "", None
        m._hang_up_caller(bye)
    elif event.reason != "stopped" and m.phase in ("queued", "offered") and not s.bridged:
        music(m)


def music(m: Lifecycle) -> None:
    """Music on hold for the caller in line: the flow's queue node's own, else the platform's."""
    s = m.state
    template = s.flow_wait.music if s.flow_wait is not None else None
    if template is None:
        play = ev.MediaPlay(**m._stamp(), call_id=m.caller_call, tone="moh", loop=True)
    else:
        play = msgspec.structs.replace(template, **m._stamp(), call_id=m.caller_call)
    m._send(play, "moh")


def resume(m: Lifecycle) -> None:
    """A restarted coordinator: a caller waiting in line (or ringing an agent) hears the music again from
    its start (an announcement or the callback offer may have been cut short while no one was in charge;
    routing kept the place)."""
    s = m.state
    if m.phase not in ("queued", "offered") or s.accepted or s.bridged or s.bye or s.task is not None:
        return
    if callbacks.awaits_customer(m):
        return
    s.playing = None
    music(m)


def closed(m: Lifecycle, now: float) -> None:
    """The queue is closed (hours, holiday): to its closed flow (the IVR takes the call), else its
    closed message, then goodbye."""
    s = m.state
    waiting = s.waiting or Waiting()
    if waiting.closed_flow:
        run = ev.IvrRun(
            **m._stamp(),
            call_id=m.caller_call,
            flow=waiting.closed_flow,
            caller=s.record.caller,
            dialled=s.record.dialled,
        )
        m._event("closed", now, queue_id=str(s.record.queue_id), flow=waiting.closed_flow)
        m._send(run, "closed_flow")
        return
    stamp = m._stamp()
    play = closed_play(
        tenant_id=stamp["tenant_id"],
        call_id=m.contact_id,
        message=waiting.closed_message,
        language=waiting.language,
        id=stamp["id"],
        ts=now,
    )
    s.record.outcome = CLOSED
    s.playing = str(play.id)
    s.deadline = now + CLOSED_MESSAGE_MAX_S
    m._event("closed", now, queue_id=str(s.record.queue_id))
    m._send(play, "closed_message")


# -- a flow's queue node (its terms came with the IVR's hand-back, ivr_step.handed_back) ------------------


def end_flow_wait(m: Lifecycle) -> None:
    """The node's terms no longer apply (an agent took the caller, the caller left, the flow goes on)."""
    s = m.state
    s.flow_wait = None
    s.callback_offer_at = s.give_up_at = None
    s.callback_offered = False


def flow_timer(m: Lifecycle, now: float) -> None:
    """The node's own times: the maximum wait first, then the callback offer (as the IVR's node had them)."""
    s = m.state
    wait = s.flow_wait
    if wait is None:
        end_flow_wait(m)
        return
    give_up = s.give_up_at is not None and now >= s.give_up_at
    if m.phase == "offered":
        # An agent's phone rings: the caller is not taken from it; the times wait for the offer's end.
        later = max(now, s.offer_expires_at or now) + 1.0
        if give_up:
            s.give_up_at = later
        if s.callback_offer_at is not None and now >= s.callback_offer_at:
            s.callback_offer_at = later
        return
    if m.phase != "queued":
        end_flow_wait(m)
        return
    if give_up:
        s.give_up_at = None
        m._send(ev.RoutingCancel(**m._stamp(), call_id=m.routing_id, reason="max_wait"), "cancel")
        m._event("max_wait", now, queue_id=str(s.record.queue_id or ""))
        continue_flow(m, wait.on_timeout, now, "max_wait")
    elif s.callback_offer_at is not None and now >= s.callback_offer_at:
        s.callback_offer_at = None
        _offer_callback(m, wait, now)


def _offer_callback(m: Lifecycle, wait: ev.IvrQueueWait, now: float) -> None:
    s = m.state
    if wait.callback_offer is None:
        return
    s.callback_offered = True
    play = msgspec.structs.replace(wait.callback_offer, **m._stamp(), call_id=m.caller_call)
    s.playing = str(play.id)  # when it ends, the music comes back (play_finished)
    if s.announce_at is not None and wait.announce_every:
        s.announce_at = max(s.announce_at, now + wait.announce_every)  # not over the offer
    m._event("callback_offered", now)
    m._send(play, "callback_offer_prompt")


def digit(m: Lifecycle, event: ev.CallDtmf, now: float) -> None:
    """A key pressed in line: the callback digit, once offered, agrees to a call back that keeps the
    caller's place (routing calls back when the contact reaches the front)."""
    s, r = m.state, m.state.record
    wait = s.flow_wait
    if wait is None or m.phase != "queued" or event.call_id != m.caller_call:
        return
    r.ivr_digits += event.digit
    if not s.callback_offered or event.digit != wait.callback_digit:
        return
    number = wait.enqueue.attributes.get("caller") or r.caller
    stamp = m._stamp()
    # The request is published first: routing may find the contact due at once, and this coordinator must
    # know why (callbacks.requested, when the event comes back to it with the tenant's settings).
    m._out.append(
        ev.IvrCallbackRequested(
            tenant_id=stamp["tenant_id"],
            id=stamp["id"],
            ts=stamp["ts"],
            call_id=m.contact_id,
            queue=wait.enqueue.queue,
            number=number,
            keep_place=True,
        )
    )
    m._send(
        ev.RoutingCallback(
            **m._stamp(),
            call_id=m.routing_id,
            queue=wait.enqueue.queue,
            queue_id=wait.enqueue.queue_id,
            number=number,
            keep_place=True,
            attributes={**wait.enqueue.attributes, **r.attributes, "callback": "requested"},
        ),
        "callback_keep_place",
    )
    r.attributes["callback"] = "requested"
    if wait.on_callback:
        continue_flow(m, wait.on_callback, now, "callback")
        return
    end_flow_wait(m)
    s.announce_at = None
    play = ev.MediaPlay(**m._stamp(), call_id=m.caller_call, text=CALLBACK_DONE)
    s.playing, s.bye = str(play.id), "callback"
    s.deadline = now + GOODBYE_MAX_S
    m._send(play, "callback_goodbye")


def continue_flow(m: Lifecycle, node: str, now: float, cause: str, reason: str = "") -> None:
    """The flow goes on in the IVR at `node` of the queue node's scope (its on_timeout, on_callback), or at
    the flow's fallback when the node has none or routing refused the queue (`reason`), with what the flow
    had learned; with nowhere to go, an apology and a hang-up, as the IVR would."""
    s, r = m.state, m.state.record
    wait = s.flow_wait
    assert wait is not None
    end_flow_wait(m)
    s.waiting = None
    s.announce_at = None
    scope = wait.scope
    attributes = {**wait.enqueue.attributes, **r.attributes}
    if not node and wait.fallback:
        node, scope = wait.fallback, ""
        attributes["ivr.fallback"] = reason or "end of flow"
    if not node:
        m._apologize("no_flow", now, cause=cause)
        return
    if m.phase == "queued":
        m._transition("in_ivr", now, cause)
    m._send(
        ev.IvrRun(
            **m._stamp(),
            call_id=m.contact_id,
            flow=s.flow_name,
            node=node,
            scope=scope,
            caller=r.caller,
            dialled=r.dialled,
            attributes=attributes,
        ),
        "flow",
    )
