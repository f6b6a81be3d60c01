# Randomised (seeded) property test: thousands of random commands and clock steps, with the invariants
# checked after every one by code that does not reuse the engine's own decision logic:
#   - no contact is ever offered to two agents, no agent ever holds two offers;
#   - every offer goes to a logged-in, ready, qualified agent with room for it, and no better-placed
#     waiting contact of the same queue was qualified for that agent (order kept within priority);
#   - no agent is reserved (or holds an offer) without an armed offer timer; wrap-ups have timers;
#   - no contact is lost: each one is waiting, on callback, offered, connected, or ended by an event;
#   - no contact waits while a qualified agent is ready; bullseye steps are current;
#   - logins never exceed the seats; every state change is in the transition table and chains;
#   - snapshots restore to the same bytes, and the run continues on the restored engine.
from __future__ import annotations

import random
from typing import Any

import pytest

from services.routing.core import (
    TRANSITIONS,
    Accept,
    AgentLogin,
    AgentLogout,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    AnyCommand,
    Cancel,
    Channel,
    Configure,
    Contact,
    ContactAbandoned,
    ContactAccepted,
    ContactEnded,
    ContactOffered,
    ContactQueued,
    ContactRejected,
    ContactState,
    DrainSite,
    EndContact,
    Engine,
    Enqueue,
    ExpansionStep,
    LoseSite,
    OverflowRule,
    PriorityRule,
    QueueConfig,
    Reject,
    RestoreSite,
    SetState,
    SetVirtualHold,
    SiteConfig,
    SiteStatus,
    Strategy,
    TenantConfig,
    TransferToQueue,
    WrapUpDone,
    matching,
)
from services.routing.core.agent import Agent, SlotPhase, derive_state
from services.routing.core.contact import line_key
from services.routing.core.expansion import step_at
from services.routing.core.timers import TimerKind

QUEUES = ("v1", "v2", "ch")
SITES = ("paris", "lyon")
AGENTS = tuple(f"a{i}" for i in range(9))


def _config(rng: random.Random, seats: int) -> TenantConfig:
    strategies = list(Strategy)
    v1 = QueueConfig(
        queue_id="v1",
        strategy=rng.choice(strategies),
        skills={"tech": 1},
        expansion=[
            ExpansionStep(after_s=0, min_proficiency=8),
            ExpansionStep(after_s=10, min_proficiency=4),
            ExpansionStep(after_s=25, min_proficiency=0),
        ],
        priority_rules=[PriorityRule(attribute="vip", equals="yes", raise_by=30)],
        overflow=[
            OverflowRule(target_queue_id="v2", after_s=rng.choice([40.0, 80.0])),
            OverflowRule(target_queue_id="v2", expected_wait_over_s=rng.choice([300.0, 900.0])),
        ],
        preferred_site_id="paris",
        site_spill_after_s=rng.choice([5.0, 15.0]),
        preferred_agent_window_s=12,
        offer_timeout_s=rng.choice([4.0, 9.0]),
        wrap_up_s=rng.choice([0.0, 6.0]),
        callback_timeout_s=20,
        default_aht_s=30,
    )
    v2 = QueueConfig(
        queue_id="v2", strategy=rng.choice(strategies), offer_timeout_s=6, wrap_up_s=3, default_aht_s=20
    )
    ch = QueueConfig(
        queue_id="ch",
        channel=Channel.CHAT,
        strategy=rng.choice(strategies),
        skills={"writing": 2},
        offer_timeout_s=5,
        wrap_up_s=rng.choice([0.0, 4.0]),
    )
    agents = []
    for i, agent_id in enumerate(AGENTS):
        queues = [q for q in QUEUES if rng.random() < 0.7] or ["v2"]
        agents.append(
            AgentProfile(
                agent_id=agent_id,
                site_id=SITES[i % 2] if i < 7 else None,
                queues=queues,
                skills={"tech": rng.randint(1, 10), "writing": rng.randint(1, 10)},
                attributes={"language": ["en", "fr"] if i % 3 else ["en"]},
                capacity={Channel.VOICE: 1 if i != 4 else 0, Channel.CHAT: rng.randint(1, 3)},
            )
        )
    return TenantConfig(
        seats=seats,
        away_reasons=["break", "lunch"],
        sites=[SiteConfig(site_id=s) for s in SITES],
        queues=[v1, v2, ch],
        agents=agents,
    )


class CheckedEngine(Engine):
    """The real engine, with a check at the one place an offer is made (state before the offer)."""

    violations: list[str]

    def check_offer(self, c: Contact, agent: Agent) -> None:
        problems = getattr(self, "violations", None)
        if problems is None:
            problems = self.violations = []
        if not _ready(self, agent.agent_id, c.channel):
            problems.append(f"offer of {c.contact_id} to unready agent {agent.agent_id}")
        if not _qualified(self, agent.agent_id, c):
            problems.append(f"offer of {c.contact_id} to unqualified agent {agent.agent_id}")
        if c.preferred_until is None:
            for cid in self.matcher.lines[c.queue_id]:
                d = self.state.contacts[cid]
                if line_key(d) >= line_key(c):
                    break
                if d.state is ContactState.WAITING and _qualified(self, agent.agent_id, d):
                    problems.append(f"{c.contact_id} offered to {agent.agent_id} before better-placed {cid}")


# Every offer, whoever makes it (matching, a supervisor's pull in floor.py), goes through matching.offer,
# looked up on the module at each call: wrapped here so a CheckedEngine checks the state before each one.
_real_offer = matching.offer


def _checked_offer(e: Engine, c: Contact, agent: Agent) -> None:
    if isinstance(e, CheckedEngine):
        e.check_offer(c, agent)
    _real_offer(e, c, agent)


matching.offer = _checked_offer


def _can_hold(agent: Agent, profile: AgentProfile, channel: Channel, extra: int) -> bool:
    """Independent capacity rule: voice alone; other channels up to their capacity each."""
    held = [s.channel for s in agent.slots.values()]
    if channel is Channel.VOICE:
        return profile.capacity.get(Channel.VOICE, 0) >= 1 and len(held) + extra <= 1
    if Channel.VOICE in held:
        return False
    return held.count(channel) + extra <= profile.capacity.get(channel, 0)


def _ready(engine: Engine, agent_id: str, channel: Channel) -> bool:
    st = engine.state
    agent = st.agents.get(agent_id)
    profile = {p.agent_id: p for p in st.config.agents}.get(agent_id)
    if agent is None or profile is None:
        return False
    if profile.site_id is not None and st.site_status.get(profile.site_id) is not SiteStatus.UP:
        return False
    return (
        agent.state in (AgentState.AVAILABLE, AgentState.ON_CONTACT)
        and agent.offer_id is None
        and agent.away_reason is None
        and _can_hold(agent, profile, channel, extra=1)
    )


def _qualified(engine: Engine, agent_id: str, c: Contact) -> bool:
    st = engine.state
    profile = {p.agent_id: p for p in st.config.agents}.get(agent_id)
    queue = {q.queue_id: q for q in st.config.queues}.get(c.queue_id)
    if profile is None or queue is None or c.queue_id not in profile.queues or agent_id in c.rejected_by:
        return False
    if any(v not in profile.attributes.get(k, []) for k, v in c.requires.items()):
        return False
    if c.preferred_until is not None:
        return agent_id == c.preferred_agent_id
    if queue.preferred_site_id and not c.site_spilled and profile.site_id != queue.preferred_site_id:
        return False
    wanted = dict(queue.skills)
    for skill, level in c.skills.items():
        wanted[skill] = max(level, wanted.get(skill, 0))
    if queue.expansion:
        level = queue.expansion[step_at(queue, c.queued_at, st.now)].min_proficiency
        wanted = dict.fromkeys(wanted, level)
    return all(level == 0 or profile.skills.get(s, 0) >= level for s, level in wanted.items())


class World:
    """Drives the engine at random and checks the invariants after each step."""

    def __init__(self, seed: int, position_interval_s: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.configs = [_config(self.rng, seats=6), _config(self.rng, seats=4)]
        self.engine: Engine = CheckedEngine(position_interval_s=position_interval_s)
        self.now = 1_000.0
        self.n = 0
        self.sent: list[AnyCommand] = []
        self.live: set[str] = set()  # contacts routed and not ended, from events only
        self.ended: set[str] = set()
        self.offered: dict[str, str] = {}  # contact -> agent, outstanding offers from events only
        self.agent_state: dict[str, str] = {}
        self.seen: dict[str, int] = {}
        self.send(Configure(id=self.id(), config=self.configs[0]))

    def id(self) -> str:
        self.n += 1
        return f"cmd{self.n}"

    def send(self, cmd: AnyCommand, now: float | None = None) -> Any:
        result = self.engine.handle(cmd, self.now if now is None else now)
        self.sent.append(cmd)
        self.observe(result.outputs)
        if isinstance(cmd, AgentLogin) and result.ok and not result.duplicate:
            assert len(self.engine.state.agents) <= self.engine.state.config.seats, "seats exceeded"
        return result

    def observe(self, outputs: list[Any]) -> None:
        for o in outputs:
            self.seen[type(o).__name__] = self.seen.get(type(o).__name__, 0) + 1
            if isinstance(o, ContactQueued):
                assert o.contact_id not in self.live and o.contact_id not in self.ended
                self.live.add(o.contact_id)
            elif isinstance(o, ContactOffered):
                assert o.contact_id not in self.offered, f"{o.contact_id} offered twice"
                assert o.agent_id not in self.offered.values(), f"{o.agent_id} holds two offers"
                self.offered[o.contact_id] = o.agent_id
            elif isinstance(o, (ContactAccepted, ContactRejected)):
                assert self.offered.pop(o.contact_id) == o.agent_id
            elif isinstance(o, (ContactAbandoned, ContactEnded)):
                if isinstance(o, ContactAbandoned) and o.agent_id is not None:
                    assert o.contact_id not in self.offered  # the withdrawal came first
                assert o.contact_id in self.live, f"{o.contact_id} ended twice or never queued"
                self.live.discard(o.contact_id)
                self.ended.add(o.contact_id)
            elif isinstance(o, AgentStateChanged):
                assert AgentState(o.new) in TRANSITIONS[AgentState(o.old)], o
                assert self.agent_state.get(o.agent_id, "logged_out") == o.old, o
                self.agent_state[o.agent_id] = o.new

    # -- random steps -----------------------------------------------------------------------------

    def pick(self, items: list[str]) -> str | None:
        return self.rng.choice(sorted(items)) if items else None

    def step(self) -> None:
        rng = self.rng
        st = self.engine.state
        roll = rng.random()
        contacts = list(st.contacts)
        if roll < 0.22:
            if len(contacts) > 40:
                return self.tick()
            queue = rng.choice(QUEUES)
            fields: dict[str, Any] = {"priority": rng.randint(1, 99)}
            if rng.random() < 0.2:
                fields["attributes"] = {"vip": "yes"}
            if rng.random() < 0.2:
                fields["requires"] = {"language": rng.choice(["fr", "en", "de"])}
            if rng.random() < 0.15:
                fields["skills"] = {"tech": rng.randint(1, 9)}
            if rng.random() < 0.15:
                fields["preferred_agent_id"] = rng.choice(AGENTS)
            if rng.random() < 0.1:
                fields["virtual_hold"] = True
            self.send(Enqueue(id=self.id(), contact_id=f"k{self.n}", queue_id=queue, **fields))
        elif roll < 0.40:
            offer = self.pick(list(st.offers))
            if offer is None:
                return self.tick()
            o = st.offers[offer]
            agent = o.agent_id if rng.random() < 0.95 else rng.choice(AGENTS)
            if rng.random() < 0.75:
                self.send(Accept(id=self.id(), agent_id=agent, offer_id=offer))
            else:
                reason = rng.choice([None, None, "break"])
                self.send(Reject(id=self.id(), agent_id=agent, offer_id=offer, away_reason=reason))
        elif roll < 0.52:
            connected = [c for c in contacts if st.contacts[c].state is ContactState.CONNECTED]
            cid = self.pick(connected)
            if cid is None:
                return self.tick()
            self.send(EndContact(id=self.id(), contact_id=cid))
        elif roll < 0.57:
            cid = self.pick(contacts) or "nobody"
            self.send(Cancel(id=self.id(), contact_id=cid))
        elif roll < 0.65:
            self.send(
                AgentLogin(
                    id=self.id(), agent_id=rng.choice(AGENTS), away_reason=rng.choice([None, None, "lunch"])
                )
            )
        elif roll < 0.69:
            self.send(AgentLogout(id=self.id(), agent_id=rng.choice(AGENTS), force=rng.random() < 0.4))
        elif roll < 0.77:
            if rng.random() < 0.66:
                self.send(SetState(id=self.id(), agent_id=rng.choice(AGENTS), state="available"))
            else:
                reason = rng.choice(["break", "lunch"])
                self.send(SetState(id=self.id(), agent_id=rng.choice(AGENTS), state="away", reason=reason))
        elif roll < 0.80:
            self.send(WrapUpDone(id=self.id(), agent_id=rng.choice(AGENTS)))
        elif roll < 0.83:
            cid = self.pick(contacts) or "nobody"
            self.send(TransferToQueue(id=self.id(), contact_id=cid, queue_id=rng.choice(QUEUES)))
        elif roll < 0.86:
            in_line = [
                c
                for c in contacts
                if st.contacts[c].state in (ContactState.WAITING, ContactState.CALLBACK_DUE)
            ]
            cid = self.pick(in_line) or "nobody"
            self.send(SetVirtualHold(id=self.id(), contact_id=cid, on=rng.random() < 0.5))
        elif roll < 0.875:
            site = rng.choice(SITES)
            kind = rng.choice(["drain", "lose", "restore", "restore"])
            if kind == "drain":
                self.send(DrainSite(id=self.id(), site_id=site))
            elif kind == "lose":
                self.send(LoseSite(id=self.id(), site_id=site))
            else:
                self.send(RestoreSite(id=self.id(), site_id=site))
        elif roll < 0.88:
            self.send(Configure(id=self.id(), config=rng.choice(self.configs)))
        elif roll < 0.90 and self.sent:
            # A repeated command: same result, no effect (only timers that came due may fire).
            old = rng.choice(self.sent[-30:])
            before = self.engine.state.replies.get(old.id)
            result = self.send(old)
            if before is not None:
                assert result.duplicate and result.reply == before
                assert not any(isinstance(o, ContactQueued) for o in result.outputs)
        elif roll < 0.93:
            # The adapter is late: a command at a time past due timers (they fire first, inside handle).
            self.now += rng.uniform(0, 12)
            self.send(SetState(id=self.id(), agent_id=rng.choice(AGENTS), state="available"))
        else:
            self.tick()

    def tick(self) -> None:
        end = self.now + self.rng.uniform(0.1, 8.0)
        while (t := self.engine.next_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            self.observe(self.engine.handle_timer(self.now))
        self.now = end
        self.observe(self.engine.handle_timer(self.now))

    # -- invariants -------------------------------------------------------------------------------

    def check(self) -> None:
        e = self.engine
        st = e.state
        now = st.now
        assert getattr(e, "violations", []) == []
        assert not e.dirty_contacts and not e.dirty_agents and not e.fresh  # nothing left half-done
        # no contact lost: what the events say is live is exactly what the engine holds
        assert set(st.contacts) == self.live
        in_line = 0
        for c in st.contacts.values():
            assert c.state in ContactState
            if c.state in (ContactState.WAITING, ContactState.CALLBACK_DUE):
                in_line += 1
                assert e.matcher.position(c) >= 1
                assert c.offer_id is None and c.agent_id is None
            if c.state is ContactState.OFFERED:
                offer = st.offers[c.offer_id]  # type: ignore[index]
                assert offer.contact_id == c.contact_id
                assert self.offered.get(c.contact_id) == offer.agent_id
            else:
                assert c.contact_id not in self.offered
            if c.state is ContactState.CONNECTED:
                slot = st.agents[c.agent_id].slots[c.contact_id]  # type: ignore[index]
                assert slot.phase is SlotPhase.CONNECTED
            if c.state is ContactState.WAITING:
                queue = e.queues[c.queue_id]
                assert c.step == step_at(queue, c.queued_at, now), "bullseye step is stale"
                assert c.preferred_until is None or c.preferred_until > now
                for agent_id in st.agents:
                    assert not (_ready(e, agent_id, c.channel) and _qualified(e, agent_id, c)), (
                        f"{c.contact_id} waits while {agent_id} is ready and qualified"
                    )
            if c.next_check_at is not None:
                assert c.next_check_at > now and e.timers.is_armed(
                    c.next_check_at, TimerKind.CONTACT, c.contact_id
                )
        assert sum(len(line) for line in e.matcher.lines.values()) == in_line
        holders: dict[str, str] = {}
        for offer in st.offers.values():
            assert offer.agent_id not in holders, f"{offer.agent_id} holds two offers"
            holders[offer.agent_id] = offer.offer_id
            assert offer.expires_at > now and e.timer_armed_for_offer(offer.offer_id), "offer without timer"
            assert st.contacts[offer.contact_id].state is ContactState.OFFERED
        for agent in st.agents.values():
            assert agent.state is not AgentState.LOGGED_OUT
            assert agent.state is derive_state(agent)
            assert self.agent_state[agent.agent_id] == agent.state.value
            assert agent.offer_id == holders.get(agent.agent_id)
            if agent.state is AgentState.RESERVED:
                assert agent.offer_id is not None and e.timer_armed_for_offer(agent.offer_id)
            channels = [s.channel for s in agent.slots.values()]
            if Channel.VOICE in channels:
                assert len(channels) == 1, f"{agent.agent_id} holds voice and more"
            # (counts per channel are checked when each offer is made: a reconfiguration may lower a
            # capacity below what an agent already holds)
            for slot in agent.slots.values():
                if slot.phase is SlotPhase.WRAP_UP:
                    assert slot.wrap_until is not None and slot.wrap_until > now
                    assert e.timers.is_armed(slot.wrap_until, TimerKind.WRAP, agent.agent_id, slot.contact_id)
        for agent_id, state in self.agent_state.items():
            assert (agent_id in st.agents) == (state != "logged_out")
        nxt = e.next_timer()
        assert nxt is None or nxt > now

    def restore(self) -> None:
        data = self.engine.snapshot()
        restored = CheckedEngine.restore(data)
        assert restored.snapshot() == data
        assert restored.next_timer() == self.engine.next_timer()
        self.engine = restored


@pytest.mark.parametrize(("seed", "position_interval_s"), [(1, 1.0), (2, 1.0), (3, 0.0), (4, 0.0)])
def test_random_traffic_keeps_every_invariant(seed: int, position_interval_s: float) -> None:
    world = World(seed, position_interval_s)
    for i in range(2500):
        world.step()
        world.check()
        if i % 300 == 299:
            world.restore()
            world.check()
    # the run went through the interesting places, not just refusals
    assert len(world.ended) > 50
    for kind in (
        "ContactOffered",
        "ContactAccepted",
        "ContactRejected",
        "ContactRequeued",
        "ContactOverflowed",
        "ContactSiteSpilled",
        "ContactTransferred",
        "ContactWrappedUp",
        "CallbackDue",
        "PositionChanged",
    ):
        assert world.seen.get(kind, 0) > 0, f"{kind} never happened (seed {seed})"
