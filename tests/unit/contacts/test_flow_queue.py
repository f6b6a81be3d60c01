"""A flow's queue in the contact lifecycle (ivr_step.handed_back, queue_wait.py): the IVR's step ends at the
queue node with its terms in `ivr.completed`, and the coordinator puts the caller in line, plays the node's
music and announcements, offers the call back that keeps the caller's place, gives up at the maximum wait
and continues the flow in the IVR (`ivr.run` at a node). Pure: time passed in, no NATS, no database."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from test_lifecycle import CALL, QUEUE, T, ack_all, command, in_flow, kinds, offer, transitions

from services.contacts.callbacks import CallbackInfo
from services.contacts.lifecycle import Contact, Lifecycle
from services.kernel import events as ev

pytestmark = pytest.mark.usefixtures("no_ambient_clock_or_ids")

SCREEN_POP = {"caller": "+15550100", "intent": "sales", "ivr.path": "menu>sales", "ivr.digits": "1"}


def wait(**terms: object) -> ev.IvrQueueWait:
    """The terms a queue node hands back (as services/ivr/nodes/queue.py builds them)."""
    stamp = {"tenant_id": T, "call_id": CALL, "id": uuid.UUID(int=1), "ts": 0.0}
    base: dict[str, object] = {
        "enqueue": ev.RoutingEnqueue(
            **stamp, queue="sales", queue_id=QUEUE, priority=70, skills={"spanish": 3}, attributes=SCREEN_POP
        ),
        "music": ev.MediaPlay(**stamp, text="Please hold, jazz follows.", loop=True),
        "announce_every": 30.0,
        "language": "fr",
        "callback_after": 5.0,
        "callback_offer": ev.MediaPlay(**stamp, text="Press 1 to be called back.", interruptible=True),
        "max_wait": 100.0,
        "on_timeout": "vm",
        "fallback": "sorry",
    }
    return ev.IvrQueueWait(**{**base, **terms})  # type: ignore[arg-type]


def completed(terms: ev.IvrQueueWait | None, outcome: str = "transferred") -> ev.IvrCompleted:
    return ev.IvrCompleted(
        tenant_id=T,
        call_id=CALL,
        flow="main",
        version=3,
        outcome=outcome,  # type: ignore[arg-type]
        path=["menu", "sales"],
        attributes=SCREEN_POP,
        queue=terms,
    )


def handed_back(terms: ev.IvrQueueWait | None = None) -> tuple[Lifecycle, list]:
    """The flow reached its queue node at t=1010: music and enqueue, still in_ivr until routing queues it."""
    m = in_flow()
    out = m.handle(completed(terms or wait()), 1010.0)
    assert kinds(out) == ["MediaPlay", "RoutingEnqueue"] and transitions(out) == []
    assert m.phase == "in_ivr"  # until routing says the caller is in line
    return m, out


def queued(m: Lifecycle, at: float = 1010.1) -> None:
    out = m.handle(ev.ContactQueued(tenant_id=T, call_id=CALL, queue=str(QUEUE), position=2), at)
    assert transitions(out) == ["queued"]


def dtmf(digit: str) -> ev.CallDtmf:
    return ev.CallDtmf(tenant_id=T, call_id=CALL, digit=digit, source="rfc4733")


def test_the_queue_node_hands_back_and_the_coordinator_enqueues_with_its_terms() -> None:
    m, out = handed_back()
    music, enqueue = command(out, ev.MediaPlay), command(out, ev.RoutingEnqueue)
    assert (music.text, music.loop, music.call_id, music.ts) == (
        "Please hold, jazz follows.",
        True,
        CALL,
        1010.0,
    )
    assert (enqueue.queue, enqueue.queue_id, enqueue.priority, enqueue.skills) == (
        "sales",
        QUEUE,
        70,
        {"spanish": 3},
    )
    assert enqueue.attributes == SCREEN_POP and enqueue.call_id == CALL
    # The coordinator's own ids (derived from the event), not the template's.
    assert uuid.UUID(int=1) not in (music.id, enqueue.id)
    assert m.state.record.outcome is None and m.state.record.ivr_path == ["menu", "sales"]
    queued(m)
    assert m.state.record.ivr_s == pytest.approx(10.1)
    # Announcements at the node's interval, in the tenant's language.
    assert m.next_timer() == pytest.approx(1015.0)  # the callback offer comes first (5 s)


def test_announcements_callback_offer_and_the_digit_keep_the_place() -> None:
    m, out = handed_back()
    ack_all(m, out, 1010.0)
    queued(m)
    out = m.timer(1015.0)
    offer_play = command(out, ev.MediaPlay)
    assert offer_play.text == "Press 1 to be called back." and offer_play.interruptible
    assert m.handle(dtmf("2"), 1016.0) == []  # not the callback digit
    out = m.handle(dtmf("1"), 1016.5)
    assert kinds(out) == ["IvrCallbackRequested", "RoutingCallback", "MediaPlay"]
    request, callback = command(out, ev.IvrCallbackRequested), command(out, ev.RoutingCallback)
    assert (request.queue, request.number, request.keep_place) == ("sales", "+15550100", True)
    assert (callback.queue_id, callback.keep_place, callback.number) == (QUEUE, True, "+15550100")
    assert callback.attributes["callback"] == "requested" and callback.attributes["intent"] == "sales"
    goodbye = command(out, ev.MediaPlay)
    assert "call you back" in (goodbye.text or "")
    # The request comes back with the tenant's settings; the goodbye ends; the caller is hung up.
    m.handle(CallbackInfo(request=request), 1016.6)
    out = m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=goodbye.id), 1019.0)
    assert kinds(out) == ["MediaHangup"] and command(out, ev.MediaHangup).cause == "callback"
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="normal_clearing", duration=9.0), 1019.1)
    assert transitions(out) == ["callback"] and kinds(out) == []  # no cancel: the place is kept
    assert m.state.flow_wait is None and m.state.give_up_at is None


def test_an_announcement_plays_at_the_interval_and_the_music_comes_back() -> None:
    m, out = handed_back(wait(callback_after=None, callback_offer=None))
    queued(m)
    assert m.next_timer() == pytest.approx(1040.0)
    out = m.timer(1040.0)
    said = command(out, ev.MediaPlay)
    assert said.text is not None and "2" in said.text and said.voice == "fr-fr"
    out = m.handle(ev.CallPlayFinished(tenant_id=T, call_id=CALL, play_id=said.id), 1043.0)
    assert command(out, ev.MediaPlay).text == "Please hold, jazz follows."


def test_the_maximum_wait_cancels_and_continues_the_flow_at_on_timeout() -> None:
    m, out = handed_back(wait(callback_after=None, announce_every=None))
    ack_all(m, out, 1010.0)
    queued(m)
    assert m.next_timer() == pytest.approx(1110.0)
    out = m.timer(1110.0)
    assert kinds(out) == ["RoutingCancel", "IvrRun"] and transitions(out) == ["in_ivr"]
    assert command(out, ev.RoutingCancel).reason == "max_wait"
    run = command(out, ev.IvrRun)
    assert (run.flow, run.node, run.flow_id, run.scope) == ("main", "vm", None, "")
    assert run.attributes["intent"] == "sales" and run.attributes["ivr.path"] == "menu>sales"
    # Routing's abandon is our own cancel: the contact goes on in the IVR.
    gone = ev.ContactAbandoned(
        tenant_id=T, call_id=CALL, queue_id=str(QUEUE), reason="max_wait", waited_s=100.0
    )
    assert transitions(m.handle(gone, 1110.1)) == []
    m.handle(ev.IvrNodeEntered(tenant_id=T, call_id=CALL, flow="main", version=3, node="vm"), 1110.2)
    out = m.handle(completed(None, "self_served"), 1130.0)
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="normal_clearing", duration=9.0), 1130.1)
    assert transitions(out) == ["ended"] and m.state.record.outcome == "self_served"
    assert m.state.record.ivr_path == ["menu", "sales", "vm"]


def test_a_refused_enqueue_continues_at_the_fallback_or_apologizes() -> None:
    m, out = handed_back()
    out = m.replied(command(out, ev.RoutingEnqueue).id, False, "unknown_queue", 1010.1)
    run = command(out, ev.IvrRun)
    assert (run.node, run.attributes["ivr.fallback"]) == ("sorry", "command failed: unknown_queue")
    assert m.phase == "in_ivr" and m.state.flow_wait is None
    m, out = handed_back(wait(fallback=""))
    out = m.replied(command(out, ev.RoutingEnqueue).id, False, "queue_closed", 1010.1)
    assert kinds(out) == ["MediaPlay", "MediaHangup"] and transitions(out) == ["failed"]


def test_the_caller_leaving_before_routing_queues_them_is_cancelled() -> None:
    m, out = handed_back()
    ack_all(m, out, 1010.0)
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="remote_bye", duration=9.0), 1011.0)
    assert kinds(out) == ["RoutingCancel"] and transitions(out) == ["abandoned"]
    assert m.state.record.outcome == "abandoned_in_ivr"


def test_an_agent_ringing_holds_the_maximum_wait_and_the_accept_stops_the_music() -> None:
    m, _ = handed_back(wait(callback_after=None, announce_every=None, max_wait=10.0))
    queued(m)
    m.handle(offer(), 1019.0)
    assert m.timer(1020.0) == [] and m.phase == "offered"
    assert m.state.give_up_at == pytest.approx(1031.0)  # the offer's end, then a second
    accepted = ev.ContactAccepted(tenant_id=T, call_id=CALL, agent_id=m.state.offer_agent_id or "")
    assert "MediaStop" in kinds(m.handle(accepted, 1021.0))


def test_a_restarted_coordinator_plays_the_nodes_music_again() -> None:
    m, out = handed_back()
    queued(m)
    saved = msgspec.json.encode(m.state)
    again = Lifecycle(msgspec.json.decode(saved, type=Contact))
    out = again.resume(1050.0)
    assert command(out, ev.MediaPlay).text == "Please hold, jazz follows."
    assert again.next_timer() == pytest.approx(1015.0)
    # Nothing to play to a contact not in line.
    assert (
        Lifecycle(msgspec.json.decode(msgspec.json.encode(in_flow().state), type=Contact)).resume(1.0) == []
    )


def test_a_call_back_agreed_continues_the_flow_at_on_callback() -> None:
    m, out = handed_back(wait(on_callback="thanks", announce_every=None))
    ack_all(m, out, 1010.0)
    queued(m)
    m.timer(1015.0)  # the offer
    out = m.handle(dtmf("2"), 1016.0)
    assert kinds(out) == []  # not the node's digit: nothing
    out = m.handle(dtmf("1"), 1016.5)
    assert kinds(out) == ["IvrCallbackRequested", "RoutingCallback", "IvrRun"] and transitions(out) == [
        "in_ivr"
    ]
    run = command(out, ev.IvrRun)
    assert (run.flow, run.node) == ("main", "thanks") and run.attributes["callback"] == "requested"
    assert m.next_timer() is None  # the node's times are over
    m.handle(CallbackInfo(request=command(out, ev.IvrCallbackRequested)), 1016.6)
    m.handle(completed(None, "self_served"), 1020.0)
    out = m.handle(ev.CallEnded(tenant_id=T, call_id=CALL, cause="normal_clearing", duration=9.0), 1020.1)
    assert transitions(out) == ["callback"] and kinds(out) == []
