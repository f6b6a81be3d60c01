"""The agents' desk commands on a contact (docs/agent-protocol.md): wrap-up with a disposition, hold, mute,
recording pause, digits, transfers to a queue, an agent or a flow, hang up; a disposition that arrives after
the wrap-up ended. Sans-IO functions of the `Lifecycle` (lifecycle.py), as in consult.py: they take `now`
and emit through the machine; phases move only through its `_transition` (lifecycle.PHASES)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from services.kernel import events as ev

from . import aftercall, consult, voicemail
from .records import ContactRecord, TimelineEntry, iso_utc

if TYPE_CHECKING:
    from .lifecycle import Lifecycle

__all__ = ["DIGITS", "DeskRefused", "answer_offer", "command", "late_wrap_up"]

DIGITS = frozenset("0123456789*#ABCD")


class DeskRefused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def late_wrap_up(record: ContactRecord, cmd: ev.DeskWrapUp, now: float) -> dict[str, Any]:
    """A disposition that arrives after the contact's wrap-up ended (its timer ran out while the agent was
    still typing, or the desktop was reconnecting): kept on the finished record, never lost. Only the
    contact's own agent; a second, different disposition is refused (the first is what was reported)."""
    if record.state == "ended" and record.agent_id is not None and str(record.agent_id) != str(cmd.agent_id):
        try:
            handed_on = consult.late_wrap_up_of_first(record.transfers, cmd)
        except consult.Refused as exc:
            raise DeskRefused(exc.code, exc.reason) from None
        if handed_on is not None:
            return handed_on
    if record.agent_id is None or str(record.agent_id) != str(cmd.agent_id):
        raise DeskRefused("not_found", "this contact is not yours")
    if record.state != "ended":
        raise DeskRefused("state", f"the contact is {record.state}, not in wrap-up")
    if record.disposition is not None:
        if (record.disposition, record.notes) == (cmd.disposition, cmd.notes or None):
            return {"disposition": cmd.disposition, "late": True}  # a retry: already kept
        raise DeskRefused("state", f"this contact already has the disposition {record.disposition!r}")
    record.disposition = cmd.disposition
    record.notes = cmd.notes or None
    record.timeline.append(
        TimelineEntry(at=now, event="disposition", detail={"disposition": cmd.disposition, "late": "true"})
    )
    return {"disposition": cmd.disposition, "late": True}


def answer_offer(m: Lifecycle, cmd: ev.DeskAccept | ev.DeskReject, now: float) -> dict[str, Any]:
    """An agent's accept or reject of its offer, forwarded to routing whatever this machine's phase: routing
    owns offers and decides (its reply is the agent's answer, passed on by the adapter); its
    `contact.accepted` / `contact.rejected` then carry the contact on, as for an agent's phone answering.
    The machine may not have seen the offer yet (a restarted coordinator gets the offer's event back after
    the accept), so it checks only that the offer names this desk's contact."""
    if not cmd.offer_id.startswith(f"{cmd.contact_id}#"):
        raise DeskRefused("not_found", "that offer is not for that contact")
    m._step(cmd.id, now)
    if isinstance(cmd, ev.DeskAccept):
        m._send(ev.RoutingAccept(**m._stamp(), agent_id=cmd.agent_id, offer_id=cmd.offer_id), "accept_offer")
    else:
        m._send(
            ev.RoutingReject(
                **m._stamp(), agent_id=cmd.agent_id, offer_id=cmd.offer_id, away_reason=cmd.reason or "missed"
            ),
            "reject_offer",
        )
    return {}


def command(m: Lifecycle, cmd: ev.DeskCommand, now: float, queue_id: uuid.UUID | None) -> dict[str, Any]:
    if isinstance(cmd, ev.DeskAccept | ev.DeskReject):
        return answer_offer(m, cmd, now)
    s, r = m.state, m.state.record
    agent = str(cmd.agent_id)
    c = s.consult
    if c is not None and c.agent_id == agent and str(r.agent_id) != agent and c.accepted:
        m._step(cmd.id, now)
        return consult.desk_of_target(m, cmd, now)
    if isinstance(cmd, ev.DeskWrapUp) and r.agent_id is not None and str(r.agent_id) != agent:
        m._step(cmd.id, now)
        done = consult.wrap_up_of_first(m, cmd)
        if done is not None:
            m._event("disposition", now, disposition=cmd.disposition, agent_id=agent)
            return done
    if s.offer_agent_id == str(cmd.agent_id) and r.agent_id is None:
        raise DeskRefused("state", "the contact is ringing: accept it first")
    if r.agent_id is None or str(r.agent_id) != str(cmd.agent_id):
        raise DeskRefused("not_found", "this contact is not yours")
    m._step(cmd.id, now)
    if isinstance(cmd, ev.DeskWrapUp):
        if m.phase != "wrap_up":
            raise DeskRefused("state", f"the contact is {m.phase}, not in wrap-up")
        r.disposition = cmd.disposition
        r.notes = cmd.notes or None
        m._event("disposition", now, disposition=cmd.disposition)
        m._send(
            ev.RoutingWrapUpDone(**m._stamp(), agent_id=cmd.agent_id, call_id=m.routing_id),
            "wrap_up",
        )
        m._wrapped(now, "disposition")
        return {"disposition": cmd.disposition}
    if m.phase != "connected":
        raise DeskRefused("state", f"the contact is {m.phase}, not connected")
    if s.task is not None:
        return voicemail.desk(m, cmd, now)
    caller = m.caller_call
    if isinstance(cmd, ev.DeskConsult):
        return consult.start(m, cmd, queue_id, now)
    if isinstance(cmd, ev.DeskConsultComplete):
        return consult.complete(m, now)
    if isinstance(cmd, ev.DeskConsultCancel):
        return consult.cancel(m, now)
    if c is not None and isinstance(cmd, ev.DeskHold | ev.DeskTransfer | ev.DeskHangup):
        raise DeskRefused("state", "a consultation is under way: complete or cancel it first")
    match cmd:
        case ev.DeskHold():
            if cmd.on != s.held:
                s.held = cmd.on
                if cmd.on:
                    m._send(
                        ev.MediaPlay(**m._stamp(), call_id=caller, tone="moh", loop=True),
                        "hold",
                    )
                else:
                    m._send(ev.MediaStop(**m._stamp(), call_id=caller), "unhold")
                m._event("held" if cmd.on else "resumed", now)
            return {"held": s.held}
        case ev.DeskMute():
            if s.leg_id is None:
                raise DeskRefused("state", "the agent has no audio leg to mute")
            if cmd.on != s.muted:
                s.muted = cmd.on
                mute = ev.MediaMute if cmd.on else ev.MediaUnmute
                m._send(mute(**m._stamp(), call_id=s.leg_id), "mute")
                m._event("muted" if cmd.on else "unmuted", now)
            return {"muted": s.muted}
        case ev.DeskRecordPause():
            if not s.recording_started:
                raise DeskRefused("state", "this call is not being recorded")
            if cmd.on != s.recording_paused:
                s.recording_paused = cmd.on
                pause = ev.MediaRecordPause if cmd.on else ev.MediaRecordResume
                m._send(pause(**m._stamp(), call_id=caller), "record_pause")
                m._event("recording_paused" if cmd.on else "recording_resumed", now)
            return {"recording": "paused" if s.recording_paused else "on"}
        case ev.DeskDigits():
            if not cmd.digits or len(cmd.digits) > 32 or not set(cmd.digits.upper()) <= DIGITS:
                raise DeskRefused("bad_message", "digits are 1-32 of 0-9, *, #, A-D")
            m._send(
                ev.MediaSendDigits(**m._stamp(), call_id=caller, digits=cmd.digits.upper()),
                "digits",
            )
            m._event("digits_sent", now, digits=cmd.digits.upper())
            return {"digits": cmd.digits.upper()}
        case ev.DeskTransfer() if cmd.flow is not None:
            # To a flow: the agent's part ends here; the caller stays on the line for the IVR.
            r.transfers.append({"at": iso_utc(now), "from_agent_id": str(cmd.agent_id), "to_flow": cmd.flow})
            m._end_connected(now, by="agent", cause="transferred_to_flow")
            aftercall.hand_over(m, cmd.flow, now)
            return {"flow": cmd.flow}
        case ev.DeskTransfer():
            target = queue_id or r.queue_id
            if target is None:
                raise DeskRefused("bad_message", "transfer to a queue or an agent")
            if s.transfer is not None:
                raise DeskRefused("state", "a transfer of this contact is already under way")
            # Routing decides first; nothing changes here unless it accepts (see `_transferred`).
            m._send(
                ev.RoutingTransfer(
                    **m._stamp(),
                    call_id=m.routing_id,
                    queue_id=target,
                    agent_id=cmd.to_agent_id,
                    window_s=60.0 if cmd.to_agent_id is not None else None,
                ),
                "transfer",
            )
            move = {"at": iso_utc(now), "from_agent_id": str(cmd.agent_id), "to_queue_id": str(target)}
            if cmd.to_agent_id is not None:
                move["to_agent_id"] = str(cmd.to_agent_id)
            if cmd.note:
                move["note"] = cmd.note
            s.transfer = move
            return {"queue_id": str(target)}
        case ev.DeskHangup():
            if s.survey_flow:
                # The queue's post-call flow: the caller stays on the line and is handed to the IVR.
                m._end_connected(now, by="agent", cause="agent_hangup")
                aftercall.hand_over(m, s.survey_flow, now)
                return {"post_call_flow": s.survey_flow}
            m._hang_up_caller("agent_hangup")
            m._end_connected(now, by="agent", cause="agent_hangup")
            return {}
    raise DeskRefused("unknown_type", f"unknown desk command {cmd.name!r}")
