"""Callbacks in the contact lifecycle (services/contacts/lifecycle.py, callbacks.py): the caller leaves and the
contact waits; routing says it is due; agent first (offer, accept, dial the customer next to the agent's leg,
bridge) or customer first (dial, greet, then the next agent); attempts nobody answers, retried after the
tenant's gap, and the final outcome; a time the caller chose. Pure: time passed in, no I/O."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from services.contacts.callbacks import CallbackInfo, CallingSettings, DialInfo, attempt_call_id
from services.contacts.lifecycle import PHASES, Contact, IllegalTransition, Lifecycle
from services.ivr.nodes.callback import next_time
from services.kernel import events as ev
from tests.unit.contacts.test_lifecycle import (
    AGENT,
    CALL,
    LEG,
    QUEUE,
    T,
    ack_all,
    command,
    connected_signal,
    in_flow,
    kinds,
    offer,
    to_queue,
    transitions,
)

pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")

NUMBER = "+15550100"


def requested(*, at: float | None = None) -> ev.IvrCallbackRequested:
    return ev.IvrCallbackRequested(
        tenant_id=T, call_id=CALL, queue="Support", number=NUMBER, at=at, id=uuid.uuid4(), ts=1.0
    )


def due() -> ev.RoutingCallbackDue:
    return ev.RoutingCallbackDue(
        tenant_id=T, call_id=CALL, queue_id=str(QUEUE), expires_at=2000.0, id=uuid.uuid4()
    )


def ended(call: uuid.UUID, cause: str = "remote_bye") -> ev.CallEnded:
    return ev.CallEnded(tenant_id=T, call_id=call, cause=cause, duration=0.0, id=uuid.uuid4())


def waiting(
    settings: CallingSettings | None = None, *, at: float | None = None, queued: bool = True
) -> Lifecycle:
    """A caller of a flow who asked for a call back and hung up."""
    m = in_flow()
    if queued:
        m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), id=uuid.uuid4()), 1002.0)
    info = CallbackInfo(request=requested(at=at), settings=settings or CallingSettings())
    out = m.handle(info, 1003.0)
    assert out == [] and m.state.callback is not None
    out = m.handle(ended(CALL), 1005.0)
    assert transitions(out) == ["callback"] and not any(isinstance(o, ev.RoutingCancel) for o in out)
    return m


def test_agent_first_offers_then_dials_next_to_the_agent_and_bridges() -> None:
    m = waiting()
    out = m.handle(due(), 1010.0)
    assert transitions(out) == ["queued"]
    assert command(out, ev.RoutingSetVirtualHold).on is False
    ack_all(m, out, 1010.0)
    out = m.handle(offer(), 1011.0)
    push = command(out, ev.DeskPush)
    assert push.body["call_id"] is None  # the leg is made before the customer's call exists
    assert push.body["context"]["callback"] == {"number": NUMBER, "attempt": 1, "of": 3}
    m.handle(connected_signal(), 1011.2)
    out = m.handle(
        ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT), id=uuid.uuid4()), 1012.0
    )
    dial = command(out, ev.MediaOriginate)
    assert dial.to == NUMBER and dial.near_call_id == LEG and dial.caller_id == "+15550123"
    assert dial.call_id == attempt_call_id(CALL, 1) and not any(isinstance(o, ev.MediaBridge) for o in out)
    out = m.handle(ev.CallAnswered(tenant_id=T, call_id=dial.call_id, id=uuid.uuid4()), 1014.0)
    bridge = command(out, ev.MediaBridge)  # the customer's call with the agent's leg
    assert bridge.call_id == dial.call_id and bridge.other_call_id == LEG and m.caller_call == dial.call_id
    out = m.replied(bridge.id, True, None, 1014.1)
    assert transitions(out) == ["connected"]
    out = m.handle(ended(dial.call_id), 1030.0)
    assert transitions(out) == ["wrap_up"] and m.state.record.talk_s == pytest.approx(15.9)
    assert m.state.record.attributes["callback.attempts"] == "1"


def test_customer_first_retries_after_the_gap_and_fails_when_spent() -> None:
    settings = CallingSettings(
        callback_mode="customer_first", callback_attempts=2, callback_retry_seconds=60.0
    )
    m = waiting(settings)
    out = m.handle(due(), 1010.0)
    first = command(out, ev.MediaOriginate)
    assert first.near_call_id is None and m.phase == "callback"
    out = m.handle(ended(first.call_id, "rejected"), 1012.0)
    assert command(out, ev.RoutingCancel).reason == "callback_not_answered"
    assert m.phase == "callback" and m.next_timer() == pytest.approx(1072.0)
    # A cancel of ours is no abandonment.
    m.handle(
        ev.ContactAbandoned(
            tenant_id=T,
            call_id=CALL,
            reason="callback_not_answered",
            queue_id=str(QUEUE),
            waited_s=1.0,
            id=uuid.uuid4(),
        ),
        1012.1,
    )
    assert m.phase == "callback"
    out = m.timer(1072.0)
    again = command(out, ev.RoutingCallback)
    assert again.number == NUMBER and again.queue_id == QUEUE and again.queue == "Support"
    out = m.handle(due(), 1080.0)
    second = command(out, ev.MediaOriginate)
    assert second.call_id == attempt_call_id(CALL, 2)
    out = m.timer(1080.0 + 30.0 + 2.0)  # it rang out
    assert command(out, ev.MediaHangup).call_id == second.call_id
    r = m.state.record
    assert m.phase == "ended" and r.outcome == "callback_failed" and r.cause == "no_answer"
    assert [e.detail["attempt"] for e in r.timeline if e.event == "callback_not_answered"] == ["1", "2"]


def test_customer_first_answer_greets_then_waits_at_the_front() -> None:
    m = waiting(CallingSettings(callback_mode="customer_first"))
    dial = command(m.handle(due(), 1010.0), ev.MediaOriginate)
    out = m.handle(ev.CallAnswered(tenant_id=T, call_id=dial.call_id, id=uuid.uuid4()), 1015.0)
    assert transitions(out) == ["queued"] and kinds(out) == [
        "MediaPlay",
        "MediaPlay",
        "RoutingSetVirtualHold",
    ]
    assert all(o.call_id == dial.call_id for o in out if isinstance(o, ev.MediaPlay))
    out = m.handle(offer(), 1016.0)
    assert command(out, ev.DeskPush).body["call_id"] == str(dial.call_id)


def test_due_while_the_caller_still_listens_is_acted_on_at_the_hang_up() -> None:
    m = in_flow()
    m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), id=uuid.uuid4()), 1002.0)
    assert m.handle(due(), 1002.5) == []  # before the request itself (routing was quicker)
    m.handle(
        CallbackInfo(request=requested(), settings=CallingSettings(callback_mode="customer_first")), 1003.0
    )
    out = m.handle(ended(CALL), 1005.0)
    assert transitions(out) == ["callback"] and command(out, ev.MediaOriginate).to == NUMBER


def test_a_chosen_time_puts_the_contact_in_line_then() -> None:
    m = waiting(at=5000.0, queued=False)
    assert m.next_timer() == 5000.0 and m.timer(4999.0) == []
    out = m.timer(5000.0)
    assert command(out, ev.RoutingCallback).number == NUMBER


def test_routing_giving_up_on_a_due_callback_is_its_final_outcome() -> None:
    m = waiting(CallingSettings(callback_mode="customer_first"))
    m.handle(
        ev.ContactAbandoned(
            tenant_id=T,
            call_id=CALL,
            reason="callback_unanswered",
            queue_id=str(QUEUE),
            waited_s=1.0,
            id=uuid.uuid4(),
        ),
        1400.0,
    )
    assert m.phase == "ended" and m.state.record.outcome == "callback_unanswered"


def test_the_phase_table_refuses_moves_it_does_not_list() -> None:
    assert "callback" in PHASES["queued"] and "callback" not in PHASES["connected"]
    m = waiting()
    with pytest.raises(IllegalTransition):
        m._transition("wrap_up", 1006.0, "nonsense")


def test_saved_and_restored_state_keeps_the_plan() -> None:
    m = waiting(CallingSettings(callback_mode="customer_first"))
    m.handle(due(), 1010.0)
    again = Lifecycle(msgspec.json.decode(msgspec.json.encode(m.state), type=Contact))
    assert again.state.callback == m.state.callback and again.state.callback.dialing is not None


def test_next_time_is_the_next_such_time_in_the_flows_zone() -> None:
    # 2026-12-07 12:00 UTC is 07:00 in New York.
    noon = 1796644800.0
    assert next_time("0930", noon, "America/New_York") == noon + 2.5 * 3600
    assert next_time("0600", noon, "America/New_York") == noon + 23 * 3600  # tomorrow
    assert next_time("2460", noon, None) is None and next_time("930", noon, None) is None


def dial_info() -> DialInfo:
    return DialInfo(
        contact_id=CALL,
        tenant_id=T,
        command_id=uuid.uuid4(),
        agent_id=AGENT,
        to=NUMBER,
        caller_id="+15550123",
        queue_id=QUEUE,
        queue_name="Support",
    )


def test_outbound_is_offered_to_its_agent_only_then_dialled_and_recorded_outbound() -> None:
    m = Lifecycle.dial(dial_info(), 1000.0)
    out = m.take()
    enqueue = command(out, ev.RoutingEnqueue)
    assert enqueue.preferred_agent_id == str(AGENT) and enqueue.preferred_only and enqueue.queue_id == QUEUE
    assert m.state.record.direction == "outbound" and m.phase == "arrived"
    m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), id=uuid.uuid4()), 1000.1)
    out = m.handle(offer(), 1000.2)
    push = command(out, ev.DeskPush)
    assert push.body["outbound"] is True and push.body["call_id"] is None
    assert push.body["context"]["outbound"] == {"to": NUMBER, "caller_id": "+15550123"}
    assert m.next_timer() is None  # offered in time
    m.handle(connected_signal(), 1000.3)
    out = m.handle(
        ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT), id=uuid.uuid4()), 1000.4
    )
    dial = command(out, ev.MediaOriginate)
    assert (dial.to, dial.caller_id, dial.near_call_id) == (NUMBER, "+15550123", LEG)
    out = m.handle(ended(dial.call_id, "rejected"), 1003.0)
    assert command(out, ev.RoutingEnd) and command(out, ev.RoutingWrapUpDone)
    assert command(out, ev.DeskPush).body["cause"] == "not_answered"
    assert (
        m.phase == "ended" and m.state.record.outcome == "not_answered" and m.state.record.cause == "rejected"
    )


def test_outbound_not_offered_in_time_or_turned_down_ends_it() -> None:
    m = Lifecycle.dial(dial_info(), 1000.0)
    m.take()
    out = m.timer(1000.0 + 10.0)
    assert (
        command(out, ev.RoutingCancel)
        and m.phase == "failed"
        and m.state.record.cause == "agent_not_available"
    )
    m = Lifecycle.dial(dial_info(), 1000.0)
    m.take()
    m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), id=uuid.uuid4()), 1000.1)
    m.handle(offer(), 1000.2)
    rejected = ev.ContactRejected(
        tenant_id=T,
        call_id=CALL,
        agent_id=str(AGENT),
        offer_id=f"{CALL}#0",
        queue_id=str(QUEUE),
        reason="rejected",
        id=uuid.uuid4(),
    )
    out = m.handle(rejected, 1001.0)
    assert command(out, ev.RoutingCancel) and m.phase == "ended" and m.state.record.outcome == "cancelled"


# -- after the agent (a post-call flow) ------------------------------------------------------------------


def connected_with_survey(survey: str | None) -> Lifecycle:
    m = to_queue()
    out = m.handle(msgspec.structs.replace(offer(), survey_flow=survey), 1001.0)
    m.handle(connected_signal(), 1001.2)
    out = m.handle(
        ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT), id=uuid.uuid4()), 1001.5
    )
    ack_all(m, out, 1001.6)
    assert m.phase == "connected"
    return m


def test_queue_survey_keeps_the_caller_and_the_record_open_for_the_answers() -> None:
    m = connected_with_survey("csat")
    data = m.desk(ev.DeskHangup(tenant_id=T, agent_id=AGENT, contact_id=CALL, id=uuid.uuid4()), 1010.0)
    out = m.take()
    assert data == {"post_call_flow": "csat"} and m.phase == "wrap_up"
    run = command(out, ev.IvrRun)
    assert run.call_id == CALL and run.flow == "csat" and run.caller == "+15550100"
    assert not [o for o in out if isinstance(o, ev.MediaHangup) and o.call_id == CALL]  # the caller stays
    # The agent wraps up before the caller answers: the record waits for the caller.
    m.desk(
        ev.DeskWrapUp(tenant_id=T, agent_id=AGENT, contact_id=CALL, disposition="ok", id=uuid.uuid4()), 1011.0
    )
    assert m.phase == "wrap_up" and m.state.wrapped_early
    answered = ev.IvrSurveyAnswered(
        tenant_id=T, call_id=CALL, flow="csat", version=1, node="ask", question="rating", score=5, min=1, max=5,
        id=uuid.uuid4(),
    )  # fmt: skip
    m.handle(answered, 1015.0)
    m.handle(ended(CALL), 1017.0)
    r = m.state.record
    assert m.phase == "ended" and r.outcome == "handled" and r.attributes["survey.rating"] == "5"
    events = [e.event for e in r.timeline]
    assert (
        r.disposition == "ok"
        and events.index("post_call_flow") < events.index("survey_answered") < len(events) - 1
    )


def test_agent_transfer_to_a_flow_and_a_flow_that_cannot_run() -> None:
    m = connected_with_survey(None)
    m.desk(
        ev.DeskTransfer(tenant_id=T, agent_id=AGENT, contact_id=CALL, flow="csat", id=uuid.uuid4()), 1010.0
    )
    out = m.take()
    run = command(out, ev.IvrRun)
    assert run.flow == "csat" and m.state.record.transfers[-1]["to_flow"] == "csat"
    # The IVR cannot run it: the caller is not left in silence.
    out = m.replied(run.id, False, "unknown_flow", 1010.5)
    assert command(out, ev.MediaHangup).call_id == CALL
    m.handle(ended(CALL), 1011.0)
    assert m.phase == "wrap_up" and m.state.post_call is None  # the agent's wrap-up still ends it
    m.desk(
        ev.DeskWrapUp(tenant_id=T, agent_id=AGENT, contact_id=CALL, disposition="ok", id=uuid.uuid4()), 1012.0
    )
    assert m.phase == "ended"


def test_without_a_survey_the_agent_hanging_up_hangs_up_the_caller() -> None:
    m = connected_with_survey(None)
    m.desk(ev.DeskHangup(tenant_id=T, agent_id=AGENT, contact_id=CALL, id=uuid.uuid4()), 1010.0)
    out = m.take()
    assert not any(isinstance(o, ev.IvrRun) for o in out)
    assert [o for o in out if isinstance(o, ev.MediaHangup) and o.call_id == CALL]
