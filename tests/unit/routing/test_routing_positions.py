# Position and expected wait (published only when they change), queue status, virtual hold and
# callback_due, abandon.
from __future__ import annotations

from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLogout,
    CallbackDue,
    Cancel,
    ContactAbandoned,
    ContactQueued,
    EndContact,
    PositionChanged,
    QueueConfig,
    SetState,
    SetVirtualHold,
    WrapUpDone,
)
from services.routing.core.wait_estimate import average_handle_time, expected_wait, record_handle_time


def test_expected_wait_formula() -> None:
    assert expected_wait(1, 180.0, 2, 5) == 90
    assert expected_wait(3, 100.0, 4, 5) == 75
    assert expected_wait(1, 61.0, 1, 5) == 65  # rounded up to the granularity
    assert expected_wait(2, 30.0, 1, 1) == 60
    assert expected_wait(1, 180.0, 0, 5) is None  # nobody staffed: unknown
    samples: list[float] = []
    assert average_handle_time(samples, 180.0) == 180.0  # no history: default
    for x in (100.0, 200.0, 300.0, 400.0):
        record_handle_time(samples, x, window=3)
    assert samples == [200.0, 300.0, 400.0]
    assert average_handle_time(samples, 180.0) == 300.0


def _positions(h: Harness) -> list[tuple[str, int, int | None]]:
    return [(p.contact_id, p.position, p.expected_wait_s) for p in of_type(h.log, PositionChanged)]


def test_positions_published_only_when_they_change() -> None:
    q = QueueConfig(queue_id="q", default_aht_s=100, ewt_round_s=1, wrap_up_s=0)
    h = Harness(simple_config(["a1", "a2"], queue=q))
    h.login("a1")
    h.enqueue("busy")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("busy"))
    for c in ("c1", "c2", "c3"):
        h.enqueue(c)
    queued = [(e.contact_id, e.position, e.expected_wait_s) for e in of_type(h.log, ContactQueued)]
    assert queued[1:] == [("c1", 1, 100), ("c2", 2, 200), ("c3", 3, 300)]
    assert _positions(h) == []  # nobody moved yet
    h.log.clear()
    h.ok(Cancel, contact_id="c1")
    assert _positions(h) == [("c2", 1, 100), ("c3", 2, 200)]
    h.log.clear()
    h.login("a2")  # a2 takes c2; c3 moves up and twice the staff halves its wait
    assert _positions(h) == [("c3", 1, 50)]
    h.log.clear()
    h.tick(10)  # time alone changes nothing
    assert _positions(h) == []
    h.ok(Accept, agent_id="a2", offer_id=h.offer_id("c2"))
    assert _positions(h) == []
    h.tick(50)
    h.ok(EndContact, contact_id="busy")  # a1: 60 s handle time, AHT now 60 -> c3 offered to a1 at once
    assert h.offers("c3") == {"c3": "a1"}
    assert h.engine.state.aht["q"] == [60.0]


def test_positions_are_batched_at_most_once_per_interval() -> None:
    q = QueueConfig(queue_id="q", default_aht_s=100, ewt_round_s=1, wrap_up_s=0)
    h = Harness(simple_config(["a1", "a2"], queue=q), position_interval_s=1.0)
    h.login("a1")
    h.enqueue("busy")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("busy"))
    for c in ("c1", "c2", "c3", "c4"):
        h.enqueue(c)
    assert h.engine.next_timer() == h.now + 1.0
    h.ok(Cancel, contact_id="c1")
    h.tick(0.5)
    h.ok(Cancel, contact_id="c2")
    assert _positions(h) == []  # nothing published yet
    assert h.pos("c4") == 2  # but a query is always exact
    h.tick(0.5)
    # one publication per contact with its final place, not one per move
    assert _positions(h) == [("c3", 1, 100), ("c4", 2, 200)]
    assert h.engine.next_timer() is None
    restored = Harness(position_interval_s=1.0)
    restored.engine = type(h.engine).restore(h.engine.snapshot())
    assert restored.engine.state.dirty_queues == {}


def test_expected_wait_follows_handle_times_and_staffing() -> None:
    q = QueueConfig(queue_id="q", default_aht_s=100, ewt_round_s=1, wrap_up_s=0)
    h = Harness(simple_config(["a1", "a2"], queue=q))
    h.login("a1", "a2")
    h.enqueue("x1")
    h.enqueue("x2")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("x1"))
    h.ok(Accept, agent_id="a2", offer_id=h.offer_id("x2"))
    h.enqueue("w")
    assert h.where("w")["expected_wait_s"] == 50
    h.ok(SetState, agent_id="a2", state="away", reason="break")  # pending: still staffed
    assert h.where("w")["expected_wait_s"] == 50
    h.tick(20)
    h.ok(EndContact, contact_id="x2")  # a2 goes away: one staffed; AHT 20 s
    assert h.where("w")["expected_wait_s"] == 20
    assert _positions(h)[-1] == ("w", 1, 20)
    status = h.status("q")
    assert status["waiting"] == 1 and status["staffed_slots"] == 1
    assert status["agents"] == {"away": 1, "on_contact": 1}
    assert status["longest_wait_s"] == 20.0
    assert status["expected_wait_s"] == 40  # for a new arrival: position 2
    h.ok(AgentLogout, agent_id="a2")
    assert h.status("q")["agents"] == {"on_contact": 1}


def test_virtual_hold_keeps_place_and_gets_callback_due_instead_of_offer() -> None:
    q = QueueConfig(queue_id="q", callback_timeout_s=120, wrap_up_s=0)
    h = Harness(simple_config(["a1"], queue=q))
    h.login("a1")
    h.enqueue("busy")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("busy"))
    h.enqueue("c1")
    h.enqueue("c2")
    h.ok(SetVirtualHold, contact_id="c1", on=True)
    assert h.cmd(SetVirtualHold, contact_id="c1", on=True).code == "already_on_virtual_hold"
    assert h.pos("c1") == 1  # still holds its place
    h.ok(EndContact, contact_id="busy")
    due = of_type(h.log, CallbackDue)
    assert [(d.contact_id, d.expires_at) for d in due] == [("c1", h.now + 120)]
    assert h.offers() == {"c2": "a1"}  # the agent is not held for the callback
    assert h.engine.state.contacts["c1"].state.value == "callback_due"
    assert h.pos("c1") == 1
    # the customer answers the call-back: matched at its place, ahead of anyone newer
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c2"))
    h.enqueue("c3")
    h.ok(SetVirtualHold, contact_id="c1", on=False)
    h.ok(EndContact, contact_id="c2")
    assert h.offers() == {"c1": "a1"}


def test_callback_due_expires_if_nobody_answers() -> None:
    q = QueueConfig(queue_id="q", callback_timeout_s=60)
    h = Harness(simple_config(["a1"], queue=q))
    h.enqueue("c1", virtual_hold=True)
    h.login("a1")
    assert [d.contact_id for d in of_type(h.log, CallbackDue)] == ["c1"]
    assert h.engine.next_timer() == h.now + 60
    out = h.tick(60)
    abandoned = of_type(out, ContactAbandoned)
    assert [(a.contact_id, a.reason) for a in abandoned] == [("c1", "callback_unanswered")]
    assert h.engine.state.contacts == {}


def test_cancel_while_waiting_offered_and_connected() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", wrap_up_s=10)))
    h.enqueue("w")
    h.tick(7)
    h.ok(Cancel, contact_id="w")
    h.login("a1")
    h.enqueue("o")
    h.ok(Cancel, contact_id="o", reason="caller_hung_up")
    assert h.engine.agent_state("a1").value == "available"
    h.enqueue("c")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c"))
    r = h.ok(Cancel, contact_id="c")
    assert r.reply.data == {"ended": True}
    assert h.engine.agent_state("a1").value == "wrap_up"
    abandoned = [(a.contact_id, a.waited_s, a.reason, a.agent_id) for a in of_type(h.log, ContactAbandoned)]
    assert abandoned == [("w", 7.0, "abandoned", None), ("o", 0.0, "caller_hung_up", "a1")]
    assert h.cmd(Cancel, contact_id="c").code == "unknown_contact"
    assert h.cmd(EndContact, contact_id="zzz").code == "unknown_contact"
    h.ok(WrapUpDone, agent_id="a1")
