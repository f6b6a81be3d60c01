# A supervisor's hand on the line (core/floor.py): to the front of the queue, and a pull to one agent.
from __future__ import annotations

from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    Channel,
    ContactOffered,
    Engine,
    PositionChanged,
    Prioritize,
    QueueConfig,
    Reject,
    SetState,
    SetVirtualHold,
    TransferToQueue,
)


def _busy_queue() -> Harness:
    """a1 on a call in queue q, c1..c3 waiting (c1 with the highest priority), a2 away."""
    h = Harness(simple_config(["a1", "a2"], away_reasons=["training"], queue=QueueConfig(queue_id="q")))
    h.login("a1")
    h.enqueue("busy")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("busy"))
    h.enqueue("c1", priority=90)
    h.enqueue("c2")
    h.enqueue("c3")
    h.ok(AgentLogin, agent_id="a2", away_reason="training")
    return h


def test_front_goes_before_higher_priorities_and_the_latest_front_first() -> None:
    h = _busy_queue()
    assert [h.pos(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    r = h.ok(Prioritize, contact_id="c3")
    assert r.reply.data["position"] == 1
    assert [h.pos(c) for c in ("c3", "c1", "c2")] == [1, 2, 3]
    moved = {p.contact_id: p.position for p in of_type(r.outputs, PositionChanged)}
    assert moved == {"c3": 1, "c1": 2, "c2": 3}  # everyone behind is told their new place
    h.ok(Prioritize, contact_id="c2")
    assert [h.pos(c) for c in ("c2", "c3", "c1")] == [1, 2, 3]
    # The next free agent takes the front.
    h.ok(SetState, agent_id="a2", state="available")
    assert h.offers() == {"c2": "a2"}


def test_front_stands_through_a_transfer_and_survives_a_snapshot() -> None:
    qs = [QueueConfig(queue_id="q"), QueueConfig(queue_id="r")]
    profiles = [
        AgentProfile(agent_id="a1", queues=["q", "r"], capacity={Channel.VOICE: 1}),
        AgentProfile(agent_id="a2", queues=["r"], capacity={Channel.VOICE: 1}),
    ]
    h = Harness(simple_config(queues=qs, profiles=profiles, away_reasons=["training"]))
    for a in ("a1", "a2"):
        h.ok(AgentLogin, agent_id=a, away_reason="training")
    for c in ("r1", "r2"):
        h.enqueue(c, queue_id="r")
    h.enqueue("c1", queue_id="q")
    h.ok(Prioritize, contact_id="c1")
    h.ok(TransferToQueue, contact_id="c1", queue_id="r")
    assert h.pos("c1") == 1
    restored = Engine.restore(h.engine.snapshot())
    assert restored.snapshot() == h.engine.snapshot()
    assert restored.position("c1")["position"] == 1  # type: ignore[index]


def test_pull_offers_to_an_away_agent_now_and_back_to_away_after() -> None:
    h = _busy_queue()
    r = h.ok(Prioritize, contact_id="c3", agent_id="a2")
    assert r.reply.data["agent_id"] == "a2"
    assert h.offers() == {"c3": "a2"}
    assert [h.pos(c) for c in ("c1", "c2")] == [1, 2]
    states = [(s.old, s.new) for s in of_type(r.outputs, AgentStateChanged) if s.agent_id == "a2"]
    assert states == [("away", "reserved")]
    assert of_type(r.outputs, ContactOffered)[0].contact_id == "c3"
    # Declined: back in line at its own place, and the agent away again with its reason.
    h.ok(Reject, agent_id="a2", offer_id=h.offer_id("c3"))
    assert h.pos("c3") == 3
    agent = h.engine.state.agents["a2"]
    assert (agent.state, agent.reason) == (AgentState.AWAY, "training")


def test_refusals_change_nothing() -> None:
    h = _busy_queue()
    cases = {
        ("nope", None): "unknown_contact",
        ("busy", None): "not_waiting",  # connected
        ("c1", "a1"): "agent_busy",  # on a call
        ("c1", "a9"): "unknown_agent",
        ("c1", "a3"): "unknown_agent",
    }
    for (contact, agent), code in cases.items():
        r = h.cmd(Prioritize, contact_id=contact, agent_id=agent)
        assert (r.ok, r.code) == (False, code), (contact, agent, r.reply)
    assert [h.pos(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    assert h.offers() == {} and h.engine.agent_state("a2") is AgentState.AWAY
    h.ok(SetVirtualHold, contact_id="c2", on=True)
    assert h.cmd(Prioritize, contact_id="c2").code == "not_waiting"
    assert h.pos("c2") == 2


def test_pull_refused_for_an_agent_outside_the_queue_or_already_offered() -> None:
    qs = [QueueConfig(queue_id="q"), QueueConfig(queue_id="r")]
    profiles = [
        AgentProfile(agent_id="a1", queues=["r"], capacity={Channel.VOICE: 1}),
        AgentProfile(agent_id="a2", queues=["q"], capacity={Channel.VOICE: 1}),
    ]
    h = Harness(simple_config(queues=qs, profiles=profiles, away_reasons=["training"]))
    h.enqueue("c1")
    h.enqueue("c2")
    assert h.cmd(Prioritize, contact_id="c1", agent_id="a2").code == "not_logged_in"
    h.login("a1", "a2")  # a2 is offered c1 at once
    assert h.offers() == {"c1": "a2"}
    assert h.cmd(Prioritize, contact_id="c2", agent_id="a1").code == "agent_not_in_queue"
    assert h.cmd(Prioritize, contact_id="c2", agent_id="a2").code == "agent_busy"
    assert h.cmd(Prioritize, contact_id="c1", agent_id="a2").code == "not_waiting"  # offered
    assert h.offers() == {"c1": "a2"}
