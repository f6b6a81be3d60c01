"""The contact lifecycle core (services/contacts/lifecycle.py): transitions, the commands it sends, the desk
pushes, idempotency and resuming from its saved state. Pure: no NATS, no database, time passed in."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from services.contacts.lifecycle import (
    ACCEPT_LEG_TIMEOUT_S,
    AGENT_LOST_MESSAGE,
    Contact,
    DeskRefused,
    Lifecycle,
    OfferInfo,
    Waiting,
    caller_of,
    late_wrap_up,
)
from services.kernel import events as ev

# The machine takes `now` and derives its commands' ids from its inputs: reading the clock or the id
# generator raises (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")

T = uuid.uuid4()
CALL = uuid.uuid4()
QUEUE = uuid.uuid4()
AGENT = uuid.uuid4()
LEG = uuid.uuid4()


def arrived(*, flow: bool = False) -> ev.CallArrived:
    return ev.CallArrived(
        tenant_id=T,
        call_id=CALL,
        from_uri='"Ada Lovelace" <sip:+15550100@127.0.0.1>;tag=1',
        to_e164="+15550123",
        number_id=uuid.uuid4(),
        flow_id=uuid.uuid4() if flow else None,
        queue_id=None if flow else QUEUE,
    )


def kinds(out: list) -> list[str]:
    return [
        f"{type(o).__name__}:{o.kind}" if isinstance(o, ev.DeskPush) else type(o).__name__
        for o in out
        if not isinstance(o, ev.ContactStateChanged)
    ]


def transitions(out: list) -> list[str]:
    return [o.new for o in out if isinstance(o, ev.ContactStateChanged)]


def command(out: list, kind: type) -> object:
    found = [o for o in out if isinstance(o, kind)]
    assert len(found) == 1, (kind, out)
    return found[0]


def ack_all(m: Lifecycle, out: list, now: float) -> list:
    """Reply ok to every command in `out` (as the adapter does), returning what follows."""
    more: list = []
    for o in out:
        if not isinstance(o, ev.ContactStateChanged | ev.DeskPush):
            more += m.replied(o.id, True, None, now)
    return more


def offer(n: int = 0, agent: uuid.UUID = AGENT) -> OfferInfo:
    return OfferInfo(
        offer=ev.ContactOffered(
            tenant_id=T,
            call_id=CALL,
            queue_id=str(QUEUE),
            agent_id=str(agent),
            offer_id=f"{CALL}#{n}",
            expires_at=1030.0,
        ),
        queue_name="Support",
        history_today=2,
        history_last=[{"contact_id": "x", "outcome": "handled"}],
    )


def connected_signal(leg: uuid.UUID = LEG, agent: uuid.UUID = AGENT) -> ev.WebRtcSignal:
    return ev.WebRtcSignal(
        tenant_id=T, agent_id=str(agent), leg_id=leg, kind="state", state="connected", call_id=CALL
    )


def to_queue(m: Lifecycle | None = None) -> Lifecycle:
    m = m or Lifecycle.arrive(arrived(), 1000.0)
    assert m is not None
    answered = m.take()
    # Answered (the reply, or call.answered, whichever comes first): music and in line, once.
    out = (
        ack_all(m, answered, 1000.0)
        if answered
        else m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.1)
    )
    assert kinds(out) == ["MediaPlay", "RoutingEnqueue"]
    assert command(out, ev.RoutingEnqueue).queue_id == QUEUE
    assert m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.1) == []
    ack_all(m, out, 1000.1)
    out = m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), position=1), 1000.2)
    assert transitions(out) == ["queued"]
    return m


def in_flow() -> Lifecycle:
    """A caller on a number with a flow: the coordinator answers, then the number's flow runs in the IVR
    (`ivr.run` by the flow's id) and the contact is `in_ivr`. Once, whichever of the answer's reply and
    call.answered comes first."""
    m = Lifecycle.arrive(arrived(flow=True), 1000.0)
    assert m is not None and m.phase == "arrived"  # the coordinator talks to the caller: it answers
    out = m.take()
    assert transitions(out) == ["arrived"] and kinds(out) == ["MediaAnswer"]
    out = ack_all(m, out, 1000.1)
    assert transitions(out) == ["in_ivr"] and kinds(out) == ["IvrRun"]
    run = command(out, ev.IvrRun)
    assert (run.call_id, run.flow_id, run.flow) == (CALL, m.state.record.flow_id, "")
    assert (run.caller, run.dialled) == ("+15550100", "+15550123")
    assert m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.2) == []
    assert m.phase == "in_ivr"  # the IVR talks to the caller while the flow runs
    return m


def test_a_flow_the_ivr_cannot_run_gets_an_apology_not_silence() -> None:
    m = Lifecycle.arrive(arrived(flow=True), 1000.0)
    assert m is not None
    out = m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.1)
    run = command(out, ev.IvrRun)
    out = m.replied(run.id, False, "unknown_flow", 1000.2)
    assert kinds(out) == ["MediaPlay", "MediaHangup"] and transitions(out) == ["failed"]
    assert m.state.record.cause == "flow_refused:unknown_flow"


def test_a_flow_number_not_answered_in_time_fails() -> None:
    m = Lifecycle.arrive(arrived(flow=True), 1000.0)
    assert m is not None and m.next_timer() == 1010.0
    assert kinds(m.take()) == ["MediaAnswer"]
    out = m.timer(1010.0)
    assert kinds(out) == ["MediaHangup"] and transitions(out) == ["failed"]
    assert m.state.record.cause == "answer_timeout"


def to_connected(m: Lifecycle | None = None) -> Lifecycle:
    m = to_queue(m)
    out = m.handle(offer(), 1001.0)
    assert transitions(out) == ["offered"] and kinds(out) == ["DeskPush:contact_offer"]
    m.handle(connected_signal(), 1001.2)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5)
    assert kinds(out) == ["MediaStop", "MediaBridge"]
    bridge = command(out, ev.MediaBridge)
    assert bridge.call_id == CALL and bridge.other_call_id == LEG
    out = ack_all(m, out, 1001.6)
    assert transitions(out) == ["connected"] and kinds(out) == ["DeskPush:contact_connected"]
    return m


def test_caller_of_reads_number_and_display_name() -> None:
    assert caller_of('"Ada Lovelace" <sip:+15550100@host;user=phone>;tag=9') == ("+15550100", "Ada Lovelace")
    assert caller_of("sip:alice@example.com") == ("alice", "")
    assert caller_of("<tel:+441234>") == ("+441234", "")


def test_number_without_route_is_a_contact_that_ends_unrouted() -> None:
    assert Lifecycle.arrive(msgspec.structs.replace(arrived(), direction="outbound"), 1.0) is None
    m = Lifecycle.arrive(msgspec.structs.replace(arrived(), queue_id=None), 1000.0)
    assert m is not None and m.phase == "arrived"
    assert kinds(m.take()) == []  # media answers, plays the message and hangs up by itself
    assert m.state.record.outcome == "unrouted" and m.state.record.timeline[-1].event == "unrouted"
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="unrouted", duration=4.0), 1004.0)
    assert transitions(out) == ["ended"] and m.finished
    record = m.state.record
    assert (record.outcome, record.cause, record.ended_at) == ("unrouted", "unrouted", 1004.0)
    # Hung up by the caller during the message: still unrouted, with the caller's cause.
    m = Lifecycle.arrive(msgspec.structs.replace(arrived(), queue_id=None), 1000.0)
    assert m is not None
    m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=1.0), 1001.0)
    assert (m.state.record.outcome, m.state.record.cause) == ("unrouted", "remote_bye")


def test_number_to_queue_path_from_arrival_to_wrap_up() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0)
    assert m is not None
    out = m.take()
    assert transitions(out) == ["arrived"] and kinds(out) == ["MediaAnswer"]
    m = to_connected(m)
    r = m.state.record
    assert r.queue_name == "Support" and r.agent_id == AGENT and r.connected_at == 1001.6
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=30.0), 1031.6)
    assert kinds(out) == ["MediaHangup", "RoutingEnd", "DeskPush:contact_ended"]
    assert command(out, ev.MediaHangup).call_id == LEG
    ended = next(o for o in out if isinstance(o, ev.DeskPush))
    assert ended.body["by"] == "caller" and ended.body["duration"] == pytest.approx(30.0)
    assert transitions(out) == ["wrap_up"] and r.talk_s == pytest.approx(30.0)
    ack_all(m, out, 1031.7)
    # Only the contact's own agent may wrap it up.
    with pytest.raises(DeskRefused) as refused:
        m.desk(ev.DeskWrapUp(tenant_id=T, agent_id=uuid.uuid4(), contact_id=CALL, disposition="x"), 1032.0)
    assert refused.value.code == "not_found"
    m.desk(
        ev.DeskWrapUp(tenant_id=T, agent_id=AGENT, contact_id=CALL, disposition="resolved", notes="ok"),
        1040.0,
    )
    out = m.take()
    assert kinds(out) == ["RoutingWrapUpDone"] and transitions(out) == ["ended"]
    ack_all(m, out, 1040.1)
    assert m.finished and r.outcome == "handled" and r.disposition == "resolved" and r.notes == "ok"
    assert [e.event for e in r.timeline] == [
        "arrived",
        "queued",
        "offered",
        "accepted",
        "connected",
        "wrap_up",
        "disposition",
        "ended",
    ]
    assert r.queue_s == pytest.approx(1.4) and r.wrapped_at == 1040.0


def test_offer_context_carries_the_ivr_path_digits_waits_and_history() -> None:
    m = in_flow()
    m.handle(ev.IvrNodeEntered(tenant_id=T, call_id=CALL, flow="main", version=3, node="greet"), 1000.5)
    m.handle(ev.IvrNodeEntered(tenant_id=T, call_id=CALL, flow="main", version=3, node="menu"), 1002.0)
    m.handle(
        ev.IvrNodeExited(tenant_id=T, call_id=CALL, flow="main", version=3, node="menu", digits="2"), 1004.0
    )
    attributes = {"ivr.flow": "main@3", "ivr.path": "greet>menu>support", "ivr.digits": "2", "account": "42"}
    out = m.handle(
        ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), attributes=attributes), 1005.0
    )
    assert transitions(out) == ["queued"] and kinds(out) == []
    out = m.handle(offer(), 1008.0)
    push = next(o for o in out if isinstance(o, ev.DeskPush))
    assert push.agent_id == str(AGENT) and push.body["offer_id"] == f"{CALL}#0"
    context = push.body["context"]
    assert context["caller"] == {"number": "+15550100", "name": "Ada Lovelace"}
    assert context["dialled"] == "+15550123"
    assert context["queue"] == {"id": str(QUEUE), "name": "Support"}
    assert context["ivr"] == {"flow": "main@3", "path": ["greet", "menu"], "digits": "2"}
    assert context["attributes"]["account"] == "42"
    assert context["waited"] == {"ivr_s": 5.0, "queue_s": 3.0}
    assert context["history"]["today"] == 2 and context["history"]["last"][0]["outcome"] == "handled"
    # Accepted: the caller in line hears the coordinator's music (a flow's queue hands the caller back to
    # it): it stops, and the caller is bridged to the agent.
    m.handle(connected_signal(), 1008.5)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1009.0)
    assert kinds(out) == ["MediaStop", "MediaBridge"]


def test_repeated_events_change_nothing() -> None:
    m = to_queue()
    first = m.handle(offer(), 1001.0)
    assert first
    assert m.handle(offer(), 1001.1) == []
    queued = ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE))
    m.handle(queued, 1001.2)
    assert m.handle(queued, 1001.3) == []


def test_caller_hangs_up_in_ivr_in_queue_and_while_ringing() -> None:
    m = in_flow()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=3.0), 1003.0)
    assert transitions(out) == ["abandoned"] and m.state.record.outcome == "abandoned_in_ivr"

    m = to_queue()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=9.0), 1009.0)
    assert kinds(out) == ["RoutingCancel"] and transitions(out) == ["abandoned"]
    assert m.state.record.outcome == "abandoned_in_queue"

    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(connected_signal(), 1001.2)
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=2.0), 1002.0)
    assert kinds(out) == ["RoutingCancel", "DeskPush:contact_withdrawn", "MediaHangup"]
    push = next(o for o in out if isinstance(o, ev.DeskPush))
    assert push.body["reason"] == "caller_hung_up" and command(out, ev.MediaHangup).call_id == LEG
    assert m.state.record.outcome == "abandoned_ringing"
    # Routing's own withdrawal afterwards says nothing more to the agent.
    late = ev.ContactRejected(
        tenant_id=T,
        call_id=CALL,
        queue_id=str(QUEUE),
        agent_id=str(AGENT),
        offer_id=f"{CALL}#0",
        reason="withdrawn",
    )
    assert m.handle(late, 1002.1) == []


def test_rejected_or_unanswered_offer_goes_back_in_line() -> None:
    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(connected_signal(), 1001.2)
    rejected = ev.ContactRejected(
        tenant_id=T,
        call_id=CALL,
        queue_id=str(QUEUE),
        agent_id=str(AGENT),
        offer_id=f"{CALL}#0",
        reason="no_answer",
    )
    out = m.handle(rejected, 1021.0)
    assert kinds(out) == ["DeskPush:contact_withdrawn", "MediaHangup"] and transitions(out) == ["queued"]
    assert m.state.leg_id is None and m.state.offer_id is None
    other = uuid.uuid4()
    out = m.handle(offer(1, agent=other), 1022.0)
    assert transitions(out) == ["offered"] and out[-1].agent_id == str(other)


def test_agent_connection_lost_mid_call_requeues_with_a_message() -> None:
    m = to_connected()
    ended = ev.WebRtcSignal(tenant_id=T, agent_id=str(AGENT), leg_id=LEG, kind="ended", call_id=CALL)
    out = m.handle(ended, 1010.0)
    # No hangup of the ended leg: media holds it no more, and the apology waited 5 s for no answer.
    assert kinds(out) == [
        "MediaPlay",
        "MediaPlay",
        "RoutingAgentLogout",
        "DeskPush:contact_ended",
    ]
    plays = [o for o in out if isinstance(o, ev.MediaPlay)]
    assert plays[0].text == AGENT_LOST_MESSAGE and plays[1].tone == "moh"
    logout = command(out, ev.RoutingAgentLogout)
    assert logout.force and logout.agent_id == AGENT
    assert transitions(out) == ["queued"]  # in line: the coordinator talks to the caller again
    # The next agent gets it; accept -> stop the music -> bridge.
    other, leg2 = uuid.uuid4(), uuid.uuid4()
    m.handle(offer(1, agent=other), 1011.0)
    m.handle(connected_signal(leg2, other), 1011.1)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(other)), 1011.2)
    assert kinds(out) == ["MediaStop", "MediaBridge"]


@pytest.mark.parametrize("first", ["leg_ended", "requeued"])
def test_an_agent_gone_past_its_grace_is_agent_disconnected_whichever_news_comes_first(first: str) -> None:
    """Routing signs the agent out at its grace's end: media ends its leg (cause "agent_disconnected") and
    routing requeues the contact, on two streams. The leg's end handled first recorded
    "agent_connection_lost" and sent a logout routing refused (`not_logged_in`)."""
    m = to_connected()
    leg_ended = ev.CallEnded(tenant_id=T, call_id=LEG, cause="agent_disconnected", duration=9.0)
    requeued = ev.ContactRequeued(
        tenant_id=T, call_id=CALL, queue_id=str(QUEUE), position=1, reason="disconnected"
    )
    signal = ev.WebRtcSignal(tenant_id=T, agent_id=str(AGENT), leg_id=LEG, kind="ended", call_id=CALL)
    order = [leg_ended, signal, requeued] if first == "leg_ended" else [requeued, leg_ended, signal]
    out = [o for i, event in enumerate(order) for o in m.handle(event, 1010.0 + i)]
    assert transitions(out) == ["queued"]
    assert "RoutingAgentLogout" not in kinds(out)
    assert kinds(out).count("DeskPush:contact_ended") == 1
    causes = [e.detail.get("cause") for e in m.state.record.timeline]
    assert "agent_disconnected" in causes and "agent_connection_lost" not in causes
    assert m.phase == "queued" and m.state.record.agent_id is None


def test_accept_without_a_connected_leg_times_out_and_requeues() -> None:
    m = to_queue()
    m.handle(offer(), 1001.0)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1002.0)
    assert kinds(out) == ["MediaStop"]
    assert m.next_timer() == 1002.0 + ACCEPT_LEG_TIMEOUT_S
    assert m.timer(1005.0) == []
    out = m.timer(1002.0 + ACCEPT_LEG_TIMEOUT_S)
    assert "RoutingAgentLogout" in kinds(out) and transitions(out) == ["queued"]


def test_leg_connecting_after_accept_is_bridged_then() -> None:
    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1002.0)
    out = m.handle(connected_signal(), 1002.5)
    assert kinds(out) == ["MediaBridge"] and m.next_timer() is None


def test_media_worker_lost_ends_the_contact_and_frees_the_agent() -> None:
    m = to_connected()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=LEG, cause="media_worker_lost", duration=5.0), 1007.0)
    assert "RoutingAgentLogout" not in kinds(out)
    assert command(out, ev.RoutingEnd).call_id == CALL
    assert transitions(out) == ["wrap_up"] and m.state.record.cause == "media_worker_lost"


def test_a_call_lost_with_the_platform_is_a_platform_failure_never_abandoned() -> None:
    # Connected: ends where last known alive, with its agent and that talk time.
    m = to_connected()
    m.handle(
        ev.ContactEnded(tenant_id=T, call_id=CALL, queue_id="q", agent_id=str(AGENT), talk_s=99.0), 1003.0
    )
    out = m.platform_lost(1011.6)
    r = m.state.record
    assert command(out, ev.RoutingEnd).call_id == CALL and transitions(out) == ["wrap_up"]
    assert (r.outcome, r.cause, r.ended_at, r.talk_s) == (
        "platform_failure",
        "platform_restart",
        1011.6,
        10.0,
    )
    assert str(r.agent_id) == str(AGENT)  # routing's own talk time (99 s) never overrides connected -> ended
    # Queued, media shutting down: failed by the platform, not abandoned by the caller.
    q = to_queue()
    out = q.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="shutdown", duration=3.0), 1005.0)
    assert command(out, ev.RoutingCancel).call_id == CALL
    assert (q.state.record.outcome, q.phase) == ("platform_failure", "failed")


def test_failed_bridge_requeues() -> None:
    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(connected_signal(), 1001.2)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5)
    bridge = command(out, ev.MediaBridge)
    out = m.replied(bridge.id, False, "not_found", 1001.6)
    assert "RoutingAgentLogout" in kinds(out) and transitions(out) == ["queued"]


def test_a_replys_commands_have_the_same_ids_when_the_step_is_taken_again() -> None:
    """A reply's step derives its commands' ids from the command replied to (uuid5(command id, "replied"),
    then the command's number in the step), made only when the step sends something: a coordinator that
    takes the step again after a restart sends the same commands, answered from the reply caches."""
    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(connected_signal(), 1001.2)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5)
    bridge = command(out, ev.MediaBridge)
    again = Lifecycle(msgspec.json.decode(msgspec.json.encode(m.state), type=Contact))  # as saved
    first = [c.id for c in m.replied(bridge.id, False, "not_found", 1001.6)]
    assert first and first == [c.id for c in again.replied(bridge.id, False, "not_found", 1001.6)]
    assert first[0] == uuid.uuid5(uuid.uuid5(bridge.id, "replied"), "1")


def test_desk_hold_mute_digits_and_refusals() -> None:
    m = to_connected()
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    assert m.desk(ev.DeskHold(**desk, on=True), 1002.0) == {"held": True}
    assert kinds(m.take()) == ["MediaPlay"]
    assert m.desk(ev.DeskHold(**desk, on=True), 1002.1) == {"held": True}
    assert m.take() == []
    m.desk(ev.DeskHold(**desk, on=False), 1003.0)
    assert kinds(m.take()) == ["MediaStop"]
    m.desk(ev.DeskMute(**desk, on=True), 1004.0)
    assert command(m.take(), ev.MediaMute).call_id == LEG
    m.desk(ev.DeskDigits(**desk, digits="12#"), 1005.0)
    assert command(m.take(), ev.MediaSendDigits).digits == "12#"
    with pytest.raises(DeskRefused):
        m.desk(ev.DeskDigits(**desk, digits="12x"), 1005.0)
    with pytest.raises(DeskRefused) as refused:
        m.desk(ev.DeskWrapUp(**desk, disposition="x"), 1006.0)
    assert refused.value.code == "state"


def test_desk_accept_and_reject_are_forwarded_to_routing_which_decides() -> None:
    """One path for the desk: accept and reject come to the coordinator, which forwards them to routing
    (whatever it has seen: a restarted coordinator may get the offer's event after the accept); routing's
    contact.accepted / contact.rejected then move the contact, as before."""
    m = to_queue()
    m.handle(offer(), 1001.0)
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    assert m.desk(ev.DeskReject(**desk, offer_id=f"{CALL}#0"), 1001.1) == {}
    out = m.take()
    assert kinds(out) == ["RoutingReject"] and transitions(out) == []
    reject = command(out, ev.RoutingReject)
    assert (reject.agent_id, reject.offer_id, reject.away_reason) == (AGENT, f"{CALL}#0", "missed")
    assert m.replied(reject.id, False, "offer_expired", 1001.2) == []  # the refusal is the agent's answer
    m.desk(ev.DeskAccept(**desk, offer_id=f"{CALL}#0"), 1001.3)
    accept = command(m.take(), ev.RoutingAccept)
    assert (accept.agent_id, accept.offer_id) == (AGENT, f"{CALL}#0")
    assert m.phase == "offered"  # routing's contact.accepted carries it on
    with pytest.raises(DeskRefused) as refused:
        m.desk(ev.DeskAccept(**desk, offer_id=f"{uuid.uuid4()}#0"), 1001.4)
    assert refused.value.code == "not_found" and m.take() == []
    fresh = to_queue()  # no offer seen yet: forwarded all the same
    fresh.desk(ev.DeskAccept(**desk, offer_id=f"{CALL}#1"), 1002.0)
    assert kinds(fresh.take()) == ["RoutingAccept"]


def test_blind_transfer_with_note_reaches_the_next_offer() -> None:
    m = to_connected()
    other_queue, other_agent = uuid.uuid4(), uuid.uuid4()
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    m.desk(ev.DeskTransfer(**desk, queue="Billing", note="wants a refund"), 1010.0, queue_id=other_queue)
    out = m.take()
    # Routing decides first: nothing is done to the call before it accepts.
    assert kinds(out) == ["RoutingTransfer"]
    assert command(out, ev.RoutingTransfer).queue_id == other_queue
    out = ack_all(m, out, 1010.1)
    assert kinds(out) == ["MediaHangup", "MediaPlay", "DeskPush:contact_ended"]
    assert transitions(out) == ["queued"] and m.state.record.transfers[0]["note"] == "wants a refund"
    ack_all(m, out, 1010.1)
    out = m.handle(offer(1, agent=other_agent), 1012.0)
    context = next(o for o in out if isinstance(o, ev.DeskPush)).body["context"]
    assert context["transfer"] == {"from_agent_id": str(AGENT), "note": "wants a refund"}


def test_a_refused_transfer_leaves_the_contact_as_it_was() -> None:
    m = to_connected()
    before = msgspec.json.encode(m.state)
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    m.desk(ev.DeskTransfer(**desk, to_agent_id=uuid.uuid4()), 1010.0, queue_id=None)
    [transfer] = m.take()
    assert m.replied(transfer.id, False, "agent_not_in_queue", 1010.1) == []
    assert msgspec.json.encode(m.state) == before  # same phase, agent, leg, bridge, record
    # And a second transfer may be tried.
    m.desk(ev.DeskTransfer(**desk, queue="Billing"), 1011.0, queue_id=uuid.uuid4())
    assert kinds(m.take()) == ["RoutingTransfer"]


def test_state_survives_a_round_trip_and_the_machine_resumes() -> None:
    m = to_queue()
    m.handle(offer(), 1001.0)
    m.handle(connected_signal(), 1001.2)
    saved = msgspec.json.encode(m.state)
    resumed = Lifecycle(msgspec.json.decode(saved, type=Contact))
    # A redelivered event is still recognised after the restart.
    assert resumed.handle(connected_signal(), 1001.3) == resumed.handle(offer(), 1001.3) == []
    out = resumed.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5)
    assert kinds(out) == ["MediaStop", "MediaBridge"]


def phone_offer(n: int = 0, endpoint: str = "sip:ada@127.0.0.1:5070") -> OfferInfo:
    return msgspec.structs.replace(offer(n), endpoint=endpoint)


def test_agent_at_a_phone_is_rung_near_the_caller_and_answering_accepts() -> None:
    m = to_queue()
    out = m.handle(phone_offer(), 1001.0)
    assert kinds(out) == ["DeskPush:contact_offer", "MediaOriginate"]
    dial = command(out, ev.MediaOriginate)
    assert dial.near_call_id == CALL and dial.to == "sip:ada@127.0.0.1:5070" and dial.caller_id == "+15550100"
    assert dial.timeout == pytest.approx(29.0)
    ack_all(m, out, 1001.0)
    out = m.handle(ev.CallAnswered(tenant_id=T, call_id=dial.call_id), 1003.0)
    accept = command(out, ev.RoutingAccept)
    assert accept.agent_id == AGENT and accept.offer_id == f"{CALL}#0"
    ack_all(m, out, 1003.0)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1003.1)
    assert (
        kinds(out) == ["MediaStop", "MediaBridge"]
        and command(out, ev.MediaBridge).other_call_id == dial.call_id
    )
    assert transitions(ack_all(m, out, 1003.2)) == ["connected"]


def test_agent_phone_busy_or_unreachable_gives_the_offer_back_at_once() -> None:
    m = to_queue()
    out = m.handle(phone_offer(), 1001.0)
    dial = command(out, ev.MediaOriginate)
    out = m.handle(
        ev.CallEnded(tenant_id=T, call_id=dial.call_id, cause="busy", duration=0.0, sip_status=486), 1002.0
    )
    reject = command(out, ev.RoutingReject)
    assert reject.away_reason == "missed" and reject.offer_id == f"{CALL}#0" and m.state.leg_id is None
    m2 = to_queue()
    out = m2.handle(phone_offer(endpoint="+15550199"), 1001.0)
    dial = command(out, ev.MediaOriginate)
    assert "RoutingReject" in kinds(m2.replied(dial.id, False, "originate_failed", 1001.1))


def test_events_reordered_by_a_restart_still_connect_once() -> None:
    """A restarted coordinator gets the events it had not acknowledged again, after newer ones: the agent's
    leg and the accept before the offer itself. The call still connects, once, and the late offer is a no-op."""
    m = to_queue()
    assert m.handle(connected_signal(), 1001.2) == []  # before its offer: kept
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5)
    assert transitions(out) == ["offered"] and kinds(out) == ["MediaStop", "MediaBridge"]
    assert command(out, ev.MediaBridge).other_call_id == LEG
    assert transitions(ack_all(m, out, 1001.6)) == ["connected"]
    assert m.handle(offer(), 1001.7) == []


def test_a_disposition_after_the_wrap_up_timer_is_kept_on_the_finished_record() -> None:
    m = to_connected()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=5.0), 1010.0)
    ack_all(m, out, 1010.1)
    # Routing's wrap-up timer runs out while the agent is still typing.
    out = m.handle(
        ev.ContactWrappedUp(
            tenant_id=T, call_id=CALL, queue_id=str(QUEUE), agent_id=str(AGENT), handle_s=30.0
        ),
        1040.0,
    )
    assert transitions(out) == ["ended"] and m.finished
    r = m.state.record
    assert r.disposition is None
    late = ev.DeskWrapUp(tenant_id=T, agent_id=AGENT, contact_id=CALL, disposition="resolved", notes="refund")
    with pytest.raises(DeskRefused) as refused:
        late_wrap_up(r, ev.DeskWrapUp(**{**msgspec.structs.asdict(late), "agent_id": uuid.uuid4()}), 1050.0)
    assert refused.value.code == "not_found"
    assert late_wrap_up(r, late, 1050.0) == {"disposition": "resolved", "late": True}
    assert (r.disposition, r.notes, r.state) == ("resolved", "refund", "ended")
    assert r.timeline[-1].event == "disposition" and r.timeline[-1].detail["late"] == "true"
    # The desktop retries after a reconnect: the same answer, nothing added; a different one is refused.
    assert (
        late_wrap_up(r, late, 1051.0)["late"] is True
        and len([e for e in r.timeline if e.event == "disposition"]) == 1
    )
    with pytest.raises(DeskRefused):
        late_wrap_up(r, ev.DeskWrapUp(**{**msgspec.structs.asdict(late), "disposition": "other"}), 1052.0)


def test_recorded_queue_starts_recording_at_the_bridge_and_the_desk_pauses_it() -> None:
    m = to_queue()
    recorded = msgspec.structs.replace(offer(), record_percent=100)
    m.handle(recorded, 1001.0)
    m.handle(connected_signal(), 1001.2)
    out = ack_all(
        m, m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5), 1001.6
    )
    assert kinds(out) == ["MediaRecordStart", "DeskPush:contact_connected"]
    assert command(out, ev.MediaRecordStart).call_id == CALL  # the caller's call names the recording
    push = next(o for o in out if isinstance(o, ev.DeskPush))
    assert push.body["recording"] == "on"
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    assert m.desk(ev.DeskRecordPause(**desk, on=True), 1002.0) == {"recording": "paused"}
    assert command(m.take(), ev.MediaRecordPause).call_id == CALL
    assert m.desk(ev.DeskRecordPause(**desk, on=True), 1002.1) == {"recording": "paused"}
    assert m.take() == []  # already paused: nothing sent twice
    assert m.desk(ev.DeskRecordPause(**desk, on=False), 1003.0) == {"recording": "on"}
    assert kinds(m.take()) == ["MediaRecordResume"]
    assert "recording_paused" in [e.event for e in m.state.record.timeline]


def test_unrecorded_queue_sends_no_record_start_and_refuses_a_pause() -> None:
    m = to_connected()  # the offer carries record_percent 0
    desk = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}
    with pytest.raises(DeskRefused) as refused:
        m.desk(ev.DeskRecordPause(**desk, on=True), 1002.0)
    assert refused.value.code == "state"


def test_a_call_media_refused_is_recorded_failed_with_its_cause() -> None:
    event = ev.CallRefused(
        tenant_id=T, call_id=CALL, from_uri="<sip:+15550100@127.0.0.1>", to_e164="+15550123",
        status=486, cause="tenant_call_limit",
    )  # fmt: skip
    m = Lifecycle.refused(event, 1000.0)
    out = m.take()
    assert transitions(out) == ["arrived", "failed"] and kinds(out) == [] and m.finished
    r = m.state.record
    assert (r.outcome, r.cause, r.caller, r.dialled) == (
        "refused",
        "tenant_call_limit",
        "+15550100",
        "+15550123",
    )
    assert [e.event for e in r.timeline] == ["arrived", "refused", "failed"]


def test_a_step_taken_again_sends_the_same_commands() -> None:
    """Commands carry ids derived from the step's input and its `now` as ts: a step taken again after a
    crash (the event redelivered to a machine restored from before it) sends the very same commands, which
    media and routing then answer from their reply caches."""
    event = arrived()
    first, again = Lifecycle.arrive(event, 100.0), Lifecycle.arrive(event, 100.0)
    assert first is not None and again is not None
    sent, resent = first.take(), again.take()
    answer = command(sent, ev.MediaAnswer)
    assert answer.ts == 100.0  # type: ignore[attr-defined]
    assert [(type(o), o.id, o.ts) for o in sent] == [(type(o), o.id, o.ts) for o in resent]
    other = Lifecycle.arrive(msgspec.structs.replace(event, id=uuid.uuid4()), 100.0)
    assert other is not None and command(other.take(), ev.MediaAnswer).id != answer.id  # type: ignore[attr-defined]


def waiting_in_line(every: float = 30.0, language: str = "fr") -> tuple[Lifecycle, list]:
    """A caller on a number routed straight to a queue, answered and in line at 1001.0."""
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(announce_every=every, language=language))
    assert m is not None
    ack_all(m, m.take(), 1000.5)  # answered: music and the enqueue
    out = m.handle(
        ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), position=3, expected_wait_s=170.0),
        1001.0,
    )
    assert transitions(out) == ["queued"]
    return m, out


def test_number_to_queue_caller_hears_position_at_the_interval_in_the_tenants_language() -> None:
    m, _ = waiting_in_line()
    assert m.next_timer() == 1031.0
    assert m.timer(1030.9) == []
    out = m.timer(1031.0)
    play = command(out, ev.MediaPlay)
    assert play.text == "Vous êtes numéro 3 dans la file. L'attente prévue est d'environ 3 minutes."
    assert play.voice == "fr-fr" and not play.loop and m.next_timer() == 1061.0
    ack_all(m, out, 1031.0)
    # A newer position, then the announcement ends: music again; the next one says the new figures.
    m.handle(ev.ContactPositionChanged(tenant_id=T, call_id=CALL, position=1, expected_wait_s=None), 1035.0)
    out = m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=play.id, reason="done"), 1036.0)
    assert command(out, ev.MediaPlay).tone == "moh"
    # Another play's end (not ours) changes nothing.
    assert m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=uuid.uuid4()), 1037.0) == []
    second = command(m.timer(1061.0), ev.MediaPlay)
    assert second.text == "Vous êtes numéro 1 dans la file."
    assert [e.event for e in m.state.record.timeline].count("announced") == 2
    # Offered: no announcement over the ringing; connected: none ever again.
    m.handle(offer(), 1062.0)
    assert kinds(m.timer(1091.0)) == [] and m.next_timer() == 1121.0


def test_number_to_queue_without_announcements_has_no_timer() -> None:
    m, _ = waiting_in_line(every=None)  # type: ignore[arg-type]
    assert m.next_timer() is None


def test_a_closed_queue_plays_its_message_then_hangs_up_and_ends_closed() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(language="de", closed_message=None))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)  # answered: music and the enqueue
    enqueue = command(out, ev.RoutingEnqueue)
    assert enqueue.attributes == {"caller": "+15550100", "dialled": "+15550123"}
    out = m.replied(enqueue.id, False, "queue_closed", 1000.6)
    play = command(out, ev.MediaPlay)
    assert play.text.startswith("Wir haben geschlossen") and play.voice == "de"
    assert not m.finished and m.state.record.outcome == "closed"
    # media's call.answered, read after the answer's reply: the caller is not put in line a second time.
    assert m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.7) == []
    out = m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=play.id, reason="done"), 1006.0)
    assert command(out, ev.MediaHangup).cause == "closed"
    m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="closed", duration=6.0), 1006.1)
    assert m.finished and m.phase == "ended" and m.state.record.outcome == "closed"
    assert "closed" in [e.event for e in m.state.record.timeline]


def test_a_closed_message_whose_end_is_lost_still_hangs_up() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(closed_message="Closed for the holiday."))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)
    out = m.replied(command(out, ev.RoutingEnqueue).id, False, "queue_closed", 1000.6)
    assert command(out, ev.MediaPlay).text == "Closed for the holiday."
    out = m.timer(1000.6 + 60.0)
    assert command(out, ev.MediaHangup) and m.finished and m.state.record.outcome == "closed"


NOTICE = "This call may be recorded."


def notice_played(reason: str | None) -> tuple[Lifecycle, list]:
    """A recorded queue with an announcement: answered, the announcement plays and nothing else happens
    until it ends (`reason`, or None: its end is never reported and the timer runs out)."""
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(recording_notice=NOTICE, language="de"))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)
    play = command(out, ev.MediaPlay)
    assert kinds(out) == ["MediaPlay"] and play.text == NOTICE and play.voice == "de" and not play.loop
    assert m.handle(ev.CallAnswered(tenant_id=T, call_id=CALL), 1000.6) == []  # not in line twice
    assert m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=uuid.uuid4()), 1001.0) == []
    if reason is None:
        out = m.timer(m.next_timer() or 0.0)
    else:
        out = m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=play.id, reason=reason), 1003.0)
    # Only now: music and in line.
    assert kinds(out) == ["MediaPlay", "RoutingEnqueue"] and command(out, ev.MediaPlay).tone == "moh"
    ack_all(m, out, 1003.1)
    m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), position=1), 1003.2)
    m.handle(msgspec.structs.replace(offer(), record_percent=100), 1004.0)
    m.handle(connected_signal(), 1004.2)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1004.5)
    return m, ack_all(m, out, 1004.6)


def test_recording_announcement_is_heard_before_the_caller_is_in_line_and_recording_starts_after() -> None:
    m, out = notice_played("done")
    assert kinds(out) == ["MediaRecordStart", "DeskPush:contact_connected"]
    events = [e.event for e in m.state.record.timeline]
    assert events.index("recording_notice") < events.index("recording_notice_heard") < events.index("queued")


@pytest.mark.parametrize("reason", ["stopped", "error", None])
def test_an_announcement_cut_short_or_lost_means_no_recording(reason: str | None) -> None:
    m, out = notice_played(reason)
    assert "MediaRecordStart" not in kinds(out) and kinds(out) == ["DeskPush:contact_connected"]
    assert "recording_notice_failed" in [e.event for e in m.state.record.timeline]


def test_an_announcement_media_refuses_means_no_recording() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(recording_notice=NOTICE))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)
    out = m.replied(command(out, ev.MediaPlay).id, False, "tts_failed", 1000.6)
    assert kinds(out) == ["MediaPlay", "RoutingEnqueue"] and m.state.notice == "failed"


def test_a_closed_queue_with_a_flow_hands_the_caller_to_the_ivr() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(closed_flow="after-hours"))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)
    out = m.replied(command(out, ev.RoutingEnqueue).id, False, "queue_closed", 1000.6)
    run = command(out, ev.IvrRun)
    assert (run.flow, run.caller, run.dialled) == ("after-hours", "+15550100", "+15550123")
    out = m.replied(run.id, True, None, 1000.7)
    assert transitions(out) == ["in_ivr"]
    m.handle(
        ev.IvrCompleted(tenant_id=T, call_id=CALL, flow="after-hours", version=1, outcome="self_served"),
        1010.0,
    )
    m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="normal_clearing", duration=10.0), 1010.1)
    assert m.finished and m.state.record.outcome == "self_served" and m.state.record.ivr_s == 10.0


def test_a_closed_flow_the_ivr_refuses_falls_back_to_the_closed_message() -> None:
    m = Lifecycle.arrive(arrived(), 1000.0, waiting=Waiting(closed_flow="gone"))
    assert m is not None
    out = ack_all(m, m.take(), 1000.5)
    out = m.replied(command(out, ev.RoutingEnqueue).id, False, "queue_closed", 1000.6)
    out = m.replied(command(out, ev.IvrRun).id, False, "unknown_flow", 1000.7)
    assert command(out, ev.MediaPlay).text.startswith("We are closed") and m.state.record.outcome == "closed"
