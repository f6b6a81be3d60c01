# Property-based test of the routing core with hypothesis: a rule-based state machine sends random
# sequences of arrivals, logins, logouts, state changes, accepts, rejects, offer timeouts (clock steps),
# abandons, transfers, virtual holds, site losses and reconfigurations to the real engine on a stepped
# clock. After every step the invariant checker of the seeded property test (`World.check`, the
# `CheckedEngine` hook at the moment of each offer, and `World.observe` over the events) must hold:
#   - never an offer to an unqualified, unavailable or over-capacity agent;
#   - never one contact offered twice, never an agent holding two offers;
#   - arrival order kept within a priority (a better-placed qualified contact is never passed over),
#     except where a rule says otherwise (preferred agent, priority-raising attributes);
#   - no contact waits while a qualified agent is ready for it (so none waits forever);
#   - logged-in agents never exceed the seats; no contact lost; timers armed for every offer/wrap-up.
# Hypothesis shrinks a failure to a short command sequence. Derandomized, no example database: the same
# examples run on every machine and every CI run.
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

# The independent checker lives with the seeded property test (the directory is on sys.path, see
# conftest.py); importing it keeps one copy of the invariants for both tests.
from test_routing_properties import AGENTS, QUEUES, SITES, World

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentLogout,
    Cancel,
    Configure,
    ContactState,
    DrainSite,
    EndContact,
    Enqueue,
    LoseSite,
    Reject,
    RestoreSite,
    SetState,
    SetVirtualHold,
    TransferToQueue,
    WrapUpDone,
)

ROUTING_PROFILE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow],
)

agents = st.sampled_from(AGENTS)
away_reasons = st.sampled_from(["break", "lunch"])
pick = st.integers(min_value=0, max_value=1_000)  # index into whatever exists when the rule runs


class RoutingMachine(RuleBasedStateMachine):
    world: World

    @initialize(
        seed=st.integers(min_value=0, max_value=10_000),
        interval=st.sampled_from([0.0, 1.0]),
        staffed=st.lists(agents, min_size=2, max_size=len(AGENTS), unique=True),
    )
    def start(self, seed: int, interval: float, staffed: list[str]) -> None:
        # The seed only shapes the tenant (skills, capacities, strategies, timeouts); hypothesis
        # chooses who is logged in at the start (beyond the seats is refused) and all the traffic.
        self.world = World(seed, position_interval_s=interval)
        for agent in staffed:
            self._send(AgentLogin, agent_id=agent)

    # -- helpers ----------------------------------------------------------------------------------

    def _send(self, cls: type, **fields: Any) -> Any:
        return self.world.send(cls(id=self.world.id(), **fields))

    def _choose(self, items: list[str], index: int) -> str:
        return sorted(items)[index % len(items)]

    def _contacts(self, *states: ContactState) -> list[str]:
        contacts = self.world.engine.state.contacts
        return [cid for cid, c in contacts.items() if not states or c.state in states]

    # -- traffic ----------------------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(min_value=1, max_value=99) | st.sampled_from([50, 50]),
        vip=st.booleans(),
        language=st.none() | st.sampled_from(["en", "fr", "de"]),
        skill=st.none() | st.integers(min_value=1, max_value=9),
        preferred=st.none() | agents,
        virtual_hold=st.booleans(),
    )
    def arrival(
        self,
        queue: str,
        priority: int,
        vip: bool,
        language: str | None,
        skill: int | None,
        preferred: str | None,
        virtual_hold: bool,
    ) -> None:
        self._send(
            Enqueue,
            contact_id=f"k{self.world.n + 1}",
            queue_id=queue,
            priority=priority,
            attributes={"vip": "yes"} if vip else {},
            requires={"language": language} if language else {},
            skills={"tech": skill} if skill else {},
            preferred_agent_id=preferred,
            virtual_hold=virtual_hold,
        )

    @precondition(lambda self: bool(self.world.engine.state.offers))
    @rule(index=pick, accept=st.booleans(), away=st.none() | away_reasons)
    def answer(self, index: int, accept: bool, away: str | None) -> None:
        offers = self.world.engine.state.offers
        offer = offers[self._choose(list(offers), index)]
        if accept:
            self._send(Accept, agent_id=offer.agent_id, offer_id=offer.offer_id)
        else:
            self._send(Reject, agent_id=offer.agent_id, offer_id=offer.offer_id, away_reason=away)

    @precondition(lambda self: bool(self.world.engine.state.offers))
    @rule(index=pick, agent=agents, accept=st.booleans())
    def answer_someone_elses_offer(self, index: int, agent: str, accept: bool) -> None:
        # Refused unless it is the agent's own offer; never applied to another agent's.
        offers = self.world.engine.state.offers
        offer_id = self._choose(list(offers), index)
        self._send(Accept if accept else Reject, agent_id=agent, offer_id=offer_id)

    @precondition(
        lambda self: any(c.state is ContactState.CONNECTED for c in self.world.engine.state.contacts.values())
    )
    @rule(index=pick)
    def hang_up(self, index: int) -> None:
        self._send(EndContact, contact_id=self._choose(self._contacts(ContactState.CONNECTED), index))

    @rule(index=pick, unknown=st.booleans())
    def abandon(self, index: int, unknown: bool) -> None:
        contacts = self._contacts()
        cid = "nobody" if unknown or not contacts else self._choose(contacts, index)
        self._send(Cancel, contact_id=cid)

    @rule(agent=agents, away=st.none() | away_reasons)
    def login(self, agent: str, away: str | None) -> None:
        self._send(AgentLogin, agent_id=agent, away_reason=away)

    @rule(agent=agents, force=st.booleans())
    def logout(self, agent: str, force: bool) -> None:
        self._send(AgentLogout, agent_id=agent, force=force)

    @rule(agent=agents, away=st.none() | away_reasons)
    def set_state(self, agent: str, away: str | None) -> None:
        if away is None:
            self._send(SetState, agent_id=agent, state="available")
        else:
            self._send(SetState, agent_id=agent, state="away", reason=away)

    @rule(agent=agents)
    def wrap_up_done(self, agent: str) -> None:
        self._send(WrapUpDone, agent_id=agent)

    @precondition(lambda self: bool(self.world.engine.state.contacts))
    @rule(index=pick, queue=st.sampled_from(QUEUES))
    def transfer(self, index: int, queue: str) -> None:
        self._send(TransferToQueue, contact_id=self._choose(self._contacts(), index), queue_id=queue)

    @precondition(lambda self: bool(self.world.engine.state.contacts))
    @rule(index=pick, on=st.booleans())
    def virtual_hold(self, index: int, on: bool) -> None:
        self._send(SetVirtualHold, contact_id=self._choose(self._contacts(), index), on=on)

    @rule(site=st.sampled_from(SITES), kind=st.sampled_from([DrainSite, LoseSite, RestoreSite]))
    def site(self, site: str, kind: type) -> None:
        self._send(kind, site_id=site)

    @rule(which=st.integers(min_value=0, max_value=1))
    def reconfigure(self, which: int) -> None:
        self._send(Configure, config=self.world.configs[which])

    @precondition(lambda self: bool(self.world.sent))
    @rule(index=pick)
    def repeat(self, index: int) -> None:
        # A redelivered command: same reply, no second effect.
        old = self.world.sent[-30:][index % min(30, len(self.world.sent))]
        before = self.world.engine.state.replies.get(old.id)
        result = self.world.send(old)
        if before is not None:
            assert result.duplicate and result.reply == before

    @rule(seconds=st.floats(min_value=0.05, max_value=30.0, allow_nan=False))
    def clock(self, seconds: float) -> None:
        """Time passes: offer timeouts (ring-no-answer), wrap-ups, expansion, overflow, callbacks."""
        w = self.world
        end = w.now + seconds
        while (t := w.engine.next_timer()) is not None and t <= end:
            w.now = max(w.now, t)
            w.observe(w.engine.handle_timer(w.now))
        w.now = end
        w.observe(w.engine.handle_timer(w.now))

    @rule(seconds=st.floats(min_value=0.0, max_value=15.0, allow_nan=False), agent=agents)
    def late_command(self, seconds: float, agent: str) -> None:
        # The adapter is late: timers past due fire first, inside the command's own handling.
        self.world.now += seconds
        self._send(SetState, agent_id=agent, state="available")

    @rule()
    def crash_and_restore(self) -> None:
        self.world.restore()

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        if hasattr(self, "world"):
            self.world.check()


RoutingMachine.TestCase.settings = ROUTING_PROFILE
TestRoutingStateMachine = RoutingMachine.TestCase
