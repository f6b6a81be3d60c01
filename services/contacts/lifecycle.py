"""The contact's life as one sans-IO state machine: arrived -> in IVR -> queued -> offered -> connected (holds,
transfers) -> wrap-up -> ended, or abandoned (in IVR, in queue, while ringing) or failed.

One `Lifecycle` per contact (the contact's id is its caller's call id). It takes the platform's events
(call.*, ivr.*, contact.* from routing, webrtc.signal), the agents' desk commands and the replies to the
commands it sent, with `now` passed in, and returns what to do: media and routing commands to send, events to
publish (`contact.state_changed`, `desk.push`). Its whole state is one msgspec Struct (`Contact`), saved by
the adapter after every step, so a restarted coordinator resumes every contact where it was. Every input
is idempotent: an event seen before (by id) or a transition already made changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from services.kernel import events as ev
from services.kernel.messages import Command, Event, Stamp

from . import aftercall, agent_leg, callbacks, consult, desk_commands, ivr_step, queue_wait, voicemail
from .agent_leg import ACCEPT_LEG_TIMEOUT_S, AGENT_LOST_MESSAGE
from .callbacks import CallbackInfo, CallbackPlan, DialInfo
from .contact_state import PHASES, ROUTING_EVENTS, TERMINAL, Contact, IllegalTransition, OfferInfo
from .desk_commands import DeskRefused, late_wrap_up
from .queue_wait import CLOSED, Waiting
from .records import PLATFORM_CAUSES, PLATFORM_FAILURE, PLATFORM_RESTART, ContactRecord, TimelineEntry

__all__ = [
    "ACCEPT_LEG_TIMEOUT_S",
    "AGENT_LOST_MESSAGE",
    "PHASES",
    "Contact",
    "DeskRefused",
    "IllegalTransition",
    "Lifecycle",
    "OfferInfo",
    "Waiting",
    "caller_of",
    "late_wrap_up",
]

ANSWER_TIMEOUT_S = 10.0
APOLOGY = "We're sorry, we cannot take your call right now. Please try again later."
REFUSED = "refused"  # outcome of a call media turned away (the cause says why)
UNROUTED = "unrouted"  # outcome of a call to a number with no flow and no queue
SEEN_MAX = 64  # event ids remembered per contact (redeliveries arrive within a few seconds)
# An agent's outbound call is offered to that agent at once (it is available): not by then, it is dropped.
OUTBOUND_OFFER_S = 10.0


def caller_of(from_uri: str) -> tuple[str, str]:
    """(number, display name) from a From header value: '"Ada" <sip:+15550100@host>' -> ('+15550100', 'Ada')."""
    name = ""
    uri = from_uri.strip()
    if "<" in uri:
        name, _, rest = uri.partition("<")
        name = name.strip().strip('"').strip()
        uri = rest.split(">", 1)[0]
    for scheme in ("sips:", "sip:", "tel:"):
        if uri.lower().startswith(scheme):
            uri = uri[len(scheme) :]
            break
    user = uri.split("@", 1)[0].split(";", 1)[0]
    return user, name


class Lifecycle:
    def __init__(self, state: Contact) -> None:
        self.state = state
        self._out: list[Command | Event] = []
        # The step being taken: its commands' ids derive from its input's id, their ts is its `now`, so a
        # step taken again (a redelivered event) sends the same commands (answered from media's and
        # routing's reply caches) and the machine never reads the clock or the random generator.
        self._basis = state.record.id
        self._derive: str | None = None
        self._now = 0.0
        self._made = 0

    def _step(self, basis: uuid.UUID, now: float, derive: str | None = None) -> None:
        """A step whose input is `basis`, or (`derive`) the id uuid5(basis, derive), made only if the step
        sends something: most replies and timers send nothing, and uuid5 was 5 % of the coordinator's CPU."""
        self._basis, self._derive, self._now, self._made = basis, derive, now, 0

    def _stamp(self) -> Stamp:
        """tenant_id, id and ts for a command of this step."""
        if self._derive is not None:
            self._basis, self._derive = uuid.uuid5(self._basis, self._derive), None
        self._made += 1
        return {"tenant_id": self.tenant_id, "id": uuid.uuid5(self._basis, str(self._made)), "ts": self._now}

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def dial(cls, info: DialInfo, now: float) -> Lifecycle:
        """An agent's outbound call: in line for that agent only; once the agent accepts it (its own client
        does, the offer saying `outbound`), the number is dialled next to the agent's leg."""
        record = ContactRecord(
            id=info.contact_id,
            tenant_id=info.tenant_id,
            direction="outbound",
            caller=info.caller_id,
            dialled=info.to,
            queue_id=info.queue_id,
            queue_name=info.queue_name,
            state="arrived",
            arrived_at=now,
        )
        plan = CallbackPlan.outbound(info.to, info.caller_id, info.ring_s)
        machine = cls(Contact(record=record, seen=[str(info.command_id)], callback=plan))
        machine._step(info.command_id, now)
        machine._transition("arrived", now, "dialled", agent_id=str(info.agent_id))
        machine.state.deadline = now + OUTBOUND_OFFER_S
        machine._send(
            ev.RoutingEnqueue(
                **machine._stamp(),
                call_id=info.contact_id,
                queue="",
                queue_id=info.queue_id,
                preferred_agent_id=str(info.agent_id),
                preferred_only=True,
                attributes={"direction": "outbound", "dialled": info.to},
            ),
            "enqueue",
        )
        return machine

    @classmethod
    def arrive(cls, event: ev.CallArrived, now: float, *, waiting: Waiting | None = None) -> Lifecycle | None:
        """A new inbound call; None for anything else. A number routed nowhere still gets its record: media
        plays the unrouted message and hangs up, and the contact ends `unrouted`. `waiting`: a number routed
        straight to a queue, what its callers hear."""
        if event.direction != "inbound":
            return None
        caller, caller_name = caller_of(event.from_uri)
        caller_name = event.from_name or caller_name
        record = ContactRecord(
            id=event.call_id,
            tenant_id=event.tenant_id,
            caller=caller,
            caller_name=caller_name,
            dialled=event.to_e164,
            number_id=event.number_id,
            flow_id=event.flow_id,
            queue_id=event.queue_id,
            state="arrived",
            arrived_at=now,
        )
        machine = cls(Contact(record=record, seen=[str(event.id)]))
        machine._step(event.id, now)
        machine._transition("arrived", now, "call_arrived")
        if event.flow_id is None and event.queue_id is None:
            record.outcome = UNROUTED  # media plays the message and hangs up; call.ended finishes it
            machine._event("unrouted", now, reason="the number has no flow and no queue")
        else:
            # Every routed call is ours to answer: then the number's flow runs (the IVR as a step of the
            # contact), or the caller waits in line (music, once answered).
            machine.state.waiting = waiting if event.flow_id is None else None
            machine.state.deadline = now + ANSWER_TIMEOUT_S
            machine._send(ev.MediaAnswer(**machine._stamp(), call_id=event.call_id), "answer")
        return machine

    @classmethod
    def voicemail_task(cls, event: ev.ContactQueued, now: float) -> Lifecycle:
        """A message a caller left, queued by routing as a task of its own (voicemail.py)."""
        machine = cls(
            Contact(record=voicemail.record_for(event, now), seen=[str(event.id)], task=voicemail.KIND)
        )
        machine._step(event.id, now)
        machine._transition("arrived", now, "voicemail")
        machine._transition("queued", now, "voicemail", queue_id=event.queue)
        return machine

    @classmethod
    def refused(cls, event: ev.CallRefused, now: float) -> Lifecycle:
        """A call media turned away (tenant call limit, capacity...): its record, finished at once."""
        caller, caller_name = caller_of(event.from_uri)
        record = ContactRecord(
            id=event.call_id,
            tenant_id=event.tenant_id,
            caller=caller,
            caller_name=event.from_name or caller_name,
            dialled=event.to_e164,
            number_id=event.number_id,
            state="arrived",
            arrived_at=now,
        )
        machine = cls(Contact(record=record, seen=[str(event.id)]))
        machine._transition("arrived", now, "call_arrived")
        machine._event("refused", now, status=str(event.status))
        machine._finish("failed", now, REFUSED, cause=event.cause)
        return machine

    # -- reading ----------------------------------------------------------------------------------

    @property
    def phase(self) -> ev.ContactPhase:
        return self.state.record.state

    @property
    def contact_id(self) -> uuid.UUID:
        return self.state.record.id

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.state.record.tenant_id

    @property
    def routing_id(self) -> uuid.UUID:
        """The id routing knows this contact by now (changes with an attended transfer)."""
        return self.state.routing_id or self.contact_id

    @property
    def caller_call(self) -> uuid.UUID:
        """The caller's media call: the contact's own, or the customer's call of a callback."""
        return self.state.customer_call or self.contact_id

    @property
    def finished(self) -> bool:
        """Nothing more can happen to it (its record is final)."""
        return self.phase in TERMINAL

    def next_timer(self) -> float | None:
        s = self.state
        consult_deadline = s.consult.deadline if s.consult is not None else None
        times = [
            t
            for t in (s.deadline, s.announce_at, consult_deadline, s.callback_offer_at, s.give_up_at)
            if t is not None
        ]
        return min(times) if times else None

    def take(self) -> list[Command | Event]:
        out, self._out = self._out, []
        return out

    # -- inputs -----------------------------------------------------------------------------------

    def handle(self, event: Event | OfferInfo | CallbackInfo, now: float) -> list[Command | Event]:
        match event:
            case OfferInfo():
                input_id = event.offer.id
            case CallbackInfo():
                input_id = event.request.id
            case _:
                input_id = event.id
        key = str(input_id)
        if key in self.state.seen:
            return []
        self._step(input_id, now)
        self.state.seen = [*self.state.seen[-(SEEN_MAX - 1) :], key]
        routed = event.offer.call_id if isinstance(event, OfferInfo) else getattr(event, "call_id", None)
        if isinstance(event, ROUTING_EVENTS) and routed != self.routing_id:
            # Routing's view of a consultation (or of this contact's id before an attended transfer).
            c = self.state.consult
            if c is not None and routed == c.id:
                if isinstance(event, OfferInfo):
                    consult.offered(self, event, now)
                else:
                    consult.routing_event(self, event, now)
            return self.take()
        match event:
            case ev.CallAnswered():
                self._answered(event, now)
            case ev.CallEnded():
                self._call_ended(event, now)
            case ev.IvrNodeEntered() | ev.IvrNodeExited():
                ivr_step.node(self, event)
            case ev.IvrCompleted():
                ivr_step.completed(self, event, now)
            case ev.ContactQueued():
                queue_wait.queued(self, event, now)
            case ev.ContactPositionChanged():
                self.state.position, self.state.expected_wait_s = event.position, event.expected_wait_s
            case ev.CallPlayFinished():
                queue_wait.play_finished(self, event, now)
            case ev.CallDtmf():
                queue_wait.digit(self, event, now)
            case OfferInfo():
                agent_leg.offered(self, event, now)
            case ev.ContactAccepted():
                agent_leg.accepted(self, event, now)
            case ev.ContactRejected():
                self._rejected(event, now)
            case ev.ContactAbandoned():
                if self.phase == "callback" and event.reason != "callback_unanswered":
                    pass  # our own cancel of an attempt nobody answered: the contact waits for its retry
                elif self.phase == "in_ivr":
                    pass  # our own cancel at a flow queue's maximum wait: the flow goes on in the IVR
                elif event.reason == "callback_unanswered" and self.phase in ("callback", "queued"):
                    self._finish("ended", now, "callback_unanswered", cause=event.reason)
                elif self.phase not in TERMINAL:
                    self._finish("abandoned", now, f"abandoned_{event.reason}", cause=event.reason)
            case CallbackInfo():
                callbacks.requested(self, event, now)
            case ev.RoutingCallbackDue():
                callbacks.due(self, now)
            case ev.IvrSurveyAnswered():
                aftercall.survey_answered(self, event, now)
            case ev.ContactOverflowed():
                self._overflowed(event, now)
            case ev.ContactRequeued():
                # Routing signed the agent out at the end of its grace (its client never came back).
                if event.reason == "disconnected" and (
                    self.phase == "connected" or (self.phase == "offered" and self.state.accepted)
                ):
                    agent_leg.agent_lost(self, now, agent_leg.AGENT_DISCONNECTED, logout=False)
            case ev.ContactEnded():
                pass  # talk time is connected -> ended as this machine saw it (routing counts from accept)
            case ev.ContactWrappedUp():
                self._wrapped(now, "wrap_up_done")
            case ev.WebRtcSignal():
                agent_leg.signal(self, event, now)
        return self.take()

    def replied(self, command_id: uuid.UUID, ok: bool, code: str | None, now: float) -> list[Command | Event]:
        """The reply (or failure) of a command this machine sent."""
        purpose = self.state.pending.pop(str(command_id), None)
        if purpose is None:
            return []
        self._step(command_id, now, "replied")
        s = self.state
        if purpose == "post_call" and not ok:
            # No such flow any more, or no IVR: the caller is not left in silence.
            self._event("post_call_failed", now, code=code or "")
            self._hang_up_caller("post_call_failed")
        elif purpose.startswith("consult"):
            consult.replied(self, purpose, ok, code, now)
        elif purpose == "bridge":
            if ok:
                agent_leg.connected(self, now)
            elif s.accepted and not s.bridged:
                agent_leg.agent_lost(self, now, f"bridge_failed:{code}")
        elif purpose == "dial" and not ok and self.phase == "offered" and not s.accepted:
            agent_leg.phone_missed(self, now, f"dial_failed:{code}")
        elif purpose == "accept" and not ok and self.phase == "offered" and not s.accepted:
            # The offer ended while the phone was answered (it timed out, the caller left): let the phone go.
            if s.leg_id is not None:
                self._send(ev.MediaHangup(**self._stamp(), call_id=s.leg_id), "hangup_leg")
        elif purpose == "transfer":
            move, s.transfer = s.transfer, None
            if ok and move is not None and self.phase == "connected":
                self._transferred(move, now)
        elif purpose == "answer" and ok:
            self._caller_up()
        elif purpose == "flow" and not ok and self.phase == "in_ivr":
            ivr_step.refused(self, code, now)
        elif purpose == "flow_enqueue" and not ok and self.phase == "in_ivr":
            ivr_step.enqueue_refused(self, code, now)
        elif purpose == "recording_notice" and not ok and self.phase == "arrived" and s.notice == "playing":
            s.playing = None
            queue_wait.notice_over(self, now, heard=False)
        elif not ok and purpose == "answer" and self.phase == "arrived":
            self._finish("failed", now, "failed", cause=f"answer_failed:{code}")
        elif not ok and purpose == "enqueue" and self.phase == "arrived" and code == "queue_closed":
            queue_wait.closed(self, now)
        elif (
            purpose == "callback_dial"
            and not ok
            and s.callback is not None
            and s.callback.dialing is not None
        ):
            callbacks.missed(self, now, f"dial_failed:{code}")
        elif (
            purpose in ("callback_enqueue", "callback_offer")
            and not ok
            and self.phase in ("callback", "queued")
        ):
            # Routing refused to put the contact (back) in line: nobody would ever call the customer.
            if purpose == "callback_offer":
                self._send(
                    ev.RoutingCancel(**self._stamp(), call_id=self.routing_id, reason="failed"), "cancel"
                )
            self._finish("failed", now, "callback_failed", cause=f"{purpose}_refused:{code}")
        elif purpose == "closed_flow" and self.phase == "arrived":
            if ok:  # the IVR has the caller now: its events carry the contact on, as for a flow's number
                self._transition("in_ivr", now, "queue_closed")
            else:
                s.waiting = msgspec.structs.replace(s.waiting or Waiting(), closed_flow=None)
                queue_wait.closed(self, now)
        elif not ok and purpose == "enqueue" and self.phase == "arrived":
            self._apologize("no_queue", now, cause=f"enqueue_refused:{code}")
        return self.take()

    def timer(self, now: float) -> list[Command | Event]:
        s = self.state
        if s.consult is not None and s.consult.deadline is not None and now >= s.consult.deadline:
            self._step(self.contact_id, now, f"consult_timer:{now!r}")
            consult.timer(self, now)
            return self.take()
        announce = s.announce_at is not None and now >= s.announce_at
        node_times = [t for t in (s.give_up_at, s.callback_offer_at) if t is not None and now >= t]
        if not announce and not node_times and (s.deadline is None or now < s.deadline):
            return []
        self._step(self.contact_id, now, f"timer:{now!r}")
        if node_times:
            queue_wait.flow_timer(self, now)
        elif announce:
            queue_wait.announce(self, now)
        if s.deadline is None or now < s.deadline:
            return self.take()
        s.deadline = None
        plan = s.callback
        if self.phase == "arrived" and s.notice == "playing":
            s.playing = None
            queue_wait.notice_over(self, now, heard=False)
        elif self.phase == "arrived" and s.record.outcome == CLOSED:
            self._hang_up_caller(CLOSED)
            self._finish("ended", now, CLOSED, cause="queue_closed")
        elif self.phase == "arrived" and plan is None:  # our answer never came (an outbound call has a plan)
            self._hang_up_caller("not_answered")
            self._finish("failed", now, "failed", cause="answer_timeout")
        elif s.bye:  # the goodbye's end never reported: the caller is hung up all the same
            bye, s.bye, s.playing = s.bye, "", None
            self._hang_up_caller(bye)
        elif plan is not None and plan.dialing is not None:
            # The customer's phone rang out.
            self._send(
                ev.MediaHangup(**self._stamp(), call_id=plan.dialing, cause="no_answer"), "hangup_customer"
            )
            callbacks.missed(self, now, "no_answer")
        elif plan is not None and self.phase == "callback" and plan.enqueue_at is not None:
            callbacks.enqueue(self, now)
        elif plan is not None and plan.kind == "outbound" and self.phase in ("arrived", "queued"):
            self._send(ev.RoutingCancel(**self._stamp(), call_id=self.routing_id, reason="failed"), "cancel")
            self._finish("failed", now, "failed", cause="agent_not_available")
        elif s.accepted and not s.bridged:
            agent_leg.agent_lost(self, now, "agent_leg_timeout")
        return self.take()

    # -- supervisor -------------------------------------------------------------------------------

    def monitor_target(self) -> uuid.UUID:
        """The agent's bridged leg a supervisor joins (media's `monitor` target); raises DeskRefused."""
        s = self.state
        if self.phase != "connected":
            raise DeskRefused("state", f"the contact is {self.phase}, not connected to an agent")
        if s.leg_id is None or not s.bridged:
            raise DeskRefused("state", "the agent's audio is not connected yet")
        return s.leg_id

    def monitor_notice(self, agent_id: str, previous: str, mode: str, now: float) -> None:
        """Tell the agent's desk a supervisor's mode changed (the tenant's policy said so)."""
        self._event("monitor_notice", now, mode=mode)
        self._desk(agent_id, "monitor_notice", now=now, mode=mode, previous=previous)

    # -- desk commands ----------------------------------------------------------------------------

    def desk(self, cmd: ev.DeskCommand, now: float, *, queue_id: uuid.UUID | None = None) -> dict[str, Any]:
        """An agent's command; raises DeskRefused. `queue_id` is a transfer's target, resolved by the adapter."""
        try:
            return desk_commands.command(self, cmd, now, queue_id)
        except consult.Refused as exc:
            raise DeskRefused(exc.code, exc.reason) from None

    # -- transitions ------------------------------------------------------------------------------

    def _answered(self, event: ev.CallAnswered, now: float) -> None:
        s = self.state
        if event.call_id == s.leg_id and s.dialing and self.phase == "offered" and not s.leg_ready:
            # The phone's own 200 OK is the agent's answer (an accept from a desk meanwhile waits for it).
            s.leg_ready = True
            assert s.offer_agent_id is not None and s.offer_id is not None
            self._event("agent_phone_answered", now, agent_id=s.offer_agent_id)
            if s.accepted:
                agent_leg.agent_ready(self, now)
                return
            self._send(
                ev.RoutingAccept(**self._stamp(), agent_id=uuid.UUID(s.offer_agent_id), offer_id=s.offer_id),
                "accept",
            )
            return
        if s.callback is not None and event.call_id == s.callback.dialing:
            callbacks.customer_answered(self, event.call_id, now)
        elif event.call_id == self.contact_id:
            self._caller_up()

    def _caller_up(self) -> None:
        """The caller we answered is up (`call.answered`, or the answer's reply, whichever comes first): the
        number's flow runs, or the caller waits in line. Once."""
        if self.state.record.flow_id is None:
            queue_wait.wait_in_queue(self)
        else:
            ivr_step.run_flow(self)

    def resume(self, now: float) -> list[Command | Event]:
        """Taken up again by a restarted coordinator (or another that took its partition over)."""
        self._step(self.contact_id, now, f"resume:{now!r}")
        queue_wait.resume(self)
        return self.take()

    def _transferred(self, move: dict[str, str], now: float) -> None:
        """Routing took the blind transfer: the agent's part ends, the caller hears music until the next."""
        s, r = self.state, self.state.record
        self._release_agent_media()
        self._send(ev.MediaPlay(**self._stamp(), call_id=self.caller_call, tone="moh", loop=True), "moh")
        r.transfers.append(move)
        s.note, s.note_from = move.get("note", ""), move["from_agent_id"]
        self._desk(move["from_agent_id"], "contact_ended", cause="transferred", by="agent", now=now)
        self._event("transferred", now, **{k: v for k, v in move.items() if k != "at"})
        r.agent_id = None
        self._transition("queued", now, "transferred")

    def context(self, now: float, info: OfferInfo) -> dict[str, Any]:
        s, r = self.state, self.state.record
        a = r.attributes
        ivr = None
        if r.flow_id is not None or "ivr.flow" in a:
            ivr = {"flow": a.get("ivr.flow", ""), "path": list(r.ivr_path), "digits": r.ivr_digits}
        context: dict[str, Any] = {
            "caller": {"number": r.caller, "name": r.caller_name},
            "dialled": r.dialled,
            "queue": {"id": str(r.queue_id) if r.queue_id else "", "name": r.queue_name},
            "attributes": dict(a),
            "ivr": ivr,
            "waited": {
                "ivr_s": r.ivr_s or 0.0,
                "queue_s": round(now - r.queued_at, 3) if r.queued_at is not None else 0.0,
            },
            "history": {"today": info.history_today, "last": list(info.history_last)},
        }
        if s.note or s.note_from:
            context["transfer"] = {"from_agent_id": s.note_from, "note": s.note}
        if s.callback is not None and s.callback.kind == "outbound":
            context["outbound"] = {"to": s.callback.number, "caller_id": s.callback.caller_id}
            context["caller"] = {"number": s.callback.number, "name": ""}  # whom the agent talks to
        elif s.callback is not None:
            plan = s.callback
            attempt = plan.attempts if s.customer_call is not None else plan.attempts + 1
            context["callback"] = {"number": plan.number, "attempt": attempt, "of": plan.max_attempts}
        return context

    def _bridge(self) -> None:
        s = self.state
        assert s.leg_id is not None
        command = ev.MediaBridge(**self._stamp(), call_id=self.caller_call, other_call_id=s.leg_id)
        s.bridge_command = command.id
        s.deadline = None
        self._send(command, "bridge")

    def record_segment(
        self, on: uuid.UUID, agent_id: str, *, kind: Literal["talk", "consult"] = "talk", consulted: str = ""
    ) -> None:
        """Record the bridge `on` is in as the conversation's next segment: every agent the caller talks to
        (a blind or attended transfer's next one, the first one back after a cancelled consultation) and
        every consultation between agents, in order, under the one contact. Segment 0 keeps the contact's
        id as its recording id, so a call never transferred is recorded as before."""
        s = self.state
        n = s.segments
        s.segments += 1
        s.recording_started, s.recording_paused = True, False
        self._send(
            ev.MediaRecordStart(
                **self._stamp(),
                call_id=on,
                recording_id=self.contact_id if n == 0 else uuid.uuid5(self.contact_id, f"segment:{n}"),
                contact_id=self.contact_id,
                segment=n,
                kind=kind,
                agent_id=agent_id,
                consulted_agent_id=consulted,
            ),
            "record",
        )

    def _rejected(self, event: ev.ContactRejected, now: float) -> None:
        s = self.state
        if event.offer_id != s.offer_id or self.phase != "offered" or s.accepted:
            return
        reason = {"withdrawn": "caller_hung_up"}.get(event.reason, event.reason)
        self._desk(event.agent_id, "contact_withdrawn", now=now, offer_id=event.offer_id, reason=reason)
        if s.leg_id is not None:
            self._send(
                ev.MediaHangup(**self._stamp(), call_id=s.leg_id, cause="offer_withdrawn"),
                "hangup_leg",
            )
        s.offer_id = s.offer_agent_id = None
        s.leg_id, s.leg_ready = None, False
        self._event("offer_" + event.reason, now, agent_id=event.agent_id)
        if s.callback is not None and s.callback.kind == "outbound":
            # The agent turned down (or let ring out) its own call: nobody else takes it.
            self._send(
                ev.RoutingCancel(**self._stamp(), call_id=self.routing_id, reason="cancelled"), "cancel"
            )
            self._finish("ended", now, "cancelled", cause=event.reason)
        elif event.reason != "withdrawn":
            self._transition("queued", now, event.reason)

    def _overflowed(self, event: ev.ContactOverflowed, now: float) -> None:
        r = self.state.record
        try:
            r.queue_id = uuid.UUID(event.to_queue_id)
        except ValueError:
            return
        r.queue_name = ""
        self._event(event.kind, now, from_queue_id=event.from_queue_id, to_queue_id=event.to_queue_id)

    def _call_ended(self, event: ev.CallEnded, now: float) -> None:
        s, r = self.state, self.state.record
        if event.call_id != self.caller_call:
            if s.consult is not None and event.call_id == s.consult.leg_id:
                consult.leg_gone(self, now)
            elif event.call_id == s.leg_id:
                if s.consult is not None and consult.first_agent_gone(self, now):
                    return  # hanging up mid-consultation transfers the caller
                agent_leg.leg_gone(self, now, event.cause)
            elif s.callback is not None and event.call_id == s.callback.dialing:
                callbacks.missed(self, now, event.cause)
            return
        phase = self.phase
        if s.callback is not None and s.customer_call is None and phase in ("in_ivr", "queued"):
            # The caller hangs up once the call back is agreed: the contact waits without them.
            queue_wait.end_flow_wait(self)
            s.bye = ""
            self._transition("callback", now, "callback_requested")
            s.deadline = s.callback.enqueue_at
            if s.callback_due:
                callbacks.due(self, now)
            return
        if s.consult is not None:
            consult.caller_gone(self, now)
        s.deadline = None
        r.cause = r.cause or event.cause
        if phase == "wrap_up" and s.post_call is not None:
            aftercall.post_call_over(self, now)
            return
        if phase in TERMINAL or phase == "wrap_up":
            return
        if phase == "arrived" and r.outcome in (UNROUTED, CLOSED):
            self._finish("ended", now, r.outcome, cause=event.cause)
        elif event.cause in PLATFORM_CAUSES and phase != "connected" and not s.accepted:
            self._platform_lost(now, event.cause)
        elif phase in ("arrived", "in_ivr"):
            if s.flow_wait is not None:
                # Handed back by the flow and sent to routing, not yet in line: routing lets it go.
                self._send(ev.RoutingCancel(**self._stamp(), call_id=self.routing_id), "cancel")
            outcome = r.outcome if phase == "in_ivr" else None
            if outcome in ("self_served", "transferred"):
                self._finish("ended", now, outcome, cause=event.cause)
            elif outcome == "failed":
                self._finish("failed", now, "failed", cause=event.cause)
            else:
                self._finish(
                    "abandoned", now, f"abandoned_in_{'ivr' if phase == 'in_ivr' else 'arrival'}", event.cause
                )
        elif phase == "queued" or (phase == "offered" and not s.accepted):
            ringing = phase == "offered"
            self._send(ev.RoutingCancel(**self._stamp(), call_id=self.routing_id), "cancel")
            if ringing:
                assert s.offer_agent_id is not None and s.offer_id is not None
                self._desk(
                    s.offer_agent_id,
                    "contact_withdrawn",
                    now=now,
                    offer_id=s.offer_id,
                    reason="caller_hung_up",
                )
                if s.leg_id is not None:
                    self._send(ev.MediaHangup(**self._stamp(), call_id=s.leg_id), "hangup_leg")
            self._finish(
                "abandoned", now, "abandoned_ringing" if ringing else "abandoned_in_queue", event.cause
            )
        else:  # connected, or accepted and waiting for the agent's leg
            self._end_connected(
                now, by="system" if event.cause in PLATFORM_CAUSES else "caller", cause=event.cause
            )

    def platform_lost(self, at: float, cause: str = PLATFORM_RESTART) -> list[Command | Event]:
        """The call is gone with the platform (a crash, a restart): the record ends at `at`, the last moment
        it was known alive, with outcome platform_failure; routing and the agent let it go."""
        self._step(self.contact_id, at, f"platform_lost:{at!r}")
        self._platform_lost(at, cause)
        return self.take()

    def _platform_lost(self, at: float, cause: str) -> None:
        s = self.state
        phase = self.phase
        if phase in TERMINAL or phase == "wrap_up":
            return
        if phase == "callback" and (s.callback is None or s.callback.dialing is None):
            return  # nobody is on a call: the call back is still to be made
        s.deadline = None
        if phase == "connected" or s.accepted:
            self._end_connected(at, by="system", cause=cause)
            return
        if phase in ("queued", "offered"):
            self._send(ev.RoutingCancel(**self._stamp(), call_id=self.routing_id), "cancel")
            if phase == "offered" and s.offer_agent_id is not None and s.offer_id is not None:
                self._desk(s.offer_agent_id, "contact_withdrawn", now=at, offer_id=s.offer_id, reason=cause)
                if s.leg_id is not None:
                    self._send(ev.MediaHangup(**self._stamp(), call_id=s.leg_id), "hangup_leg")
        self._finish("failed", at, PLATFORM_FAILURE, cause=cause)

    def _end_connected(self, now: float, *, by: str, cause: str) -> None:
        s, r = self.state, self.state.record
        agent = str(r.agent_id)
        self._release_agent_media()
        self._send(ev.RoutingEnd(**self._stamp(), call_id=self.routing_id), "end")
        duration = round(now - r.connected_at, 3) if r.connected_at is not None else 0.0
        r.talk_s = duration
        r.ended_at = now
        if cause in PLATFORM_CAUSES:
            r.outcome = PLATFORM_FAILURE
        else:
            r.outcome = "handled" if r.connected_at is not None else "failed"
        r.cause = cause
        s.deadline = None
        self._desk(agent, "contact_ended", now=now, cause=cause, by=by, duration=duration)
        self._transition(
            "wrap_up", now, f"{by}_hung_up" if cause in ("remote_bye", "agent_hangup") else cause
        )

    def _release_agent_media(self) -> None:
        s = self.state
        if s.leg_id is not None:
            self._send(ev.MediaHangup(**self._stamp(), call_id=s.leg_id), "hangup_leg")
        s.leg_id, s.leg_ready, s.bridged, s.accepted, s.bridge_command = None, False, False, False, None
        s.held = s.muted = False

    def _apologize(self, hangup: str, now: float, *, cause: str) -> None:
        """Nobody can take the caller (no flow, no queue): an apology, never silence, then failed."""
        self._send(ev.MediaPlay(**self._stamp(), call_id=self.caller_call, text=APOLOGY), "apology")
        self._hang_up_caller(hangup)
        self._finish("failed", now, "failed", cause=cause)

    def _hang_up_caller(self, cause: str) -> None:
        self._send(ev.MediaHangup(**self._stamp(), call_id=self.caller_call, cause=cause), "hangup")

    def _wrapped(self, now: float, cause: str) -> None:
        s, r = self.state, self.state.record
        if self.phase != "wrap_up":
            return
        r.wrapped_at = now
        if s.post_call is not None:
            s.wrapped_early = True  # the record stays open until the caller leaves the post-call flow
            return
        self._finish("ended", now, r.outcome or "handled", cause=r.cause or cause)

    def _finish(self, phase: ev.ContactPhase, now: float, outcome: str, cause: str | None = None) -> None:
        r = self.state.record
        r.outcome = outcome
        if cause:
            r.cause = r.cause or cause
        if r.ended_at is None:
            r.ended_at = now
        self.state.announce_at = None
        queue_wait.end_flow_wait(self)
        if r.queued_at is not None and r.queue_s is None and r.connected_at is None:
            r.queue_s = round(now - r.queued_at, 3)
        if phase == "abandoned" and r.flow_id is not None and r.ivr_s is None and r.queued_at is None:
            r.ivr_s = round(now - r.arrived_at, 3)
        self.state.deadline = None
        self._transition(phase, now, outcome)

    # -- outputs ----------------------------------------------------------------------------------

    def _transition(self, new: ev.ContactPhase, now: float, cause: str, **detail: str) -> None:
        r = self.state.record
        old = None if not r.timeline else r.state
        if old == new:
            return
        if new not in PHASES[old]:
            raise IllegalTransition(
                f"contact {self.contact_id}: {old} -> {new} ({cause}) is not a move it can make"
            )
        r.state = new
        self._event(new, now, cause=cause, **detail)
        s = self.state
        if new == "queued" and s.waiting and s.waiting.announce_every and s.announce_at is None:
            s.announce_at = now + s.waiting.announce_every
        agent = detail.get("agent_id") or (str(r.agent_id) if r.agent_id else None)
        self._out.append(
            ev.ContactStateChanged(
                tenant_id=self.tenant_id,
                id=uuid.uuid5(self.contact_id, f"{len(r.timeline)}:{new}"),
                call_id=self.contact_id,
                old=old,
                new=new,
                cause=cause,
                agent_id=agent,
                queue_id=str(r.queue_id) if r.queue_id else None,
                ts=now,
            )
        )

    def _event(self, name: str, now: float, **detail: str) -> None:
        self.state.record.timeline.append(
            TimelineEntry(at=now, event=name, detail={k: str(v) for k, v in detail.items()})
        )

    def _desk(self, agent_id: str, kind: ev.DeskPushKind, *, now: float, **body: Any) -> None:
        r = self.state.record
        self._out.append(
            ev.DeskPush(
                tenant_id=self.tenant_id,
                id=uuid.uuid5(self.contact_id, f"desk:{len(r.timeline)}:{kind}:{agent_id}"),
                agent_id=agent_id,
                kind=kind,
                body={"contact_id": self.state.desk_ids.get(agent_id, str(self.contact_id)), **body},
                ts=now,
            )
        )

    def _send(self, command: Command, purpose: str) -> None:
        self.state.pending[str(command.id)] = purpose
        self._out.append(command)
