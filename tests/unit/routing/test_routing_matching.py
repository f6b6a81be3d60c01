# Who gets which contact: priority then arrival, VIP rules, strategies and their tie-breaks, skills and
# bullseye steps over time, attributes, preferred agent window, ring-no-answer and reject.
from __future__ import annotations

from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentLogout,
    AgentProfile,
    AgentState,
    Cancel,
    Channel,
    ContactOffered,
    ContactRejected,
    ContactRequeued,
    EndContact,
    Enqueue,
    ExpansionStep,
    PriorityRule,
    QueueConfig,
    Reject,
    SetState,
    Strategy,
    WrapUpDone,
)


def _serve(h: Harness, agent_id: str) -> str:
    """Let the agent accept whatever it is offered, finish it and wrap up; return the contact id."""
    (contact_id,) = [c for c, a in h.offers().items() if a == agent_id]
    h.ok(Accept, agent_id=agent_id, offer_id=h.offer_id(contact_id))
    h.ok(EndContact, contact_id=contact_id)
    if h.engine.agent_state(agent_id) is AgentState.WRAP_UP:
        h.ok(WrapUpDone, agent_id=agent_id)
    return contact_id


def test_priority_then_arrival_order() -> None:
    h = Harness(simple_config(["a1"]))
    h.enqueue("low-early", priority=10)
    h.tick(1)
    h.enqueue("mid-1")
    h.tick(1)
    h.enqueue("high", priority=90)
    h.tick(1)
    h.enqueue("mid-2")
    assert [h.pos(c) for c in ("high", "mid-1", "mid-2", "low-early")] == [1, 2, 3, 4]
    h.login("a1")
    served = [_serve(h, "a1") for _ in range(4)]
    assert served == ["high", "mid-1", "mid-2", "low-early"]


def test_vip_rule_raises_priority() -> None:
    q = QueueConfig(queue_id="q", priority_rules=[PriorityRule(attribute="vip", equals="true", raise_by=30)])
    h = Harness(simple_config(["a1"], queue=q))
    h.enqueue("normal", priority=60)
    h.enqueue("vip", attributes={"vip": "true"})  # 50 + 30 = 80
    h.enqueue("capped", priority=95, attributes={"vip": "true"})  # capped at 99
    assert h.engine.state.contacts["vip"].priority == 80
    assert h.engine.state.contacts["capped"].priority == 99
    h.login("a1")
    assert [_serve(h, "a1") for _ in range(3)] == ["capped", "vip", "normal"]


def _strategy_harness(strategy: Strategy, skills: dict[str, dict[str, int]] | None = None) -> Harness:
    q = QueueConfig(queue_id="q", strategy=strategy, skills={"billing": 1}, wrap_up_s=0)
    skills = skills or {}
    profiles = [
        AgentProfile(
            agent_id=a,
            queues=["q"],
            skills=skills.get(a, {"billing": 5}),
            capacity={Channel.VOICE: 1, Channel.CHAT: 3},
        )
        for a in ("a1", "a2", "a3")
    ]
    return Harness(simple_config(queue=q, profiles=profiles))


def test_longest_idle_picks_the_agent_free_the_longest_and_ties_by_id() -> None:
    h = _strategy_harness(Strategy.LONGEST_IDLE)
    h.login("a3", "a2", "a1")  # same instant: tie broken by agent id
    h.enqueue("c1")
    assert h.offers() == {"c1": "a1"}
    h.tick(5)
    _serve(h, "a1")  # a1 becomes available again at t+5: now the least idle
    h.enqueue("c2")
    assert h.offers() == {"c2": "a2"}
    h.ok(SetState, agent_id="a3", state="away", reason="break")
    h.tick(1)
    h.ok(SetState, agent_id="a3", state="available")  # back from break: idle time restarts
    h.enqueue("c3")
    assert h.offers("c3") == {"c3": "a1"}


def test_rejecting_does_not_reset_idle_time() -> None:
    h = _strategy_harness(Strategy.LONGEST_IDLE)
    h.login("a1")
    h.tick(1)
    h.login("a2")
    h.enqueue("c1")
    assert h.offers() == {"c1": "a1"}
    h.ok(Reject, agent_id="a1", offer_id=h.offer_id("c1"))
    assert h.offers() == {"c1": "a2"}  # not back to the agent who rejected it
    h.enqueue("c2")
    assert h.offers("c2") == {"c2": "a1"}  # a1 is still the longest idle


def test_most_skilled_picks_highest_proficiency_then_longest_idle() -> None:
    skills = {"a1": {"billing": 4}, "a2": {"billing": 9}, "a3": {"billing": 9}}
    h = _strategy_harness(Strategy.MOST_SKILLED, skills)
    h.login("a1")
    h.tick(1)
    h.login("a3")
    h.tick(1)
    h.login("a2")
    h.enqueue("c1")
    assert h.offers() == {"c1": "a3"}  # 9 beats 4; a3 idle longer than a2
    h.enqueue("c2")
    assert h.offers("c2") == {"c2": "a2"}
    h.enqueue("c3")
    assert h.offers("c3") == {"c3": "a1"}


def test_round_robin_cycles_by_agent_id() -> None:
    h = _strategy_harness(Strategy.ROUND_ROBIN)
    h.login("a1", "a2", "a3")
    order = []
    for i in range(7):
        h.enqueue(f"c{i}")
        order.append(h.offers(f"c{i}")[f"c{i}"])
        _serve(h, order[-1])
    assert order == ["a1", "a2", "a3", "a1", "a2", "a3", "a1"]
    h.ok(SetState, agent_id="a2", state="away", reason="break")
    for i in range(7, 10):
        h.enqueue(f"c{i}")
        order.append(h.offers(f"c{i}")[f"c{i}"])
        _serve(h, order[-1])
    assert order[7:] == ["a3", "a1", "a3"]  # a2 skipped while away


def test_least_occupied_prefers_fewest_chats_then_least_busy_time() -> None:
    chat = QueueConfig(queue_id="q", channel=Channel.CHAT, strategy=Strategy.LEAST_OCCUPIED, wrap_up_s=0)
    profiles = [
        AgentProfile(agent_id=a, queues=["q"], capacity={Channel.CHAT: 3}) for a in ("a1", "a2", "a3")
    ]
    h = Harness(simple_config(queue=chat, profiles=profiles))
    h.login("a1", "a2", "a3")
    h.enqueue("x", "q")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("x"))
    h.tick(100)
    h.ok(EndContact, contact_id="x")  # a1 was busy 100 s
    got = []
    for i in range(6):
        h.enqueue(f"c{i}", "q")
        agent = h.offers(f"c{i}")[f"c{i}"]
        got.append(agent)
        h.ok(Accept, agent_id=agent, offer_id=h.offer_id(f"c{i}"))
    # everyone at 0 chats: a2 (0 busy s) before a3 (tie, id) before a1 (100 busy s); then 1 chat each...
    assert got == ["a2", "a3", "a1", "a2", "a3", "a1"]


def test_skill_minimum_and_attribute_matching() -> None:
    q = QueueConfig(queue_id="q", skills={"billing": 6})
    profiles = [
        AgentProfile(agent_id="novice", queues=["q"], skills={"billing": 3}, attributes={"language": ["es"]}),
        AgentProfile(agent_id="expert", queues=["q"], skills={"billing": 8}, attributes={"language": ["en"]}),
        AgentProfile(
            agent_id="expert-mx",
            queues=["q"],
            skills={"billing": 7},
            attributes={"language": ["es"], "dialect": ["es-MX"]},
        ),
    ]
    h = Harness(simple_config(queue=q, profiles=profiles))
    h.login("novice", "expert", "expert-mx")
    h.enqueue("es", requires={"language": "es"})
    assert h.offers() == {"es": "expert-mx"}  # novice speaks es but lacks the skill level
    h.enqueue("mx", requires={"dialect": "es-MX"})
    assert "mx" not in h.offers()  # only expert-mx qualifies and it is reserved
    h.enqueue("plain")
    assert h.offers("plain") == {"plain": "expert"}
    h.enqueue("pt", requires={"language": "pt"})
    h.enqueue("deep", skills={"billing": 9})
    h.ok(Reject, agent_id="expert-mx", offer_id=h.offer_id("es"))
    assert h.offers("mx") == {"mx": "expert-mx"}
    assert "pt" not in h.offers() and "deep" not in h.offers()


def test_bullseye_widens_in_timed_steps() -> None:
    q = QueueConfig(
        queue_id="q",
        skills={"tech": 1},
        expansion=[
            ExpansionStep(after_s=0, min_proficiency=8),
            ExpansionStep(after_s=15, min_proficiency=5),
            ExpansionStep(after_s=30, min_proficiency=0),
        ],
    )
    profiles = [
        AgentProfile(agent_id="mid", queues=["q"], skills={"tech": 6}),
        AgentProfile(agent_id="none", queues=["q"], skills={}),
    ]
    h = Harness(simple_config(queue=q, profiles=profiles))
    h.login("mid", "none")
    h.enqueue("c1")
    h.enqueue("c2")
    assert h.offers() == {}
    assert h.engine.next_timer() == h.now + 15
    h.tick(14.9)
    assert h.offers() == {}
    h.tick(0.1)
    assert h.offers() == {"c1": "mid"}  # >= 5 at 15 s
    assert h.engine.next_timer() == h.now + 15
    h.tick(15)
    assert h.offers() == {"c1": "mid", "c2": "none"}  # anyone in the queue at 30 s
    assert h.engine.state.contacts["c2"].step == 2


def test_contact_arriving_late_starts_its_own_steps() -> None:
    q = QueueConfig(
        queue_id="q",
        skills={"tech": 1},
        expansion=[ExpansionStep(after_s=0, min_proficiency=8), ExpansionStep(after_s=10, min_proficiency=1)],
    )
    h = Harness(
        simple_config(queue=q, profiles=[AgentProfile(agent_id="a", queues=["q"], skills={"tech": 2})])
    )
    h.login("a")
    h.enqueue("c1")
    h.tick(6)
    h.enqueue("c2")
    h.tick(4)
    assert h.offers() == {"c1": "a"}
    h.ok(Cancel, contact_id="c1")
    assert h.offers() == {}  # c2 has waited 4 s only
    h.tick(6)
    assert h.offers() == {"c2": "a"}


def test_preferred_agent_gets_the_contact_first_for_the_window() -> None:
    q = QueueConfig(queue_id="q", preferred_agent_window_s=20)
    h = Harness(simple_config(["a1", "a2", "a3"], queue=q))
    h.login("a1", "a2", "a3")
    h.enqueue("busy-maker")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("busy-maker"))
    h.enqueue("old")
    h.ok(Accept, agent_id="a2", offer_id=h.offer_id("old"))
    h.enqueue("fan", preferred_agent_id="a1")
    assert "fan" not in h.offers()  # a3 is free, but a1 is preferred for 20 s
    h.enqueue("other")
    assert h.offers("other") == {"other": "a3"}
    h.ok(Accept, agent_id="a3", offer_id=h.offer_id("other"))
    h.tick(10)
    h.ok(EndContact, contact_id="busy-maker")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.offers() == {"fan": "a1"}


def test_preferred_only_is_offered_to_that_agent_alone_and_refused_without_it() -> None:
    """A consultation of one agent: never anyone else's, not after the window, not after a decline."""
    q = QueueConfig(queue_id="q", preferred_agent_window_s=20)
    h = Harness(simple_config(["a1", "a2", "a3"], queue=q))
    h.login("a2", "a3")
    refused = h.cmd(Enqueue, contact_id="k0", queue_id="q", preferred_agent_id="a1", preferred_only=True)
    assert refused.reply.code == "agent_not_in_queue" and "k0" not in h.engine.state.contacts
    h.enqueue("k", preferred_agent_id="a2", preferred_window_s=5, preferred_only=True)
    assert h.offers() == {"k": "a2"}
    h.ok(Reject, agent_id="a2", offer_id=h.offer_id("k"))
    h.tick(30)
    assert h.offers() == {}  # a3 is free all along


def test_preferred_window_expires_then_anyone() -> None:
    q = QueueConfig(queue_id="q", preferred_agent_window_s=20)
    h = Harness(simple_config(["a1", "a2"], queue=q))
    h.login("a1", "a2")
    h.ok(SetState, agent_id="a1", state="away", reason="break")
    h.enqueue("fan", preferred_agent_id="a1", preferred_window_s=8)
    assert h.offers() == {}
    h.tick(8)
    assert h.offers() == {"fan": "a2"}


def test_preferred_agent_beats_older_contacts_and_logout_ends_the_window() -> None:
    q = QueueConfig(queue_id="q", preferred_agent_window_s=60)
    h = Harness(simple_config(["a1", "a2"], queue=q))
    h.login("a1")
    h.enqueue("first")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("first"))
    h.enqueue("older")
    h.enqueue("fan", preferred_agent_id="a1")
    h.ok(EndContact, contact_id="first")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.offers() == {"fan": "a1"}
    h.ok(Reject, agent_id="a1", offer_id=h.offer_id("fan"))
    # the window closed with the offer: now plain order (older first), and a1 will not get fan again
    assert h.offers() == {"older": "a1"}
    h.enqueue("fan2", preferred_agent_id="a1")
    h.login("a2")
    assert "fan2" not in h.offers()  # waits for a1 (fan is older, so a2 takes fan)
    assert h.offers("fan") == {"fan": "a2"}
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("older"))
    h.ok(Accept, agent_id="a2", offer_id=h.offer_id("fan"))
    h.ok(EndContact, contact_id="fan")
    h.ok(WrapUpDone, agent_id="a2")
    assert "fan2" not in h.offers()
    h.ok(EndContact, contact_id="older")
    h.ok(AgentLogout, agent_id="a1")  # from wrap-up; a1 gone: no point waiting for it
    assert h.offers("fan2") == {"fan2": "a2"}


def test_ring_no_answer_puts_agent_away_and_contact_back_at_its_place() -> None:
    q = QueueConfig(queue_id="q", offer_timeout_s=15)
    h = Harness(simple_config(["a1", "a2"], queue=q))
    h.login("a1")
    h.enqueue("c1")
    h.tick(1)
    h.enqueue("c2")
    h.tick(1)
    h.enqueue("c3")
    assert h.offers() == {"c1": "a1"}
    assert [h.pos(c) for c in ("c2", "c3")] == [1, 2]
    out = h.tick(15)
    rejected = of_type(out, ContactRejected)
    assert [(r.contact_id, r.agent_id, r.reason) for r in rejected] == [("c1", "a1", "no_answer")]
    assert h.engine.agent_state("a1") is AgentState.AWAY
    assert h.engine.state.agents["a1"].reason == "missed"
    requeued = of_type(out, ContactRequeued)
    assert [(r.contact_id, r.position) for r in requeued] == [("c1", 1)]
    assert [h.pos(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    assert h.engine.state.contacts["c1"].seq == 0  # same arrival order as before
    h.login("a2")
    assert h.offers() == {"c1": "a2"}
    h.ok(SetState, agent_id="a1", state="available")
    assert h.offers("c2") == {"c2": "a1"}


def test_ring_no_answer_with_a_higher_priority_newcomer_keeps_original_key() -> None:
    h = Harness(simple_config(["a1", "a2"], queue=QueueConfig(queue_id="q", offer_timeout_s=5)))
    h.login("a1")
    h.enqueue("c1", priority=40)
    h.enqueue("vip", priority=90)
    h.enqueue("c3", priority=40)
    h.tick(5)
    assert [h.pos(c) for c in ("vip", "c1", "c3")] == [1, 2, 3]


def test_accept_reject_by_the_wrong_agent_or_stale_offer_are_refused() -> None:
    h = Harness(simple_config(["a1", "a2"], queue=QueueConfig(queue_id="q", offer_timeout_s=5)))
    h.login("a1", "a2")
    h.enqueue("c1")
    offer = h.offer_id("c1")
    assert h.cmd(Accept, agent_id="a2", offer_id=offer).code == "not_your_offer"
    assert h.cmd(Reject, agent_id="a2", offer_id=offer).code == "not_your_offer"
    assert h.cmd(Reject, agent_id="a1", offer_id=offer, away_reason="nap").code == "unknown_reason"
    h.tick(5)  # no answer: offered to a2 under a new offer id
    assert h.cmd(Accept, agent_id="a1", offer_id=offer).code == "unknown_offer"
    assert h.offers() == {"c1": "a2"} and h.offer_id("c1") != offer


def test_accept_after_expiry_is_refused_even_before_the_timer_is_fired() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", offer_timeout_s=5)))
    h.login("a1")
    h.enqueue("c1")
    offer = h.offer_id("c1")
    h.now += 6  # the adapter is late with handle_timer; the command still sees the expiry first
    r = h.cmd(Accept, agent_id="a1", offer_id=offer)
    assert r.code == "unknown_offer"
    assert [type(o).__name__ for o in r.outputs][:2] == ["ContactRejected", "ContactRequeued"]


def test_reject_with_away_reason() -> None:
    h = Harness(simple_config(["a1", "a2"]))
    h.login("a1")
    h.enqueue("c1")
    h.ok(Reject, agent_id="a1", offer_id=h.offer_id("c1"), away_reason="break")
    assert h.engine.agent_state("a1") is AgentState.AWAY
    h.ok(AgentLogin, agent_id="a2")
    assert h.offers() == {"c1": "a2"}


def test_offers_are_one_per_contact_and_per_agent() -> None:
    h = Harness(simple_config(["a1", "a2"]))
    h.login("a1", "a2")
    for i in range(5):
        h.enqueue(f"c{i}")
    offered = of_type(h.log, ContactOffered)
    assert [(o.contact_id, o.agent_id) for o in offered] == [("c0", "a1"), ("c1", "a2")]
