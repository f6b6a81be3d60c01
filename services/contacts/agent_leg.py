"""The agent's side of a contact: the offer (and its context for the desk), the accept, the agent's audio leg
(WebRTC signalling, a phone the platform dials) until it is bridged to the caller, and an agent or a leg
lost on the way (back in line, the agent logged out). Sans-IO functions of the `Lifecycle` (lifecycle.py),
as in consult.py: they take `now` and emit through the machine; phases move only through its `_transition`
(lifecycle.PHASES)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from services.kernel import events as ev
from services.recording.policy import should_record

from . import callbacks, consult, queue_wait, voicemail
from .records import PLATFORM_CAUSES

if TYPE_CHECKING:
    from .lifecycle import Lifecycle, OfferInfo

__all__ = [
    "ACCEPT_LEG_TIMEOUT_S",
    "AGENT_DISCONNECTED",
    "AGENT_LOST_MESSAGE",
    "accepted",
    "adopt_early_leg",
    "agent_lost",
    "agent_ready",
    "connected",
    "leg_gone",
    "offered",
    "phone_missed",
    "signal",
]

# An accepted contact whose agent's audio leg is not connected by then goes back in line (the agent lost
# its connection between accepting and audio).
ACCEPT_LEG_TIMEOUT_S = 10.0
# The cause of an agent lost for longer than its grace: routing signed it out (`contact.requeued`,
# "disconnected") and media ended its legs with this cause (services/media/app.py, `_on_agent_state`).
AGENT_DISCONNECTED = "agent_disconnected"
AGENT_LOST_MESSAGE = (
    "We're sorry, your agent was disconnected. Please hold, and the next agent will be with you."
)


def offered(m: Lifecycle, info: OfferInfo, now: float) -> None:
    s, r = m.state, m.state.record
    offer = info.offer
    if m.phase != "queued":
        return
    if s.task is not None:
        voicemail.offered(m, info, now)
        return
    s.offer_id, s.offer_expires_at, s.offer_agent_id = offer.offer_id, offer.expires_at, offer.agent_id
    s.leg_id, s.leg_ready, s.accepted, s.bridged, s.dialing = None, False, False, False, False
    if info.endpoint:
        s.early_legs.clear()  # its phone is its audio, not a leg its client made
    else:
        adopt_early_leg(m)
    if info.queue_name:
        r.queue_name = info.queue_name
    # Never without the announcement the caller was to hear first (it failed: not recorded).
    s.record_call = should_record(info.record_percent, m.contact_id) and s.notice != "failed"
    s.survey_flow = info.survey_flow
    if r.offered_at is None:
        r.offered_at = now
    m._transition("offered", now, "offered", agent_id=offer.agent_id)
    outbound = s.callback is not None and s.callback.kind == "outbound"
    if outbound:
        s.deadline = None  # offered in time; the offer's own expiry applies now
    m._desk(
        offer.agent_id,
        "contact_offer",
        now=now,
        offer_id=offer.offer_id,
        expires_at=offer.expires_at,
        # "phone": the platform rings the agent's phone and its pick-up answers; the client makes no leg.
        audio="phone" if info.endpoint else "webrtc",
        # The call the agent's leg joins; None: the customer is dialled after the accept, next to the leg.
        call_id=None if callbacks.awaits_customer(m) else str(m.caller_call),
        # The agent's own call: its client accepts it (it asked for it), whatever its answer mode.
        **({"outbound": True} if outbound else {}),
        context=m.context(now, info),
    )
    if info.endpoint:
        # An agent at a phone: ring it from the caller's media worker; answering it accepts the offer.
        s.leg_id, s.dialing = uuid.uuid5(m.contact_id, f"leg:{offer.offer_id}"), True
        m._send(
            ev.MediaOriginate(
                **m._stamp(),
                call_id=s.leg_id,
                to=info.endpoint,
                caller_id=r.caller,
                timeout=max(5.0, offer.expires_at - now),
                near_call_id=None if callbacks.awaits_customer(m) else m.caller_call,
            ),
            "dial",
        )


def accepted(m: Lifecycle, event: ev.ContactAccepted, now: float) -> None:
    s, r = m.state, m.state.record
    if s.task is not None:
        voicemail.accepted(m, event, now)
        return
    if m.phase == "queued":
        # The offer's event has not been applied yet (redelivered after this one, by a restarted
        # coordinator): the accept says who was offered. A late offer event then changes nothing.
        s.offer_agent_id = event.agent_id
        adopt_early_leg(m)
        m._transition("offered", now, "accepted_before_offer_seen", agent_id=event.agent_id)
    if m.phase != "offered" or s.accepted:
        return
    s.accepted = True
    r.agent_id = uuid.UUID(event.agent_id)
    m._event("accepted", now, agent_id=event.agent_id)
    if not callbacks.awaits_customer(m):  # the caller in line hears our music: it stops for the agent
        m._send(ev.MediaStop(**m._stamp(), call_id=m.caller_call), "stop_music")
    if s.leg_ready:
        agent_ready(m, now)
    else:
        s.deadline = now + ACCEPT_LEG_TIMEOUT_S


def adopt_early_leg(m: Lifecycle) -> None:
    s = m.state
    leg = s.early_legs.pop(s.offer_agent_id or "", None)
    s.early_legs.clear()
    if leg is not None:
        s.leg_id, s.leg_ready = leg, True


def agent_ready(m: Lifecycle, now: float) -> None:
    """The agent accepted and its audio is up: bridge to the caller, or first dial the customer of an
    agent-first callback (bridged when they answer)."""
    s = m.state
    if s.bridged or s.bridge_command is not None:
        return
    plan = s.callback
    if plan is not None and s.customer_call is None:
        if plan.dialing is None:
            callbacks.dial_customer(m, now, near=s.leg_id)
        return
    m._bridge()


def connected(m: Lifecycle, now: float) -> None:
    s, r = m.state, m.state.record
    if m.phase != "offered":
        return
    s.bridged = True
    s.offer_id = None
    queue_wait.end_flow_wait(m)  # a flow queue's terms (its callback offer, maximum wait) are over
    r.connected_at = now
    r.queue_s = round(now - r.queued_at, 3) if r.queued_at is not None else None
    m._transition("connected", now, "bridged", agent_id=str(r.agent_id))
    if s.record_call:
        m.record_segment(m.caller_call, str(r.agent_id))
    recording = "paused" if s.recording_paused else ("on" if s.recording_started else "off")
    m._desk(str(r.agent_id), "contact_connected", now=now, leg_id=str(s.leg_id), recording=recording)


def signal(m: Lifecycle, event: ev.WebRtcSignal, now: float) -> None:
    s = m.state
    if event.call_id != m.contact_id:
        return
    if event.kind == "state" and event.state == "connected" and m.phase == "queued":
        # Before its offer: a redelivered offer event comes after newer ones (a restarted coordinator).
        s.early_legs[event.agent_id] = event.leg_id
        return
    if s.consult is not None and event.agent_id == s.consult.agent_id:
        consult.signal(m, event, now)
        return
    if event.agent_id != s.offer_agent_id:
        return
    if s.dialing:
        # The agent's audio is its phone: a WebRTC leg its client opened anyway carries nothing.
        if event.kind == "state" and event.state == "connected" and event.leg_id != s.leg_id:
            m._send(
                ev.MediaHangup(**m._stamp(), call_id=event.leg_id, cause="phone_endpoint"),
                "hangup_leg",
            )
        return
    if event.kind == "state" and event.state == "connected" and m.phase == "offered":
        s.leg_id, s.leg_ready = event.leg_id, True
        if s.accepted:
            agent_ready(m, now)
    elif event.kind == "ended" and event.leg_id == s.leg_id:
        if s.consult is not None and consult.first_agent_gone(m, now):
            return  # hanging up mid-consultation transfers the caller
        leg_gone(m, now, "ended")


def leg_gone(m: Lifecycle, now: float, cause: str) -> None:
    s = m.state
    if m.phase == "connected" and cause in PLATFORM_CAUSES:
        # The media worker holding both legs died or stops: the caller is gone too; the agent is freed.
        m._hang_up_caller(cause)
        m._end_connected(now, by="system", cause=cause)
    elif m.phase == "connected" or (m.phase == "offered" and s.accepted):
        # No hangup for the ended leg: no media worker holds it, none answers, and the caller's apology,
        # music and the agent's logout queued behind it for MEDIA_TIMEOUT_S (5 s of silence).
        s.leg_id = None
        if cause == AGENT_DISCONNECTED:
            # Media ends the legs of an agent routing signed out at its grace's end: as routing's
            # `contact.requeued` (either may come first), the agent is signed out already.
            agent_lost(m, now, AGENT_DISCONNECTED, logout=False)
        else:
            agent_lost(m, now, "agent_connection_lost")
    elif m.phase == "offered" and s.dialing:
        phone_missed(m, now, f"phone_{cause}")
    elif m.phase == "offered":
        s.leg_id, s.leg_ready = None, False


def phone_missed(m: Lifecycle, now: float, cause: str) -> None:
    """The agent's phone could not be rung, was busy or declined: the offer goes back at once (routing
    puts the contact back at its place and the agent away, "missed") instead of ringing out."""
    s = m.state
    assert s.offer_agent_id is not None and s.offer_id is not None
    m._event("agent_phone_missed", now, agent_id=s.offer_agent_id, cause=cause)
    m._send(
        ev.RoutingReject(
            **m._stamp(),
            agent_id=uuid.UUID(s.offer_agent_id),
            offer_id=s.offer_id,
            away_reason="missed",
        ),
        "reject",
    )
    s.leg_id, s.leg_ready, s.dialing = None, False, False


def agent_lost(m: Lifecycle, now: float, cause: str, *, logout: bool = True) -> None:
    """The agent's audio is gone mid-call (or never came after accepting): the caller hears a short
    message and goes back in line at its place (a forced logout of the agent requeues at the front)."""
    s, r = m.state, m.state.record
    agent = str(r.agent_id) if r.agent_id else s.offer_agent_id
    if agent is None:
        return
    s.deadline = None
    if s.leg_id is not None:
        m._send(ev.MediaHangup(**m._stamp(), call_id=s.leg_id, cause=cause), "hangup_leg")
    if callbacks.awaits_customer(m):
        plan = s.callback
        assert plan is not None
        if plan.dialing is not None:
            m._send(ev.MediaHangup(**m._stamp(), call_id=plan.dialing, cause=cause), "hangup_customer")
            plan.dialing = None
    else:
        caller = m.caller_call
        m._send(ev.MediaPlay(**m._stamp(), call_id=caller, text=AGENT_LOST_MESSAGE), "sorry")
        m._send(ev.MediaPlay(**m._stamp(), call_id=caller, tone="moh", loop=True), "moh")
    if logout:
        m._send(
            ev.RoutingAgentLogout(**m._stamp(), agent_id=uuid.UUID(agent), force=True),
            "logout",
        )
    m._desk(agent, "contact_ended", cause=cause, by="system", now=now)
    r.agent_id = None
    s.offer_id = s.offer_agent_id = None
    s.leg_id, s.leg_ready, s.accepted, s.bridged, s.bridge_command = None, False, False, False, None
    m._transition("queued", now, cause)
