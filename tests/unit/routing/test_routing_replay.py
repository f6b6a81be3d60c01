# Idempotent command ids, determinism, snapshot -> restore -> identical behaviour, configuration
# validation and live reconfiguration.
from __future__ import annotations

import msgspec
import pytest
from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentProfile,
    AnyCommand,
    Channel,
    Configure,
    ContactAbandoned,
    EndContact,
    Engine,
    Enqueue,
    ExpansionStep,
    OverflowRule,
    QueueConfig,
    Reject,
    Schedule,
    SetState,
    SiteConfig,
    SnapshotError,
    TenantConfig,
)
from services.routing.core.outputs import AnyOutput


def test_repeated_command_id_returns_same_result_without_second_effect() -> None:
    h = Harness(simple_config(["a1", "a2"], seats=1))
    first = h.cmd(AgentLogin, id="login-1", agent_id="a1")
    again = h.cmd(AgentLogin, id="login-1", agent_id="a1")
    assert first.ok and again.ok and again.duplicate and not first.duplicate
    assert again.reply == first.reply and again.outputs == []
    refused = h.cmd(AgentLogin, id="login-2", agent_id="a2")
    assert refused.code == "no_seats"
    assert h.cmd(AgentLogin, id="login-2", agent_id="a2").reply == refused.reply  # refusals repeat too
    e1 = h.cmd(Enqueue, id="enq-1", contact_id="c1", queue_id="q")
    e2 = h.cmd(Enqueue, id="enq-1", contact_id="c1", queue_id="q")
    assert e2.duplicate and e2.reply == e1.reply
    assert len(h.engine.state.contacts) == 1
    offer = h.offer_id("c1")
    a1 = h.cmd(Accept, id="acc", agent_id="a1", offer_id=offer)
    a2 = h.cmd(Accept, id="acc", agent_id="a1", offer_id=offer)
    assert a1.ok and a2.ok and a2.duplicate  # not "unknown_offer" the second time
    # a different id is a different command
    assert h.cmd(Accept, id="acc-2", agent_id="a1", offer_id=offer).code == "unknown_offer"


def test_reply_memory_is_bounded_oldest_first() -> None:
    engine = Engine(max_replies=3)
    for i in range(5):
        engine.handle(SetState(id=f"s{i}", agent_id="x", state="available"), 0.0)
    assert list(engine.state.replies) == ["s2", "s3", "s4"]
    restored = Engine.restore(engine.snapshot())
    restored.handle(SetState(id="s5", agent_id="x", state="available"), 0.0)
    assert list(restored.state.replies) == ["s3", "s4", "s5"]
    assert engine.handle(SetState(id="s0", agent_id="x", state="available"), 0.0).duplicate is False


def test_duplicate_still_fires_due_timers() -> None:
    h = Harness(simple_config(["a1"], queue=QueueConfig(queue_id="q", offer_timeout_s=5)))
    h.cmd(AgentLogin, id="l", agent_id="a1")
    h.enqueue("c1")
    h.now += 5
    r = h.cmd(AgentLogin, id="l", agent_id="a1")
    assert r.duplicate and type(r.outputs[0]).__name__ == "ContactRejected"


def _rich_config() -> TenantConfig:
    sales = QueueConfig(
        queue_id="sales",
        skills={"sales": 1},
        expansion=[ExpansionStep(after_s=0, min_proficiency=7), ExpansionStep(after_s=20, min_proficiency=0)],
        overflow=[OverflowRule(target_queue_id="backup", after_s=90)],
        preferred_site_id="paris",
        site_spill_after_s=30,
        offer_timeout_s=10,
        wrap_up_s=15,
        schedule=Schedule(
            tz="UTC",
            hours={d: [("00:00", "24:00")] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        ),
    )
    backup = QueueConfig(queue_id="backup", wrap_up_s=5)
    chat = QueueConfig(queue_id="chat", channel=Channel.CHAT, wrap_up_s=3)
    agents = [
        AgentProfile(
            agent_id=f"a{i}",
            site_id="paris" if i % 2 else "lyon",
            queues=["sales", "backup", "chat"] if i % 3 else ["sales", "chat"],
            skills={"sales": 1 + (i * 3) % 10},
            capacity={Channel.VOICE: 1, Channel.CHAT: 2},
        )
        for i in range(8)
    ]
    sites = [SiteConfig(site_id="paris"), SiteConfig(site_id="lyon")]
    return TenantConfig(seats=6, queues=[sales, backup, chat], agents=agents, sites=sites)


def _script(n: int, offset: int) -> list[tuple[float, AnyCommand | None]]:
    """A fixed, varied sequence of (time step, command); None means only a timer tick."""
    out: list[tuple[float, AnyCommand | None]] = []
    for i in range(offset, offset + n):
        k = i % 11
        cid = f"k{i // 2}"
        if k in (0, 4, 7):
            queue = ("sales", "backup", "chat")[i % 3]
            out.append((1.0, Enqueue(id=f"e{i}", contact_id=f"k{i}", queue_id=queue, priority=1 + i % 99)))
        elif k == 1:
            out.append((0.5, AgentLogin(id=f"l{i}", agent_id=f"a{i % 8}")))
        elif k == 2:
            out.append((3.0, None))
        elif k == 3:
            out.append((0.0, SetState(id=f"s{i}", agent_id=f"a{i % 8}", state="available")))
        elif k == 5:
            out.append((2.0, EndContact(id=f"x{i}", contact_id=cid)))
        elif k == 6:
            out.append((0.0, SetState(id=f"w{i}", agent_id=f"a{(i + 3) % 8}", state="away", reason="break")))
        else:
            out.append((7.0, None))
    return out


def _accept_all(engine: Engine, now: float, i: int) -> list[object]:
    results: list[object] = []
    for n, offer in enumerate(sorted(engine.state.offers.values(), key=lambda o: o.offer_id)):
        cls = Reject if (i + n) % 4 == 0 else Accept
        results.append(
            engine.handle(cls(id=f"a{i}-{n}", agent_id=offer.agent_id, offer_id=offer.offer_id), now)
        )
    return results


def _end_some(engine: Engine, now: float, i: int) -> list[object]:
    connected = sorted(c.contact_id for c in engine.state.contacts.values() if c.state.value == "connected")
    return [
        engine.handle(EndContact(id=f"end{i}-{cid}", contact_id=cid), now)
        for n, cid in enumerate(connected)
        if (n + i) % 2 == 0
    ]


def _run(
    engine: Engine, script: list[tuple[float, AnyCommand | None]], now: float
) -> tuple[list[object], float]:
    """Run a script; offers are answered and calls ended from the engine's own state, which is fine
    because the engines compared must be in the same state anyway."""
    trace: list[object] = []
    for i, (dt, cmd) in enumerate(script):
        now += dt
        trace.append(engine.handle_timer(now) if cmd is None else engine.handle(cmd, now))
        if i % 3 == 0:
            trace.extend(_accept_all(engine, now, i))
        if i % 4 == 1:
            trace.extend(_end_some(engine, now, i))
        trace.append(engine.next_timer())
    return trace, now


def test_same_inputs_give_same_outputs() -> None:
    runs = []
    for _ in range(2):
        engine = Engine()
        engine.handle(Configure(id="cfg", config=_rich_config()), 1000.0)
        runs.append((_run(engine, _script(400, 0), 1000.0), engine.snapshot()))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("as_dict", [False, True])
def test_snapshot_restore_then_identical_behaviour(as_dict: bool) -> None:
    original = Engine()
    original.handle(Configure(id="cfg", config=_rich_config()), 1000.0)
    _, now = _run(original, _script(300, 0), 1000.0)
    assert original.state.contacts and original.state.agents  # mid-traffic
    if as_dict:
        data = msgspec.json.decode(msgspec.json.encode(original.to_dict()))
        restored = Engine.from_dict(data)
    else:
        restored = Engine.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    assert restored.next_timer() == original.next_timer()
    tail = _script(300, 300)
    trace_a, _ = _run(original, tail, now)
    trace_b, _ = _run(restored, tail, now)
    assert trace_a == trace_b
    assert restored.snapshot() == original.snapshot()
    kinds = {
        type(o).__name__
        for r in trace_a
        for o in (r.outputs if hasattr(r, "outputs") else r if isinstance(r, list) else [])
    }
    assert {
        "ContactOffered",
        "ContactAccepted",
        "ContactRejected",
        "ContactWrappedUp",
        "ContactOverflowed",
        "ContactSiteSpilled",
        "AgentStateChanged",
    } <= kinds


def test_outputs_and_commands_round_trip_as_tagged_json() -> None:
    h = Harness(simple_config(["a1"]))
    h.login("a1")
    h.enqueue("c1")
    encoded = msgspec.json.encode(h.log)
    assert msgspec.json.decode(encoded, type=list[AnyOutput]) == h.log
    assert b'"type":"contact.offered"' in encoded
    cmd = Enqueue(id="x", contact_id="c", queue_id="q", attributes={"vip": "true"})
    assert msgspec.json.decode(msgspec.json.encode(cmd), type=AnyCommand) == cmd


def test_bad_snapshot_is_a_clear_error() -> None:
    with pytest.raises(SnapshotError, match="unreadable"):
        Engine.restore(b"\x00garbage")
    with pytest.raises(SnapshotError, match="version"):
        Engine.from_dict({"version": 99})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TenantConfig(seats=-1), "seats"),
        (TenantConfig(queues=[QueueConfig(queue_id="q"), QueueConfig(queue_id="q")]), "listed twice"),
        (TenantConfig(queues=[QueueConfig(queue_id="bad id!")]), "invalid"),
        (TenantConfig(queues=[QueueConfig(queue_id="q", skills={"x": 11})]), "proficiency"),
        (
            TenantConfig(
                queues=[QueueConfig(queue_id="q", overflow=[OverflowRule(target_queue_id="nope", after_s=1)])]
            ),
            "not a queue",
        ),
        (
            TenantConfig(
                queues=[QueueConfig(queue_id="q", overflow=[OverflowRule(target_queue_id="q", after_s=1)])]
            ),
            "itself",
        ),
        (
            TenantConfig(
                queues=[QueueConfig(queue_id="q", expansion=[ExpansionStep(after_s=5, min_proficiency=5)])]
            ),
            "after_s=0",
        ),
        (TenantConfig(queues=[QueueConfig(queue_id="q", offer_timeout_s=0)]), "always times out"),
        (TenantConfig(queues=[QueueConfig(queue_id="q", schedule=Schedule(tz="Mars/Olympus"))]), "time zone"),
        (
            TenantConfig(
                queues=[
                    QueueConfig(
                        queue_id="q", schedule=Schedule(tz="UTC", hours={"mon": [("18:00", "09:00")]})
                    )
                ]
            ),
            "before end",
        ),
        (
            TenantConfig(
                queues=[QueueConfig(queue_id="q", schedule=Schedule(tz="UTC", hours={"funday": []}))]
            ),
            "weekday",
        ),
        (TenantConfig(queues=[QueueConfig(queue_id="q", preferred_site_id="x")]), "not a site"),
        (TenantConfig(agents=[AgentProfile(agent_id="a", queues=["nope"])]), "not a queue"),
        (TenantConfig(agents=[AgentProfile(agent_id="a", capacity={Channel.VOICE: 2})]), "voice capacity"),
        (TenantConfig(away_reasons=["missed"]), "reserved"),
    ],
)
def test_invalid_config_is_refused_with_a_reason(config: TenantConfig, message: str) -> None:
    engine = Engine()
    r = engine.handle(Configure(id="c", config=config), 0.0)
    assert not r.ok and r.code == "invalid_config"
    assert message in (r.reply.reason or "")
    assert engine.state.config == TenantConfig()  # nothing applied


def test_bad_enqueue_input_is_refused() -> None:
    h = Harness(simple_config(["a1"]))
    assert h.cmd(Enqueue, contact_id="c", queue_id="nope").code == "unknown_queue"
    assert h.cmd(Enqueue, contact_id="c", queue_id="q", priority=0).code == "invalid"
    assert h.cmd(Enqueue, contact_id="c", queue_id="q", priority=100).code == "invalid"
    assert h.cmd(Enqueue, contact_id="c", queue_id="q", skills={"x": 0}).code == "invalid"
    assert h.cmd(Enqueue, contact_id="", queue_id="q").code == "invalid"
    h.enqueue("c")
    assert h.cmd(Enqueue, contact_id="c", queue_id="q").code == "duplicate_contact"


def test_reconfiguration_applies_live() -> None:
    h = Harness(simple_config(["a1"], queues=[QueueConfig(queue_id="q"), QueueConfig(queue_id="old")]))
    h.enqueue("gone", "old")
    h.enqueue("c1", "q", skills={"tech": 5})
    h.login("a1")
    assert h.offers() == {}  # a1 has no tech skill
    new = TenantConfig(
        seats=10,
        queues=[QueueConfig(queue_id="q")],
        agents=[AgentProfile(agent_id="a1", queues=["q"], skills={"tech": 6})],
    )
    h.configure(new)
    assert h.offers() == {"c1": "a1"}
    assert [(a.contact_id, a.reason) for a in of_type(h.log, ContactAbandoned)] == [("gone", "queue_removed")]
    # an agent removed from the configuration keeps its session but gets no new work
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.configure(TenantConfig(seats=10, queues=[QueueConfig(queue_id="q")], agents=[]))
    h.ok(EndContact, contact_id="c1")
    h.enqueue("c2")
    assert h.offers() == {}
    assert "a1" in h.engine.state.stale_profiles
    assert h.engine.snapshot() == Engine.restore(h.engine.snapshot()).snapshot()


def test_removing_a_queue_gives_back_its_waiting_and_offered_contacts() -> None:
    old = QueueConfig(queue_id="old", wrap_up_s=20)
    keep = QueueConfig(queue_id="keep")
    profiles = [AgentProfile(agent_id=a, queues=["old", "keep"]) for a in ("a1", "a2")]
    h = Harness(simple_config(queues=[old, keep], profiles=profiles))
    h.login("a1", "a2")
    h.enqueue("talking", "old")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("talking"))
    h.enqueue("ringing", "old")
    h.enqueue("waiting", "old")
    assert h.offers() == {"ringing": "a2"}
    h.configure(
        TenantConfig(
            seats=5, queues=[keep], agents=[AgentProfile(agent_id=a, queues=["keep"]) for a in ("a1", "a2")]
        )
    )
    gone = [(a.contact_id, a.reason, a.agent_id) for a in of_type(h.log, ContactAbandoned)]
    assert gone == [("ringing", "queue_removed", "a2"), ("waiting", "queue_removed", None)]
    assert h.engine.agent_state("a2").value == "available"
    assert list(h.engine.state.retired_queues) == ["old"]  # the connected contact still needs it
    h.ok(EndContact, contact_id="talking")
    assert h.engine.agent_state("a1").value == "wrap_up"  # the retired queue's wrap-up time
    h.tick(20)
    assert h.engine.agent_state("a1").value == "available"
    assert h.cmd(Enqueue, contact_id="late", queue_id="old").code == "unknown_queue"
    h.configure(TenantConfig(seats=5, queues=[keep], agents=[]))
    assert h.engine.state.retired_queues == {}
