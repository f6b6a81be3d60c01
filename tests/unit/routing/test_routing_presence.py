# Presence: an agent whose socket is lost keeps its seat and calls for the grace, gets no offers meanwhile,
# resumes as it was when back, and is logged out (seat, offer and connected contact given back) when not.
from __future__ import annotations

from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLinked,
    AgentLogin,
    AgentsPresent,
    AgentState,
    AgentStateChanged,
    AgentUnlinked,
    ContactRejected,
    ContactRequeued,
    Engine,
)
from services.routing.core.presence import LEASE_S

S = AgentState
GRACE = 20.0


def _linked(h: Harness, agent: str, session: str = "s1") -> None:
    h.ok(AgentLogin, agent_id=agent, session_id=session)  # signs in available


def _state(h: Harness, agent: str) -> S:
    return h.engine.agent_state(agent)


def test_lost_agent_gets_no_offer_and_resumes_as_it_was_when_back_in_time() -> None:
    h = Harness(simple_config(["a1", "a2"], link_grace_s=GRACE))
    _linked(h, "a1")
    h.ok(AgentLogin, agent_id="a2", session_id="s2", away_reason="break")
    lost = h.ok(AgentUnlinked, agent_id="a1", session_id="s1")
    assert lost.reply.data == {"lost": True, "grace_s": GRACE}
    assert (_state(h, "a1"), h.engine.state.agents["a1"].reason) == (S.AWAY, "disconnected")
    h.enqueue("c1")
    assert h.offers() == {}  # nobody to offer to: a1 is lost, a2 on a break
    h.tick(GRACE - 1)
    back = h.ok(AgentLinked, agent_id="a1", session_id="s9")
    assert back.reply.data["resumed"] is True
    assert h.offers() == {"c1": "a1"}  # available again, as before the loss
    # a2 lost and back resumes its break, not available.
    h.ok(AgentUnlinked, agent_id="a2", session_id="s2")
    h.ok(AgentLinked, agent_id="a2", session_id="s3")
    assert (_state(h, "a2"), h.engine.state.agents["a2"].reason) == (S.AWAY, "break")


def test_not_back_in_time_logs_out_and_requeues_the_connected_contact() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    _linked(h, "a1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.ok(AgentUnlinked, agent_id="a1", session_id="s1")
    assert _state(h, "a1") is S.ON_CONTACT  # the call goes on while the agent may come back
    out = h.tick(GRACE - 0.5)
    assert not of_type(out, ContactRequeued)
    out = h.tick(1.0)
    [requeued] = of_type(out, ContactRequeued)
    assert (requeued.contact_id, requeued.reason) == ("c1", "disconnected")
    [gone] = [o for o in of_type(out, AgentStateChanged) if o.new == "logged_out"]
    assert (gone.reason, gone.at) == ("disconnected", h.now - 0.5)
    assert "a1" not in h.engine.state.agents
    # The seat is free: the agent can sign in again at once.
    h.ok(AgentLogin, agent_id="a1", session_id="s2")


def test_an_offer_ringing_at_logout_goes_back_in_line_with_an_agent_reason() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=5.0, queue=None))
    _linked(h, "a1")
    h.enqueue("c1")
    h.ok(AgentUnlinked, agent_id="a1", session_id="s1")
    out = h.tick(5.0)
    [withdrawn] = of_type(out, ContactRejected)
    assert withdrawn.reason == "agent_disconnected"
    assert h.engine.state.contacts["c1"].state.value == "waiting"


def test_a_stale_socket_closing_after_a_reconnect_changes_nothing() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    _linked(h, "a1", "old")
    h.ok(AgentLinked, agent_id="a1", session_id="new")
    assert h.ok(AgentUnlinked, agent_id="a1", session_id="old").reply.data == {"lost": False}
    assert _state(h, "a1") is S.AVAILABLE
    assert h.ok(AgentLinked, agent_id="nobody", session_id="x").reply.data == {"logged_in": False}


def test_an_unrenewed_lease_counts_as_lost_from_its_end() -> None:
    h = Harness(simple_config(["a1", "a2"], link_grace_s=GRACE))
    _linked(h, "a1", "s1")
    _linked(h, "a2", "s2")
    for _ in range(4):  # only a2's process keeps renewing
        h.tick(LEASE_S / 3)
        h.ok(AgentsPresent, sessions={"a2": ["s2"]})
    assert _state(h, "a1") is S.AWAY
    assert h.engine.state.agents["a1"].link_lost_at == 1_700_000_000.0 + LEASE_S
    for _ in range(4):
        h.tick(GRACE / 4)
        h.ok(AgentsPresent, sessions={"a2": ["s2"]})
    assert "a1" not in h.engine.state.agents and _state(h, "a2") is S.AVAILABLE


def test_agents_without_a_socket_are_not_watched() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    h.login("a1")
    h.tick(3600)
    assert _state(h, "a1") is S.AVAILABLE  # never timed out


def test_the_grace_survives_a_restart_and_fires_at_its_own_time() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    _linked(h, "a1")
    restored = Engine.restore(h.engine.snapshot())
    # The platform was down for a minute: the lease ended at +15 s, the grace at +35 s.
    outputs = restored.handle_timer(h.now + 60)
    [gone] = [o for o in of_type(outputs, AgentStateChanged) if o.new == "logged_out"]
    assert gone.at == h.now + LEASE_S + GRACE
    assert "a1" not in restored.state.agents


def test_a_starved_api_process_back_within_lease_and_grace_resumes_its_agents_offerable() -> None:
    """The API process holding the socket was stopped past its lease (a starved CPU): the agent is away
    "disconnected" from the lease's end; the process's next report, within the grace, resumes it."""
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    _linked(h, "a1", "s1")
    h.tick(LEASE_S + GRACE - 1)
    assert (_state(h, "a1"), h.engine.state.agents["a1"].reason) == (S.AWAY, "disconnected")
    back = h.ok(AgentsPresent, sessions={"a1": ["s1"]})
    assert back.reply.data == {"renewed": 1, "signed_out": []}
    assert _state(h, "a1") is S.AVAILABLE
    h.enqueue("c1")
    assert h.offers() == {"c1": "a1"}


def test_a_report_names_the_agents_signed_out_while_its_process_was_away() -> None:
    """Past the lease and the grace the agent is signed out; the process's late report hears so (its
    socket still shows the agent signed in), and renews nothing."""
    h = Harness(simple_config(["a1", "a2"], link_grace_s=GRACE))
    _linked(h, "a1", "s1")
    _linked(h, "a2", "s2")
    h.ok(AgentsPresent, sessions={"a2": ["s2"]}, lease_s=3600.0)
    h.tick(LEASE_S + GRACE + 1)
    assert "a1" not in h.engine.state.agents and _state(h, "a2") is S.AVAILABLE
    late = h.ok(AgentsPresent, sessions={"a1": ["s1"], "a2": ["s2"]})
    assert late.reply.data == {"renewed": 1, "signed_out": ["a1"]}
    assert "a1" not in h.engine.state.agents


def test_a_report_holds_for_the_lease_it_asks() -> None:
    h = Harness(simple_config(["a1"], link_grace_s=GRACE))
    _linked(h, "a1", "s1")
    h.ok(AgentLinked, agent_id="a1", session_id="s1", lease_s=3.0)
    h.tick(2.9)
    assert _state(h, "a1") is S.AVAILABLE
    h.ok(AgentsPresent, sessions={"a1": ["s1"]}, lease_s=3.0)
    h.tick(2.9)
    assert _state(h, "a1") is S.AVAILABLE
    h.tick(0.2)
    lost_at = h.engine.state.agents["a1"].link_lost_at
    assert _state(h, "a1") is S.AWAY and lost_at is not None and abs(lost_at - (h.now - 0.1)) < 1e-6
