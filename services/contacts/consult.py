"""Attended transfer from the desk, the coordinator's half: a consultation of a second agent (or of anyone in a
queue) while the caller hears music, then complete (the caller goes to the second agent, the first to
wrap-up) or cancel (the first agent is back with the caller).

The second agent is offered the consultation like a contact, through routing: the consultation is a
routing contact of its own (`Consult.id`, derived from the caller's contact), enqueued for that agent alone
(`preferred_only`) or for the queue; its offer, accept and decline come back as contact.* events with that
id, which the adapter maps to the caller's contact. The second agent's desk knows the consultation by that
id (its `contact_offer` names the caller's call in `call_id`, for the WebRTC leg, which the API places on
the media worker holding the caller). Once both agents' legs are up, media's `consult` bridges them and
plays music to the caller; `complete_transfer` / `cancel_transfer` end it (services/media/features/consult.py).

After a completed transfer the consultation's routing contact is the contact's routing identity
(`Contact.routing_id`): routing sees the second agent on it, and the first agent wrapping up the original.

Sans-IO: functions of the `Lifecycle` (lifecycle.py) that take `now` and emit through it; the phases move
only through `MOVES`.
"""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from services.kernel import events as ev

from .records import iso_utc

if TYPE_CHECKING:
    from .lifecycle import Lifecycle, OfferInfo

__all__ = ["CONSULT_RING_S", "Consult", "ConsultPhase", "Refused"]

# The consulted side has this long to answer (routing's own offer timeout usually ends it first).
CONSULT_RING_S = 30.0
# Routing keeps the consultation for the one agent a little longer than we wait for it.
ROUTING_WINDOW_S = CONSULT_RING_S + 30.0
ACCEPT_LEG_S = 10.0


class ConsultPhase(enum.Enum):
    RINGING = "ringing"  # offered (or waiting) in routing; the caller hears music
    TALKING = "talking"  # the two agents are bridged; the caller hears music
    COMPLETING = "completing"  # media was asked to bridge the caller to the second agent
    CANCELLING = "cancelling"  # media was asked to put the first agent back with the caller


# Allowed moves; a consultation that ends is dropped from the contact (None), from any phase.
MOVES: dict[ConsultPhase, frozenset[ConsultPhase]] = {
    ConsultPhase.RINGING: frozenset({ConsultPhase.TALKING}),
    ConsultPhase.TALKING: frozenset({ConsultPhase.COMPLETING, ConsultPhase.CANCELLING}),
    ConsultPhase.COMPLETING: frozenset({ConsultPhase.TALKING}),  # media refused: still talking
    ConsultPhase.CANCELLING: frozenset({ConsultPhase.TALKING}),
}


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Consult(msgspec.Struct, kw_only=True):
    id: uuid.UUID  # its routing contact, and the contact id on the consulted agent's desk
    from_agent_id: str
    from_leg_id: uuid.UUID
    to_agent_id: str | None  # None: anyone of the queue
    queue_id: str
    note: str = ""
    phase: ConsultPhase = ConsultPhase.RINGING
    offer_id: str | None = None
    agent_id: str | None = None  # who was offered it (routing's choice for a queue)
    accepted: bool = False
    leg_id: uuid.UUID | None = None  # the consulted agent's WebRTC leg (on the caller's media worker)
    leg_ready: bool = False
    bridging: bool = False
    deadline: float | None = None
    started_at: float = 0.0


def _move(c: Consult, to: ConsultPhase) -> None:
    if to not in MOVES[c.phase]:
        raise Refused("state", f"the consultation is {c.phase.value}, it cannot become {to.value}")
    c.phase = to


# -- the first agent's commands ------------------------------------------------------------------------


def start(m: Lifecycle, cmd: ev.DeskConsult, queue_id: uuid.UUID | None, now: float) -> dict[str, Any]:
    s, r = m.state, m.state.record
    if s.consult is not None:
        raise Refused("state", "a consultation of this contact is already under way")
    if s.transfer is not None:
        raise Refused("state", "a transfer of this contact is already under way")
    if s.leg_id is None or not s.bridged:
        raise Refused("state", "the call's audio is not connected yet")
    if cmd.to_agent_id is not None and str(cmd.to_agent_id) == str(cmd.agent_id):
        raise Refused("bad_message", "consult another agent, not yourself")
    target = queue_id or r.queue_id
    if target is None:
        raise Refused("bad_message", "consult an agent or a queue")
    consult_id = uuid.uuid5(m.contact_id, f"consult:{len(r.transfers)}:{cmd.id}")
    s.consult = Consult(
        id=consult_id,
        from_agent_id=str(cmd.agent_id),
        from_leg_id=s.leg_id,
        to_agent_id=str(cmd.to_agent_id) if cmd.to_agent_id else None,
        queue_id=str(target),
        note=cmd.note,
        deadline=now + CONSULT_RING_S,
        started_at=now,
    )
    m._send(
        ev.RoutingEnqueue(
            **m._stamp(),
            call_id=consult_id,
            queue="",
            queue_id=target,
            priority=99,
            attributes={"kind": "consult", "consult_of": str(m.contact_id)},
            preferred_agent_id=str(cmd.to_agent_id) if cmd.to_agent_id else None,
            preferred_window_s=ROUTING_WINDOW_S if cmd.to_agent_id else None,
            preferred_only=cmd.to_agent_id is not None,
        ),
        "consult",
    )
    detail = {"consult_id": str(consult_id), "queue_id": str(target)}
    if cmd.to_agent_id:
        detail["to_agent_id"] = str(cmd.to_agent_id)
    m._event("consult_started", now, **detail)
    return {"consult_id": str(consult_id), "state": "ringing"}


def complete(m: Lifecycle, now: float) -> dict[str, Any]:
    c = _mine(m)
    if c.phase is not ConsultPhase.TALKING:
        raise Refused("state", f"the consultation is {c.phase.value}: complete it once you talk")
    _move(c, ConsultPhase.COMPLETING)
    m._send(ev.MediaCompleteTransfer(**m._stamp(), call_id=c.from_leg_id), "consult_complete")
    return {"consult_id": str(c.id), "state": "completing"}


def cancel(m: Lifecycle, now: float) -> dict[str, Any]:
    c = _mine(m)
    if c.phase is ConsultPhase.RINGING:
        end(m, now, "cancelled")
        return {"consult_id": str(c.id), "state": "cancelled"}
    if c.phase is not ConsultPhase.TALKING:
        raise Refused("state", f"the consultation is {c.phase.value}")
    _move(c, ConsultPhase.CANCELLING)
    m._send(ev.MediaCancelTransfer(**m._stamp(), call_id=c.from_leg_id), "consult_cancel")
    return {"consult_id": str(c.id), "state": "cancelling"}


def _mine(m: Lifecycle) -> Consult:
    if m.state.consult is None:
        raise Refused("state", "no consultation is under way for this contact")
    return m.state.consult


# -- the consulted agent --------------------------------------------------------------------------------


def desk_of_target(m: Lifecycle, cmd: ev.DeskCommand, now: float) -> dict[str, Any]:
    """A command from the consulted agent's desk before the transfer completed: it may only leave."""
    c = _mine(m)
    if not isinstance(cmd, ev.DeskHangup):
        raise Refused("state", "the caller is still the other agent's: you can only hang up the consultation")
    if c.leg_id is not None:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_left"), "hangup_leg")
    if c.phase is ConsultPhase.RINGING:
        end(m, now, "target_left")
    # Talking: media puts the first agent back with the caller when the leg ends (leg_gone).
    return {}


def offered(m: Lifecycle, info: OfferInfo, now: float) -> None:
    c = m.state.consult
    offer = info.offer
    if c is None or c.phase is not ConsultPhase.RINGING or c.offer_id is not None:
        return
    if info.endpoint:
        # A desk phone has no second leg to give: the consultation needs the agent's browser or SDK.
        c.agent_id = offer.agent_id
        end(m, now, "agent_on_phone")
        return
    c.offer_id, c.agent_id = offer.offer_id, offer.agent_id
    m.state.desk_ids[offer.agent_id] = str(c.id)
    context = m.context(now, info)
    context["consult"] = {"from_agent_id": c.from_agent_id, "note": c.note}
    m._event("consult_offered", now, agent_id=offer.agent_id)
    m._desk(
        offer.agent_id,
        "contact_offer",
        now=now,
        offer_id=offer.offer_id,
        expires_at=offer.expires_at,
        audio="webrtc",
        call_id=str(m.contact_id),
        context=context,
    )


def routing_event(m: Lifecycle, event: Any, now: float) -> None:
    """A contact.* event of the consultation's routing contact."""
    c = m.state.consult
    if c is None:
        return
    match event:
        case ev.ContactAccepted():
            if c.phase is ConsultPhase.RINGING and not c.accepted:
                c.accepted, c.agent_id = True, event.agent_id
                c.deadline = now + ACCEPT_LEG_S
                m._event("consult_accepted", now, agent_id=event.agent_id)
                _bridge(m)
        case ev.ContactRejected():
            if c.phase is ConsultPhase.RINGING and not c.accepted and event.offer_id == c.offer_id:
                end(m, now, "rejected" if event.reason == "rejected" else "no_answer")
        case ev.ContactRequeued() | ev.ContactAbandoned():
            # Routing lost the consulted agent (signed out at the end of its grace).
            if c.accepted or c.phase is not ConsultPhase.RINGING:
                if c.leg_id is not None:
                    m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="agent_lost"), "hangup_leg")
                end(m, now, "target_left")


def signal(m: Lifecycle, event: ev.WebRtcSignal, now: float) -> None:
    c = m.state.consult
    assert c is not None
    if event.kind == "state" and event.state == "connected" and c.phase is ConsultPhase.RINGING:
        c.leg_id, c.leg_ready = event.leg_id, True
        _bridge(m)
    elif event.kind == "ended" and event.leg_id == c.leg_id:
        leg_gone(m, now)


def _bridge(m: Lifecycle) -> None:
    c = m.state.consult
    assert c is not None
    if not (c.accepted and c.leg_ready and not c.bridging) or c.leg_id is None:
        return
    c.bridging = True
    m._send(ev.MediaConsult(**m._stamp(), call_id=c.from_leg_id, other_call_id=c.leg_id), "consult_bridge")


def replied(m: Lifecycle, purpose: str, ok: bool, code: str | None, now: float) -> None:
    c = m.state.consult
    if c is None:
        return
    if purpose == "consult" and not ok:
        # Routing refused (the agent is not in the queue, ...): the desk's reply says why.
        _drop(m, now, f"refused:{code}", tell_first=False)
    elif purpose == "consult" and not m.state.held:
        # Routing took it: the caller waits on music from now on.
        m.state.held = True
        m._send(ev.MediaPlay(**m._stamp(), call_id=m.contact_id, tone="moh", loop=True), "hold")
    elif purpose == "consult_bridge":
        c.bridging = False
        if ok and c.phase is ConsultPhase.RINGING:
            _move(c, ConsultPhase.TALKING)
            c.deadline = None
            m.state.held = False  # media's consultation plays the caller its own music now
            m._event("consult_talking", now, agent_id=c.agent_id or "")
            m._desk(c.from_agent_id, "consult", now=now, state="talking", to_agent_id=c.agent_id)
            assert c.agent_id is not None
            m._desk(
                c.agent_id, "contact_connected", now=now, leg_id=str(c.leg_id), recording="off", consult=True
            )
            if m.state.record_call:  # the consultation is part of the conversation, both agents named
                m.record_segment(c.from_leg_id, c.from_agent_id, kind="consult", consulted=c.agent_id)
        elif not ok:
            if c.leg_id is not None:
                m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_failed"), "hangup_leg")
            end(m, now, f"bridge_failed:{code}")
    elif purpose == "consult_complete":
        if ok:
            completed(m, now, first_leg_up=True)
        elif c.phase is ConsultPhase.COMPLETING:
            _move(c, ConsultPhase.TALKING)
    elif purpose == "consult_cancel":
        if ok:
            if m.state.record_call:  # the first agent is back with the caller: the next segment
                m.record_segment(m.caller_call, c.from_agent_id)
            if c.leg_id is not None:
                m._send(
                    ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_cancelled"), "hangup_leg"
                )
            end(m, now, "cancelled", caller_music=False)
        elif c.phase is ConsultPhase.CANCELLING:
            _move(c, ConsultPhase.TALKING)


def timer(m: Lifecycle, now: float) -> None:
    c = m.state.consult
    if c is None or c.deadline is None or now < c.deadline:
        return
    c.deadline = None
    if c.leg_id is not None:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_timeout"), "hangup_leg")
    end(m, now, "no_answer" if not c.accepted else "target_left")


# -- legs ending -----------------------------------------------------------------------------------------


def leg_gone(m: Lifecycle, now: float) -> None:
    """The consulted agent's leg ended."""
    c = m.state.consult
    if c is None:
        return
    if c.phase is ConsultPhase.RINGING and not c.accepted:
        c.leg_id, c.leg_ready = None, False  # its desk may make another while it rings
        return
    # Talking: media's table already put the first agent back with the caller (and stopped the music).
    end(m, now, "target_left", caller_music=c.phase is ConsultPhase.RINGING)


def first_agent_gone(m: Lifecycle, now: float) -> bool:
    """The consulting agent's leg ended. True when that completed the transfer (while talking, media
    bridged the caller to the consulted agent: hanging up transfers); else the consultation is over."""
    c = m.state.consult
    if c is None:
        return False
    if c.phase in (ConsultPhase.TALKING, ConsultPhase.COMPLETING):
        completed(m, now, first_leg_up=False)
        return True
    if c.leg_id is not None:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_ended"), "hangup_leg")
    end(m, now, "agent_left", caller_music=False, tell_first=False)
    return False


def caller_gone(m: Lifecycle, now: float) -> None:
    c = m.state.consult
    if c is None:
        return
    if c.leg_id is not None:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="caller_hung_up"), "hangup_leg")
    end(m, now, "caller_hung_up", caller_music=False, tell_first=False)


# -- endings ---------------------------------------------------------------------------------------------


def end(m: Lifecycle, now: float, reason: str, *, caller_music: bool = True, tell_first: bool = True) -> None:
    """The consultation is over without a transfer: routing lets go of it, the consulted agent's desk is
    told (its offer withdrawn, or its consultation ended), the caller is taken off music."""
    c = m.state.consult
    assert c is not None
    if c.accepted:
        # Routing has the consulted agent on it: end it and spare the agent a wrap-up for a consultation.
        m._send(ev.RoutingEnd(**m._stamp(), call_id=c.id), "consult_end")
        assert c.agent_id is not None
        m._send(
            ev.RoutingWrapUpDone(**m._stamp(), agent_id=uuid.UUID(c.agent_id), call_id=c.id), "consult_end"
        )
        m._desk(c.agent_id, "contact_ended", now=now, cause=f"consult_{reason}", by="agent", consult=True)
    else:
        m._send(ev.RoutingCancel(**m._stamp(), call_id=c.id, reason="consult_ended"), "consult_end")
        if c.offer_id is not None and c.agent_id is not None:
            m._desk(c.agent_id, "contact_withdrawn", now=now, offer_id=c.offer_id, reason=reason)
    if c.leg_id is not None and c.phase is ConsultPhase.RINGING:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.leg_id, cause="consult_ended"), "hangup_leg")
    _drop(m, now, reason, tell_first=tell_first, caller_music=caller_music)


def _drop(m: Lifecycle, now: float, reason: str, *, tell_first: bool, caller_music: bool = True) -> None:
    s = m.state
    c = s.consult
    assert c is not None
    if caller_music and s.held and m.phase == "connected":
        s.held = False
        m._send(ev.MediaStop(**m._stamp(), call_id=m.contact_id), "unhold")
    s.consult = None
    if c.agent_id is not None:
        s.desk_ids.pop(c.agent_id, None)
    m._event("consult_ended", now, consult_id=str(c.id), reason=reason)
    if tell_first:
        m._desk(c.from_agent_id, "consult", now=now, state="cancelled", reason=reason)


def completed(m: Lifecycle, now: float, *, first_leg_up: bool) -> None:
    """The caller is bridged to the consulted agent: the contact is theirs; the first agent wraps up."""
    s, r = m.state, m.state.record
    c = s.consult
    assert c is not None and c.agent_id is not None
    first, first_routing = c.from_agent_id, m.routing_id
    if first_leg_up:
        m._send(ev.MediaHangup(**m._stamp(), call_id=c.from_leg_id, cause="transferred"), "hangup_leg")
    # Routing: the first agent's contact ends (wrap-up); the consultation is the contact from now on.
    m._send(ev.RoutingEnd(**m._stamp(), call_id=first_routing), "end")
    move = {
        "at": iso_utc(now),
        "kind": "attended",
        "from_agent_id": first,
        "to_agent_id": c.agent_id,
        "to_queue_id": c.queue_id,
        "consult_id": str(c.id),
        "routing_id": str(first_routing),
    }
    if c.note:
        move["note"] = c.note
    r.transfers.append(move)
    duration = round(now - r.connected_at, 3) if r.connected_at is not None else 0.0
    m._desk(first, "contact_ended", now=now, cause="transferred", by="agent", duration=duration, wrap_up=True)
    m._desk(c.agent_id, "consult", now=now, state="completed")
    s.routing_id = c.id
    s.leg_id, s.leg_ready, s.bridged, s.accepted = c.leg_id, True, True, True
    s.offer_agent_id = c.agent_id
    s.held = s.muted = False
    r.agent_id = uuid.UUID(c.agent_id)
    s.consult = None
    m._event("transferred", now, kind="attended", from_agent_id=first, to_agent_id=c.agent_id)
    if s.record_call:  # the consulted agent with the caller: the next segment
        m.record_segment(m.caller_call, str(r.agent_id))


def wrap_up_of_first(m: Lifecycle, cmd: ev.DeskWrapUp) -> dict[str, Any] | None:
    """The disposition of an agent who handed the contact on by attended transfer (kept on its transfer
    entry; the record's own disposition is the last agent's). None when `cmd` is not from such an agent."""
    move = _handed_on_by(m.state.record.transfers, str(cmd.agent_id))
    if move is None:
        return None
    if "disposition" in move:
        if (move["disposition"], move.get("notes", "")) == (cmd.disposition, cmd.notes):
            return {"disposition": cmd.disposition}
        raise Refused("state", f"you already gave this contact the disposition {move['disposition']!r}")
    move["disposition"] = cmd.disposition
    if cmd.notes:
        move["notes"] = cmd.notes
    m._send(
        ev.RoutingWrapUpDone(**m._stamp(), agent_id=cmd.agent_id, call_id=uuid.UUID(move["routing_id"])),
        "wrap_up",
    )
    return {"disposition": cmd.disposition}


def _handed_on_by(transfers: list[dict[str, str]], agent_id: str) -> dict[str, str] | None:
    for move in reversed(transfers):
        if move.get("kind") == "attended" and move.get("from_agent_id") == agent_id:
            return move
    return None


def late_wrap_up_of_first(transfers: list[dict[str, str]], cmd: ev.DeskWrapUp) -> dict[str, Any] | None:
    """Like `wrap_up_of_first`, on a finished record (no routing to tell: its wrap-up already ended)."""
    move = _handed_on_by(transfers, str(cmd.agent_id))
    if move is None:
        return None
    if "disposition" in move:
        if (move["disposition"], move.get("notes", "")) == (cmd.disposition, cmd.notes):
            return {"disposition": cmd.disposition, "late": True}
        raise Refused("state", f"you already gave this contact the disposition {move['disposition']!r}")
    move["disposition"] = cmd.disposition
    if cmd.notes:
        move["notes"] = cmd.notes
    return {"disposition": cmd.disposition, "late": True}
