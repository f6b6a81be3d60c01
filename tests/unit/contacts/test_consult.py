"""Attended transfer in the contact lifecycle (services/contacts/consult.py): a consultation offered to a second
agent through routing, the two agents bridged by media, then complete or cancel; and the unhappy paths (the
second agent declines or does not answer, the caller hangs up, either agent's leg drops). Pure: time passed
in, no NATS, no database."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from test_lifecycle import (
    AGENT,
    CALL,
    LEG,
    QUEUE,
    T,
    ack_all,
    command,
    connected_signal,
    kinds,
    offer,
    to_connected,
    to_queue,
    transitions,
)

from services.contacts import consult
from services.contacts.lifecycle import DeskRefused, Lifecycle, OfferInfo, late_wrap_up
from services.kernel import events as ev

pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")

SECOND = uuid.uuid4()
LEG2 = uuid.uuid4()
DESK = {"tenant_id": T, "agent_id": AGENT, "contact_id": CALL}


def pushes(out: list, agent: uuid.UUID) -> list[tuple[str, dict]]:
    return [(o.kind, o.body) for o in out if isinstance(o, ev.DeskPush) and o.agent_id == str(agent)]


def consulting(*, to: uuid.UUID | None = SECOND, m: Lifecycle | None = None) -> tuple[Lifecycle, uuid.UUID]:
    """Connected to AGENT, consulting SECOND: offered (with SECOND's leg up), not yet accepted."""
    m = m or to_connected()
    data = m.desk(ev.DeskConsult(**DESK, to_agent_id=to, note="a refund over 500"), 1010.0)
    out = m.take()
    assert kinds(out) == ["RoutingEnqueue"] and data["state"] == "ringing"
    enqueue = command(out, ev.RoutingEnqueue)
    k = enqueue.call_id
    assert k != CALL and str(k) == data["consult_id"] and enqueue.queue_id == QUEUE
    assert (enqueue.preferred_agent_id, enqueue.preferred_only) == (str(to), True)
    # Routing took it: the caller hears music meanwhile.
    out = ack_all(m, out, 1010.1)
    assert kinds(out) == ["MediaPlay"] and command(out, ev.MediaPlay).call_id == CALL
    ack_all(m, out, 1010.1)
    offered = ev.ContactOffered(
        tenant_id=T,
        call_id=k,
        queue_id=str(QUEUE),
        agent_id=str(SECOND),
        offer_id=f"{k}#0",
        expires_at=1030.0,
    )
    out = m.handle(OfferInfo(offer=offered, queue_name="Support"), 1011.0)
    [(kind, body)] = pushes(out, SECOND)
    # The second agent's desk knows the consultation by its own id, and makes its leg for the caller's call.
    assert kind == "contact_offer" and body["contact_id"] == str(k) and body["call_id"] == str(CALL)
    assert body["context"]["consult"] == {"from_agent_id": str(AGENT), "note": "a refund over 500"}
    assert body["context"]["caller"]["name"] == "Ada Lovelace"
    assert transitions(out) == [] and m.phase == "connected"
    signal = ev.WebRtcSignal(
        tenant_id=T, agent_id=str(SECOND), leg_id=LEG2, kind="state", state="connected", call_id=CALL
    )
    assert m.handle(signal, 1011.5) == []
    return m, k


def talking(m: Lifecycle | None = None) -> tuple[Lifecycle, uuid.UUID]:
    m, k = consulting(m=m)
    out = m.handle(ev.ContactAccepted(tenant_id=T, call_id=k, agent_id=str(SECOND)), 1012.0)
    bridge = command(out, ev.MediaConsult)
    assert (bridge.call_id, bridge.other_call_id) == (LEG, LEG2)
    out = ack_all(m, out, 1012.1)
    assert pushes(out, AGENT) == [
        ("consult", {"contact_id": str(CALL), "state": "talking", "to_agent_id": str(SECOND)})
    ]
    [(kind, body)] = pushes(out, SECOND)
    assert kind == "contact_connected" and body["contact_id"] == str(k) and body["leg_id"] == str(LEG2)
    return m, k


def test_consult_then_complete_hands_the_caller_over_and_both_agents_wrap_up() -> None:
    m, k = talking()
    m.desk(ev.DeskConsultComplete(**DESK), 1020.0)
    out = m.take()
    assert command(out, ev.MediaCompleteTransfer).call_id == LEG
    out = ack_all(m, out, 1020.1)
    assert command(out, ev.MediaHangup).call_id == LEG  # the first agent's leg, released by media
    assert command(out, ev.RoutingEnd).call_id == CALL  # routing: the first agent wraps up
    [(kind, body)] = pushes(out, AGENT)
    assert kind == "contact_ended" and body["cause"] == "transferred" and body["wrap_up"] is True
    assert pushes(out, SECOND) == [("consult", {"contact_id": str(k), "state": "completed"})]
    r = m.state.record
    assert r.agent_id == SECOND and m.phase == "connected" and m.routing_id == k
    [move] = r.transfers
    assert (move["kind"], move["from_agent_id"], move["to_agent_id"]) == ("attended", str(AGENT), str(SECOND))
    ack_all(m, out, 1020.1)

    # The first agent's disposition goes on its transfer entry; routing ends its wrap-up of the original.
    m.desk(ev.DeskWrapUp(**DESK, disposition="escalated", notes="to billing"), 1025.0)
    done = command(m.take(), ev.RoutingWrapUpDone)
    assert (done.agent_id, done.call_id) == (AGENT, CALL)
    assert (move["disposition"], move["notes"]) == ("escalated", "to billing")
    # A stale routing event of the original changes nothing now.
    assert (
        m.handle(ev.ContactWrappedUp(tenant_id=T, call_id=CALL, queue_id="", agent_id="", handle_s=1), 1026)
        == []
    )

    # The caller hangs up on the second agent: its desk (by the consultation's id) and routing (the same).
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=20.0), 1030.0)
    assert command(out, ev.RoutingEnd).call_id == k
    assert [kind for kind, _ in pushes(out, SECOND)] == ["contact_ended"]
    assert pushes(out, SECOND)[0][1]["contact_id"] == str(k)
    assert transitions(out) == ["wrap_up"]
    second = {"tenant_id": T, "agent_id": SECOND, "contact_id": k}
    m.desk(ev.DeskWrapUp(**second, disposition="resolved"), 1032.0)
    out = m.take()
    assert command(out, ev.RoutingWrapUpDone).call_id == k
    assert m.phase == "ended" and r.disposition == "resolved" and move["disposition"] == "escalated"


def test_the_first_agents_disposition_after_the_contact_ended_is_kept_on_its_transfer() -> None:
    m, _ = talking()
    m.desk(ev.DeskConsultComplete(**DESK), 1020.0)
    ack_all(m, m.take(), 1020.1)
    m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=20.0), 1030.0)
    m.desk(ev.DeskWrapUp(tenant_id=T, agent_id=SECOND, contact_id=CALL, disposition="resolved"), 1031.0)
    r = m.state.record
    assert r.state == "ended"
    late = late_wrap_up(r, ev.DeskWrapUp(**DESK, disposition="escalated"), 1040.0)
    assert late == {"disposition": "escalated", "late": True} and r.transfers[0]["disposition"] == "escalated"
    with pytest.raises(DeskRefused):
        late_wrap_up(r, ev.DeskWrapUp(**DESK, disposition="other"), 1041.0)


@pytest.mark.parametrize("reason", ["rejected", "no_answer"])
def test_second_agent_declines_or_does_not_answer_the_first_is_back_with_the_caller(reason: str) -> None:
    m, k = consulting()
    out = m.handle(
        ev.ContactRejected(
            tenant_id=T,
            call_id=k,
            queue_id=str(QUEUE),
            agent_id=str(SECOND),
            offer_id=f"{k}#0",
            reason=reason,
        ),
        1015.0,
    )
    assert command(out, ev.RoutingCancel).call_id == k
    assert command(out, ev.MediaHangup).call_id == LEG2
    assert command(out, ev.MediaStop).call_id == CALL  # music off: the agent is back with the caller
    assert [kind for kind, _ in pushes(out, SECOND)] == ["contact_withdrawn"]
    assert pushes(out, AGENT) == [
        ("consult", {"contact_id": str(CALL), "state": "cancelled", "reason": reason})
    ]
    assert m.state.consult is None and not m.state.held and m.state.record.agent_id == AGENT
    # A new consultation may be tried.
    m.desk(ev.DeskConsult(**DESK, to_agent_id=SECOND), 1016.0)
    assert kinds(m.take()) == ["RoutingEnqueue"]


def test_nobody_answers_in_time_the_consultation_ends_by_itself() -> None:
    m, k = consulting()
    assert m.next_timer() == 1010.0 + consult.CONSULT_RING_S
    out = m.timer(1010.0 + consult.CONSULT_RING_S)
    assert command(out, ev.RoutingCancel).call_id == k
    assert pushes(out, AGENT)[0][1]["reason"] == "no_answer"


def test_cancel_while_talking_puts_the_first_agent_back_and_frees_the_second() -> None:
    m, k = talking()
    assert m.desk(ev.DeskConsultCancel(**DESK), 1020.0)["state"] == "cancelling"
    out = m.take()
    assert command(out, ev.MediaCancelTransfer).call_id == LEG
    out = ack_all(m, out, 1020.1)
    assert command(out, ev.MediaHangup).call_id == LEG2
    assert command(out, ev.RoutingEnd).call_id == k
    assert command(out, ev.RoutingWrapUpDone).agent_id == SECOND  # no wrap-up for a consultation
    assert pushes(out, SECOND)[0][1]["cause"] == "consult_cancelled"
    assert pushes(out, AGENT)[0][1]["state"] == "cancelled"
    assert "MediaStop" not in kinds(out)  # media's cancel already stopped the music
    assert m.state.consult is None and m.state.record.agent_id == AGENT and m.state.leg_id == LEG


def test_caller_hangs_up_during_the_consultation_both_agents_are_freed() -> None:
    m, k = talking()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=20.0), 1020.0)
    hung = {o.call_id for o in out if isinstance(o, ev.MediaHangup)}
    assert hung == {LEG, LEG2}
    assert {o.call_id for o in out if isinstance(o, ev.RoutingEnd)} == {k, CALL}
    assert pushes(out, SECOND)[0][1]["cause"] == "consult_caller_hung_up"
    assert [kind for kind, _ in pushes(out, AGENT)] == ["contact_ended"]
    assert transitions(out) == ["wrap_up"]


def test_caller_hangs_up_while_the_consultation_rings() -> None:
    m, k = consulting()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=20.0), 1012.0)
    assert command(out, ev.RoutingCancel).call_id == k
    assert [kind for kind, _ in pushes(out, SECOND)] == ["contact_withdrawn"]
    assert transitions(out) == ["wrap_up"]


@pytest.mark.parametrize("how", ["call_ended", "leg_signal"])
def test_first_agent_drops_while_talking_transfers_the_caller(how: str) -> None:
    m, k = talking()
    if how == "call_ended":
        gone = ev.CallEnded(tenant_id=T, call_id=LEG, cause="webrtc_failed", duration=9.0)
    else:
        gone = ev.WebRtcSignal(tenant_id=T, agent_id=str(AGENT), leg_id=LEG, kind="ended", call_id=CALL)
    out = m.handle(gone, 1020.0)
    assert LEG not in {o.call_id for o in out if isinstance(o, ev.MediaHangup)}  # already gone
    assert command(out, ev.RoutingEnd).call_id == CALL
    assert m.state.record.agent_id == SECOND and m.phase == "connected" and m.routing_id == k


def test_second_agent_drops_while_talking_the_first_is_back_with_the_caller() -> None:
    m, k = talking()
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=LEG2, cause="webrtc_failed", duration=9.0), 1020.0)
    assert command(out, ev.RoutingEnd).call_id == k
    assert pushes(out, AGENT) == [
        ("consult", {"contact_id": str(CALL), "state": "cancelled", "reason": "target_left"})
    ]
    assert m.state.consult is None and m.state.record.agent_id == AGENT and m.phase == "connected"
    # And the second agent's own hang-up (a desk command) is the same thing: refused once it is over.
    with pytest.raises(DeskRefused):
        m.desk(ev.DeskHangup(tenant_id=T, agent_id=SECOND, contact_id=k), 1021.0)


def test_refusals_change_nothing() -> None:
    m = to_connected()
    with pytest.raises(DeskRefused, match="yourself"):
        m.desk(ev.DeskConsult(**DESK, to_agent_id=AGENT), 1010.0)
    with pytest.raises(DeskRefused, match="no consultation"):
        m.desk(ev.DeskConsultComplete(**DESK), 1010.0)
    m.desk(ev.DeskConsult(**DESK, to_agent_id=SECOND), 1010.0)
    [enqueue] = m.take()
    # Routing refuses (the agent is not signed in to the queue): nothing changed, the caller never held.
    assert m.replied(enqueue.id, False, "agent_not_in_queue", 1010.1) == []
    assert m.state.consult is None and not m.state.held
    m, _ = consulting()
    with pytest.raises(DeskRefused, match="under way"):
        m.desk(ev.DeskTransfer(**DESK, queue="Billing"), 1013.0)
    with pytest.raises(DeskRefused, match="complete it once you talk"):
        m.desk(ev.DeskConsultComplete(**DESK), 1013.0)


def recorded_connected() -> tuple[Lifecycle, list[ev.MediaRecordStart]]:
    """Connected to AGENT in a queue that records every call; every record_start the machine sends is kept."""
    import msgspec

    m = to_queue()
    starts: list[ev.MediaRecordStart] = []
    send = m._send

    def spy(command: object, purpose: str) -> None:
        if isinstance(command, ev.MediaRecordStart):
            starts.append(command)
        send(command, purpose)  # type: ignore[arg-type]

    m._send = spy  # type: ignore[method-assign]
    m.handle(msgspec.structs.replace(offer(), record_percent=100), 1001.0)
    m.handle(connected_signal(), 1001.2)
    ack_all(m, m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(AGENT)), 1001.5), 1001.6)
    return m, starts


def segments(starts: list[ev.MediaRecordStart]) -> list[tuple[object, ...]]:
    return [(s.call_id, s.segment, s.kind, s.agent_id, s.consulted_agent_id, s.contact_id) for s in starts]


def test_consultations_and_transfers_are_recorded_as_segments_of_one_contact_in_order() -> None:
    m, starts = recorded_connected()
    m, _ = talking(m)  # consult SECOND
    m.desk(ev.DeskConsultCancel(**DESK), 1020.0)
    ack_all(m, m.take(), 1020.1)  # AGENT back with the caller
    m, _ = talking(m)  # consult again
    m.desk(ev.DeskConsultComplete(**DESK), 1030.0)
    ack_all(m, m.take(), 1030.1)  # the caller with SECOND
    a, b = str(AGENT), str(SECOND)
    assert segments(starts) == [
        (CALL, 0, "talk", a, "", CALL),
        (LEG, 1, "consult", a, b, CALL),  # the agents' bridge: first agent left, the consulted right
        (CALL, 2, "talk", a, "", CALL),
        (LEG, 3, "consult", a, b, CALL),
        (CALL, 4, "talk", b, "", CALL),
    ]
    ids = [s.recording_id for s in starts]
    assert ids[0] == CALL and len(set(ids)) == 5  # segment 0 keeps the contact's id; each its own
    assert ids[1] == uuid.uuid5(CALL, "segment:1")  # derived: a step taken again sends the same


def test_a_blind_transfers_next_agent_is_the_next_segment() -> None:
    import msgspec

    m, starts = recorded_connected()
    other = uuid.uuid4()
    m.desk(ev.DeskTransfer(**DESK, queue="Billing"), 1010.0, queue_id=QUEUE)
    ack_all(m, ack_all(m, m.take(), 1010.1), 1010.1)
    m.handle(msgspec.structs.replace(offer(1, agent=other), record_percent=100), 1012.0)
    m.handle(connected_signal(leg=LEG2, agent=other), 1012.2)
    ack_all(m, m.handle(ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=str(other)), 1012.5), 1012.6)
    assert segments(starts) == [
        (CALL, 0, "talk", str(AGENT), "", CALL),
        (CALL, 1, "talk", str(other), "", CALL),
    ]


def test_consult_a_queue_is_offered_to_whoever_routing_picks() -> None:
    m = to_connected()
    billing = uuid.uuid4()
    m.desk(ev.DeskConsult(**DESK, queue="Billing"), 1010.0, queue_id=billing)
    enqueue = command(m.take(), ev.RoutingEnqueue)
    assert enqueue.queue_id == billing and enqueue.preferred_agent_id is None and not enqueue.preferred_only
    anyone = uuid.uuid4()
    offered = ev.ContactOffered(
        tenant_id=T,
        call_id=enqueue.call_id,
        queue_id=str(billing),
        agent_id=str(anyone),
        offer_id=f"{enqueue.call_id}#0",
        expires_at=1030.0,
    )
    out = m.handle(OfferInfo(offer=offered), 1011.0)
    assert [kind for kind, _ in pushes(out, anyone)] == ["contact_offer"]
    # A desk phone cannot take a consultation: it ends at once, and the first agent is told why.
    m2 = to_connected()
    m2.desk(ev.DeskConsult(**DESK, queue="Billing"), 1010.0, queue_id=billing)
    enqueue = command(m2.take(), ev.RoutingEnqueue)
    on_phone = OfferInfo(offer=msgspec.structs.replace(offered, call_id=enqueue.call_id), endpoint="sip:x@h")
    out = m2.handle(on_phone, 1011.0)
    assert pushes(out, AGENT)[0][1]["reason"] == "agent_on_phone" and m2.state.consult is None
