# Agent state machine: every transition legal and illegal, commands in every state, seats, reason codes,
# capacity per channel, wrap-up.
from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    TRANSITIONS,
    Accept,
    Agent,
    AgentLogin,
    AgentLogout,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    Channel,
    ContactRequeued,
    EndContact,
    Enqueue,
    QueueConfig,
    Reject,
    Rejected,
    SetState,
    WrapUpDone,
    can_take,
)
from services.routing.core.agent import Slot, SlotPhase

S = AgentState


@pytest.mark.parametrize(("old", "new"), list(itertools.product(list(S), list(S))))
def test_set_state_applies_legal_and_refuses_illegal(old: S, new: S) -> None:
    agent = Agent(agent_id="a1", state=old, reason="before", since=10.0)
    result = agent._set_state(new, "after", 25.0)
    if new in TRANSITIONS[old]:
        assert not isinstance(result, Rejected)
        assert (result.old, result.new, result.reason) == (old, new, "after")
        assert (agent.state, agent.reason, agent.since) == (new, "after", 25.0)
    else:
        assert isinstance(result, Rejected)
        assert result.code == "illegal_transition"
        assert old.value in result.reason and new.value in result.reason
        assert (agent.state, agent.reason, agent.since) == (old, "before", 10.0)


def test_set_state_refuses_same_away_reason_and_counts_busy_time() -> None:
    agent = Agent(agent_id="a1", state=S.AWAY, reason="lunch", since=0.0)
    assert isinstance(agent._set_state(S.AWAY, "lunch", 5.0), Rejected)
    assert not isinstance(agent._set_state(S.AWAY, "break", 5.0), Rejected)
    busy = Agent(agent_id="a2", state=S.ON_CONTACT, since=100.0)
    busy._set_state(S.WRAP_UP, None, 160.0)
    busy._set_state(S.AVAILABLE, None, 170.0)
    assert busy.busy_s == 70.0


def test_transition_table_is_complete_and_logout_only_from_logged_in() -> None:
    assert set(TRANSITIONS) == set(S)
    for old, targets in TRANSITIONS.items():
        assert (S.LOGGED_OUT in targets) == (old is not S.LOGGED_OUT)
    assert TRANSITIONS[S.LOGGED_OUT] == {S.AVAILABLE, S.AWAY}


def _states(h: Harness) -> list[tuple[str, str, str, str | None]]:
    return [(e.agent_id, e.old, e.new, e.reason) for e in of_type(h.log, AgentStateChanged)]


def test_full_cycle_emits_every_transition() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", wrap_up_s=10)))
    h.login("a1")
    h.ok(SetState, agent_id="a1", state="away", reason="break")
    h.ok(SetState, agent_id="a1", state="available")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.ok(EndContact, contact_id="c1")
    h.tick(10)
    h.ok(AgentLogout, agent_id="a1")
    assert _states(h) == [
        ("a1", "logged_out", "available", "login"),
        ("a1", "available", "away", "break"),
        ("a1", "away", "available", "available"),
        ("a1", "available", "reserved", "offered"),
        ("a1", "reserved", "on_contact", "accepted"),
        ("a1", "on_contact", "wrap_up", "contact_ended"),
        ("a1", "wrap_up", "available", "wrap_up_timeout"),
        ("a1", "available", "logged_out", "logout"),
    ]
    assert all(e.at >= h.log[0].at for e in h.log)


def test_an_agents_changes_in_one_step_are_timed_in_their_order() -> None:
    # Made available with a caller waiting: available and offered (reserved) in one step. Reporting orders
    # an agent's states by time to the microsecond (then by event id, a hash): a shared timestamp made the
    # ringing agent look available about half the time, its offer counted as missed (the console test).
    h = Harness(simple_config(["a1", "a2"]))
    h.login("a1", "a2")
    h.ok(SetState, agent_id="a1", state="away", reason="break")
    h.ok(SetState, agent_id="a2", state="away", reason="break")
    h.enqueue("c1")
    h.now += 0.0000004  # within the microsecond of the last change: still after it
    step = h.ok(SetState, agent_id="a1", state="available").outputs
    changes = [(e.new, datetime.fromtimestamp(e.at, UTC)) for e in of_type(step, AgentStateChanged)]
    assert [new for new, _ in changes] == ["available", "reserved"]
    assert changes[0][1] < changes[1][1]
    later = of_type(h.tick(1.0) + h.ok(SetState, agent_id="a2", state="available").outputs, AgentStateChanged)
    assert later and later[0].at == h.now  # a later step keeps its own time
    moments = [e.at for e in of_type(h.log, AgentStateChanged)]
    assert moments == sorted(moments) and len(set(moments)) == len(moments)


def test_commands_while_logged_out_are_refused() -> None:
    h = Harness(simple_config(["a1"]))
    for cls, fields in [
        (SetState, {"state": "available"}),
        (SetState, {"state": "away", "reason": "break"}),
        (AgentLogout, {}),
        (WrapUpDone, {}),
        (Accept, {"offer_id": "x"}),
    ]:
        r = h.cmd(cls, agent_id="a1", **fields)
        assert not r.ok and r.code == "not_logged_in", r.reply
        assert "log in first" in (r.reply.reason or "")
    r = h.cmd(AgentLogin, agent_id="ghost")
    assert r.code == "unknown_agent"
    assert h.log == []


def test_available_and_away_commands() -> None:
    h = Harness(simple_config(["a1"]))
    h.login("a1")
    assert h.cmd(AgentLogin, agent_id="a1").code == "already_logged_in"
    r = h.cmd(SetState, agent_id="a1", state="available")
    assert r.code == "illegal_transition" and "available to available" in (r.reply.reason or "")
    assert h.cmd(SetState, agent_id="a1", state="away").code == "invalid"  # no reason
    r = h.cmd(SetState, agent_id="a1", state="away", reason="nap")
    assert r.code == "unknown_reason" and "break" in (r.reply.reason or "")
    assert h.cmd(SetState, agent_id="a1", state="away", reason="missed").code == "unknown_reason"
    h.ok(SetState, agent_id="a1", state="away", reason="lunch")
    assert h.cmd(SetState, agent_id="a1", state="away", reason="lunch").code == "illegal_transition"
    h.ok(SetState, agent_id="a1", state="away", reason="break")
    assert h.engine.state.agents["a1"].reason == "break"
    h.ok(AgentLogout, agent_id="a1")
    assert h.engine.agent_state("a1") is S.LOGGED_OUT
    assert _states(h)[-2:] == [("a1", "away", "away", "break"), ("a1", "away", "logged_out", "logout")]


def test_tenant_defined_reason_codes() -> None:
    h = Harness(simple_config(["a1"], away_reasons=["coaching"]))
    h.ok(AgentLogin, agent_id="a1", away_reason="coaching")
    assert h.engine.agent_state("a1") is S.AWAY
    assert h.cmd(SetState, agent_id="a1", state="away", reason="break").code == "unknown_reason"


def test_login_refused_beyond_seats() -> None:
    h = Harness(simple_config(["a1", "a2", "a3"], seats=2))
    h.login("a1", "a2")
    r = h.cmd(AgentLogin, agent_id="a3")
    assert not r.ok and r.code == "no_seats"
    assert "all 2 seats are in use" in (r.reply.reason or "")
    h.ok(AgentLogout, agent_id="a1")
    h.login("a3")
    assert len(h.engine.state.agents) == 2


def test_reserved_agent_cannot_become_available_but_can_ask_for_away_and_logout() -> None:
    h = Harness(simple_config(["a1", "a2"]))
    h.login("a1")
    h.enqueue("c0")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c0"))
    h.ok(EndContact, contact_id="c0")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.offers() == {"c1": "a1"}
    assert h.cmd(SetState, agent_id="a1", state="available").code == "busy"
    r = h.ok(SetState, agent_id="a1", state="away", reason="break")
    assert r.reply.data == {"state": "reserved", "pending": True}
    h.ok(AgentLogout, agent_id="a1")  # an outstanding offer does not block logout: it is withdrawn
    requeued = of_type(h.log, ContactRequeued)[-1]
    assert (requeued.contact_id, requeued.position, requeued.reason) == ("c1", 1, "logout")
    assert h.engine.state.contacts["c1"].state.value == "waiting"


def test_on_contact_logout_needs_force_and_requeues_at_place() -> None:
    h = Harness(simple_config(["a1", "a2"]))
    h.login("a1")
    h.enqueue("c1")
    h.enqueue("c2")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    r = h.cmd(AgentLogout, agent_id="a1")
    assert r.code == "busy" and "force" in (r.reply.reason or "")
    assert h.cmd(SetState, agent_id="a1", state="available").code == "busy"
    assert h.cmd(WrapUpDone, agent_id="a1").code == "not_in_wrap_up"
    h.ok(AgentLogout, agent_id="a1", force=True)
    c1 = h.engine.state.contacts["c1"]
    assert c1.state.value == "waiting" and h.pos("c1") == 1  # ahead of c2
    h.login("a2")
    assert h.offers() == {"c1": "a2"}


def test_pending_away_applies_after_wrap_up_and_can_be_cancelled() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", wrap_up_s=5)))
    h.login("a1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.ok(SetState, agent_id="a1", state="away", reason="lunch")
    h.enqueue("c2")
    h.ok(EndContact, contact_id="c1")
    assert h.engine.agent_state("a1") is S.WRAP_UP
    h.tick(5)
    assert h.engine.agent_state("a1") is S.AWAY
    assert h.engine.state.agents["a1"].reason == "lunch"
    assert h.offers() == {}  # c2 waits: the agent went away
    h.ok(SetState, agent_id="a1", state="available")
    assert h.offers() == {"c2": "a1"}
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c2"))
    h.ok(SetState, agent_id="a1", state="away", reason="break")
    r = h.ok(SetState, agent_id="a1", state="available")
    assert r.reply.data == {"state": "on_contact", "pending": False}
    h.ok(EndContact, contact_id="c2")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.engine.agent_state("a1") is S.AVAILABLE


def test_wrap_up_ends_by_timer_or_by_agent() -> None:
    h = Harness(simple_config(["a1", "a2"], queue=QueueConfig(queue_id="q", wrap_up_s=30)))
    h.login("a1", "a2")
    h.enqueue("c1")
    h.enqueue("c2")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.ok(Accept, agent_id="a2", offer_id=h.offer_id("c2"))
    h.tick(60)
    h.ok(EndContact, contact_id="c1")
    h.ok(EndContact, contact_id="c2")
    assert h.engine.next_timer() == h.now + 30
    h.tick(10)
    h.ok(WrapUpDone, agent_id="a2")
    assert h.engine.agent_state("a2") is S.AVAILABLE
    assert h.engine.agent_state("a1") is S.WRAP_UP
    h.tick(19.9)
    assert h.engine.agent_state("a1") is S.WRAP_UP
    h.tick(0.1)
    assert h.engine.agent_state("a1") is S.AVAILABLE
    # handle times: 60 talk + 10 wrap, 60 talk + 30 wrap
    assert sorted(h.engine.state.aht["q"]) == [70.0, 90.0]


def test_zero_wrap_up_goes_straight_to_available() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", wrap_up_s=0)))
    h.login("a1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.ok(EndContact, contact_id="c1")
    assert _states(h)[-1] == ("a1", "on_contact", "available", "contact_ended")


def test_capacity_rule() -> None:
    p = AgentProfile(agent_id="a", capacity={Channel.VOICE: 1, Channel.CHAT: 3, Channel.EMAIL: 1})
    a = Agent(agent_id="a")

    def hold(channel: Channel) -> None:
        a.slots[f"x{len(a.slots)}"] = Slot(
            contact_id=f"x{len(a.slots)}", queue_id="q", channel=channel, phase=SlotPhase.CONNECTED, since=0
        )

    assert can_take(a, p, Channel.VOICE) and can_take(a, p, Channel.CHAT)
    hold(Channel.CHAT)
    assert not can_take(a, p, Channel.VOICE)  # voice needs an agent holding nothing
    assert can_take(a, p, Channel.CHAT) and can_take(a, p, Channel.EMAIL)
    hold(Channel.CHAT)
    hold(Channel.EMAIL)
    assert can_take(a, p, Channel.CHAT) and not can_take(a, p, Channel.EMAIL)
    hold(Channel.CHAT)
    assert not can_take(a, p, Channel.CHAT)
    a.slots.clear()
    hold(Channel.VOICE)
    assert not any(can_take(a, p, ch) for ch in Channel)  # voice blocks everything
    no_voice = AgentProfile(agent_id="b", capacity={Channel.CHAT: 2})
    assert not can_take(Agent(agent_id="b"), no_voice, Channel.VOICE)


def test_chat_agent_holds_three_chats_and_states_follow_the_slots() -> None:
    chat = QueueConfig(queue_id="chat", channel=Channel.CHAT, wrap_up_s=5)
    h = Harness(simple_config(["a1"], queue=chat))
    h.login("a1")
    for i in range(4):
        h.enqueue(f"c{i}", "chat")
        if f"c{i}" in h.offers():
            h.ok(Accept, agent_id="a1", offer_id=h.offer_id(f"c{i}"))
    assert sorted(h.engine.state.agents["a1"].slots) == ["c0", "c1", "c2"]
    assert h.engine.state.contacts["c3"].state.value == "waiting"
    assert h.engine.agent_state("a1") is S.ON_CONTACT
    h.ok(EndContact, contact_id="c0")  # c0 in wrap-up still holds its slot
    assert h.offers() == {}
    h.tick(5)
    assert h.offers() == {"c3": "a1"}  # on_contact with a free chat slot: offered without leaving on_contact
    assert h.engine.agent_state("a1") is S.ON_CONTACT
    h.ok(EndContact, contact_id="c1")
    h.ok(EndContact, contact_id="c2")
    # nothing connected, an offer outstanding, two in wrap-up: reserved (offered beats wrap-up)
    assert h.engine.agent_state("a1") is S.RESERVED
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c3"))
    assert h.engine.agent_state("a1") is S.ON_CONTACT
    for e in of_type(h.log, AgentStateChanged):
        assert S(e.new) in TRANSITIONS[S(e.old)]


def test_voice_and_chat_do_not_mix() -> None:
    voice = QueueConfig(queue_id="v")
    chat = QueueConfig(queue_id="chat", channel=Channel.CHAT)
    p = AgentProfile(agent_id="a1", queues=["v", "chat"], capacity={Channel.VOICE: 1, Channel.CHAT: 3})
    h = Harness(simple_config(queues=[voice, chat], profiles=[p]))
    h.login("a1")
    h.enqueue("chat1", "chat")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("chat1"))
    h.enqueue("call1", "v")
    assert "call1" not in h.offers()  # a chat in hand blocks voice
    h.ok(EndContact, contact_id="chat1")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.offers() == {"call1": "a1"}
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("call1"))
    h.enqueue("chat2", "chat")
    assert "chat2" not in h.offers()  # a call in hand blocks chat


def test_a_declined_offer_may_send_the_agent_away_missed() -> None:
    """ "missed" is otherwise the system's own reason; declining an offer is a missed offer (issue 8)."""
    h = Harness(simple_config(["a1"]))
    h.login("a1")
    h.enqueue("c1")
    assert h.cmd(SetState, agent_id="a1", state="away", reason="missed").code == "unknown_reason"
    h.ok(Reject, agent_id="a1", offer_id=h.offer_id("c1"), away_reason="missed")
    agent = h.engine.state.agents["a1"]
    assert h.engine.agent_state("a1").value == "away" and agent.away_reason == "missed"
    assert h.engine.state.contacts["c1"].state.value == "waiting"


def _voicemail_harness(capacity: int) -> Harness:
    p = AgentProfile(agent_id="a1", queues=["v"], capacity={Channel.VOICE: 1, Channel.VOICEMAIL: capacity})
    h = Harness(simple_config(queues=[QueueConfig(queue_id="v")], profiles=[p]))
    h.login("a1")
    return h


def test_voicemails_take_their_own_capacity_in_a_voice_queue() -> None:
    """Issue 16: a voicemail left in a voice queue is routed on the voicemail channel: up to the agent's
    voicemail capacity at once, while voice stays exclusive of everything."""
    h = _voicemail_harness(2)
    h.enqueue("vm1", "v", channel=Channel.VOICEMAIL)
    h.enqueue("vm2", "v", channel=Channel.VOICEMAIL)
    h.enqueue("vm3", "v", channel=Channel.VOICEMAIL)
    assert h.engine.state.contacts["vm1"].channel is Channel.VOICEMAIL
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("vm1"))
    assert h.offers() == {"vm2": "a1"}  # a second voicemail fits beside the first
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("vm2"))
    assert h.offers() == {}  # the third is past the capacity of 2
    h.enqueue("call1", "v")
    assert h.offers() == {}  # voicemails in hand block a call
    h.ok(EndContact, contact_id="vm1")
    h.ok(EndContact, contact_id="vm2")
    h.ok(WrapUpDone, agent_id="a1")
    # Line order (priority, then arrival) between the two channels: the older voicemail first.
    assert h.offers() == {"vm3": "a1"}
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("vm3"))
    h.ok(EndContact, contact_id="vm3")
    h.ok(WrapUpDone, agent_id="a1")
    assert h.offers() == {"call1": "a1"}
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("call1"))
    h.enqueue("vm4", "v", channel=Channel.VOICEMAIL)
    assert h.offers() == {}  # a call in hand blocks voicemails


def test_a_held_voicemail_at_capacity_one_holds_back_calls_and_voicemails() -> None:
    h = _voicemail_harness(1)
    h.enqueue("vm1", "v", channel=Channel.VOICEMAIL)
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("vm1"))
    h.enqueue("vm2", "v", channel=Channel.VOICEMAIL)
    h.enqueue("call1", "v")
    assert h.offers() == {}  # capacity 1 for voicemail; voice needs empty hands
    assert h.engine.agent_state("a1") is S.ON_CONTACT


def test_an_agent_with_no_voicemail_capacity_is_never_offered_one() -> None:
    h = _voicemail_harness(0)
    h.enqueue("vm1", "v", channel=Channel.VOICEMAIL)
    assert h.offers() == {}
    h.enqueue("call1", "v")
    assert h.offers() == {"call1": "a1"}  # the voicemail waiting ahead does not hold up calls


def test_only_a_voice_queue_takes_voicemails() -> None:
    chat = QueueConfig(queue_id="chat", channel=Channel.CHAT)
    h = Harness(simple_config(queues=[chat], profiles=[]))
    result = h.cmd(Enqueue, contact_id="vm1", queue_id="chat", channel=Channel.VOICEMAIL)
    assert not result.ok and result.code == "channel_mismatch"
