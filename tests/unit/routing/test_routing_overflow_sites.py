# Overflow between queues (by time, by expected wait, when closed), opening hours, site preference and
# spill, draining and losing a site.
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from routing_harness import Harness, of_type, simple_config

from services.routing.core import (
    Accept,
    AgentLogin,
    AgentProfile,
    AgentState,
    Channel,
    ContactOverflowed,
    ContactRequeued,
    ContactSiteSpilled,
    DrainSite,
    EndContact,
    Enqueue,
    LoseSite,
    OverflowRule,
    QueueConfig,
    RestoreSite,
    Schedule,
    SetState,
    SiteConfig,
    TransferToQueue,
    WrapUpDone,
)
from services.routing.core.schedule import is_open


def _two_queues(rule: OverflowRule, **first: object) -> Harness:
    sales = QueueConfig(queue_id="sales", overflow=[rule], **first)  # type: ignore[arg-type]
    backup = QueueConfig(queue_id="backup")
    profiles = [
        AgentProfile(agent_id="s1", queues=["sales"]),
        AgentProfile(agent_id="b1", queues=["backup"]),
        AgentProfile(agent_id="b2", queues=["backup"]),
    ]
    return Harness(simple_config(queues=[sales, backup], profiles=profiles))


def test_overflow_after_time_keeps_arrival_order() -> None:
    h = _two_queues(OverflowRule(target_queue_id="backup", after_s=60))
    h.login("s1", "b1")
    h.enqueue("busy", "sales")
    h.ok(Accept, agent_id="s1", offer_id=h.offer_id("busy"))
    h.enqueue("b-busy", "backup")
    h.ok(Accept, agent_id="b1", offer_id=h.offer_id("b-busy"))
    h.enqueue("early", "sales")
    h.tick(30)
    h.enqueue("later-backup", "backup")
    out = h.tick(30)
    flows = of_type(out, ContactOverflowed)
    assert [(f.contact_id, f.from_queue_id, f.to_queue_id, f.reason) for f in flows] == [
        ("early", "sales", "backup", "time")
    ]
    # arrived before "later-backup", so it is ahead of it in the backup queue
    assert h.where("early") == {
        "contact_id": "early",
        "queue_id": "backup",
        "state": "waiting",
        "position": 1,
        "expected_wait_s": 180,
        "virtual_hold": False,
    }
    h.login("b2")
    assert h.offers("early") == {"early": "b2"}


def test_overflow_when_expected_wait_is_over_threshold() -> None:
    # one staffed agent, AHT 180 s: position 1 -> 180 s, position 2 -> 360 s
    h = _two_queues(OverflowRule(target_queue_id="backup", expected_wait_over_s=200))
    h.login("s1")
    h.enqueue("busy", "sales")
    h.ok(Accept, agent_id="s1", offer_id=h.offer_id("busy"))
    h.enqueue("first", "sales")
    assert h.engine.state.contacts["first"].queue_id == "sales"
    h.enqueue("second", "sales")
    assert h.engine.state.contacts["second"].queue_id == "backup"
    flows = of_type(h.log, ContactOverflowed)
    assert [(f.contact_id, f.reason) for f in flows] == [("second", "expected_wait")]


def test_overflow_when_nobody_is_staffed_counts_as_unknown_wait() -> None:
    h = _two_queues(OverflowRule(target_queue_id="backup", expected_wait_over_s=600))
    h.login("b1")
    h.enqueue("c1", "sales")
    assert h.offers() == {"c1": "b1"}


def test_overflow_never_loops_back() -> None:
    a = QueueConfig(queue_id="a", overflow=[OverflowRule(target_queue_id="b", after_s=10)])
    b = QueueConfig(queue_id="b", overflow=[OverflowRule(target_queue_id="a", after_s=10)])
    h = Harness(simple_config(queues=[a, b], profiles=[]))
    h.enqueue("c1", "a")
    h.tick(100)
    assert h.engine.state.contacts["c1"].queue_id == "b"
    assert len(of_type(h.log, ContactOverflowed)) == 1


def _epoch(local: str, tz: str) -> float:
    return dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_schedule_open_closed_in_time_zone() -> None:
    s = Schedule(
        tz="America/New_York",
        hours={"mon": [("09:00", "17:00")], "sat": [("10:00", "24:00")]},
        closed_dates=["2024-12-23"],
    )
    assert is_open(s, _epoch("2024-12-16T09:00", "America/New_York"))  # a Monday
    assert not is_open(s, _epoch("2024-12-16T08:59", "America/New_York"))
    assert not is_open(s, _epoch("2024-12-16T17:00", "America/New_York"))
    assert not is_open(s, _epoch("2024-12-17T12:00", "America/New_York"))  # Tuesday: no hours
    assert not is_open(s, _epoch("2024-12-23T12:00", "America/New_York"))  # holiday Monday
    assert is_open(s, _epoch("2024-12-21T23:59", "America/New_York"))  # Saturday to midnight
    # 14:30 UTC on that Monday is 09:30 in New York: open; 13:30 UTC is 08:30: closed
    assert is_open(s, dt.datetime(2024, 12, 16, 14, 30, tzinfo=dt.UTC).timestamp())
    assert not is_open(s, dt.datetime(2024, 12, 16, 13, 30, tzinfo=dt.UTC).timestamp())
    assert is_open(None, 0)


def test_closed_queue_refuses_or_redirects() -> None:
    office = Schedule(
        tz="Europe/Paris", hours={d: [("09:00", "18:00")] for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    day = QueueConfig(queue_id="day", schedule=office)
    day_with_night = QueueConfig(queue_id="day2", schedule=office, closed_target_queue_id="night")
    night = QueueConfig(queue_id="night")
    h = Harness(
        simple_config(queues=[day, day_with_night, night], profiles=[]),
        now=_epoch("2024-12-16T20:00", "Europe/Paris"),
    )
    r = h.cmd(Enqueue, contact_id="c1", queue_id="day")
    assert not r.ok and r.code == "queue_closed" and "closed" in (r.reply.reason or "")
    assert "c1" not in h.engine.state.contacts
    r = h.ok(Enqueue, contact_id="c2", queue_id="day2")
    assert r.reply.data["queue_id"] == "night"
    assert [(f.from_queue_id, f.to_queue_id, f.reason) for f in of_type(h.log, ContactOverflowed)] == [
        ("day2", "night", "closed")
    ]
    assert h.status("day")["open"] is False
    h.now = _epoch("2024-12-17T09:30", "Europe/Paris")
    h.ok(Enqueue, contact_id="c3", queue_id="day")
    assert h.status("day")["open"] is True


def _sites(**queue: object) -> Harness:
    q = QueueConfig(queue_id="q", preferred_site_id="paris", **queue)  # type: ignore[arg-type]
    profiles = [
        AgentProfile(agent_id="p1", site_id="paris", queues=["q"]),
        AgentProfile(agent_id="p2", site_id="paris", queues=["q"]),
        AgentProfile(agent_id="l1", site_id="lyon", queues=["q"]),
        AgentProfile(agent_id="h1", queues=["q"], capacity={Channel.VOICE: 1}),  # home agent, no site
    ]
    sites = [SiteConfig(site_id="paris"), SiteConfig(site_id="lyon")]
    return Harness(simple_config(queue=q, profiles=profiles, sites=sites))


def test_preferred_site_first_then_spill_after_time() -> None:
    h = _sites(site_spill_after_s=20)
    h.login("l1", "h1", "p1")
    h.enqueue("c1")
    assert h.offers() == {"c1": "p1"}  # l1 and h1 idle longer, but paris is preferred
    h.ok(Accept, agent_id="p1", offer_id=h.offer_id("c1"))
    h.enqueue("c2")
    assert "c2" not in h.offers()
    out = h.tick(20)
    spills = of_type(out, ContactSiteSpilled)
    assert [(s.contact_id, s.from_site_id, s.reason) for s in spills] == [("c2", "paris", "time")]
    assert h.offers("c2") == {"c2": "h1"}  # h1 and l1 equally idle: the id breaks the tie


def test_site_spill_by_expected_wait() -> None:
    h = _sites(site_spill_expected_wait_s=100)
    h.login("p1", "l1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="p1", offer_id=h.offer_id("c1"))
    h.enqueue("c2")  # one paris agent staffed, AHT 180: expected 180 s > 100 -> spills at once
    assert h.offers("c2") == {"c2": "l1"}
    assert [s.reason for s in of_type(h.log, ContactSiteSpilled)] == ["expected_wait"]


def test_drain_site_reroutes_waiting_contacts_at_once() -> None:
    h = _sites()
    h.login("p1", "l1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="p1", offer_id=h.offer_id("c1"))
    h.enqueue("c2")
    assert h.offers() == {}  # waits for paris, no spill rule
    r = h.ok(DrainSite, site_id="paris")
    assert r.reply.data == {"spilled": 1}
    assert h.offers() == {"c2": "l1"}
    # draining: p1 finishes its call but gets nothing new
    h.ok(EndContact, contact_id="c1")
    h.ok(WrapUpDone, agent_id="p1")
    h.enqueue("c3")
    assert "c3" not in h.offers()  # spilled at once (paris draining) but l1 is busy, p1 draining
    assert h.engine.state.contacts["c3"].site_spilled
    assert h.cmd(DrainSite, site_id="paris").code == "site_not_up"
    h.ok(RestoreSite, site_id="paris")
    assert h.offers("c3") == {"c3": "p1"}


def test_lose_site_logs_agents_out_and_returns_their_contacts_to_their_place() -> None:
    h = _sites()
    h.login("p1", "p2", "l1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="p1", offer_id=h.offer_id("c1"))  # connected at paris
    h.enqueue("c2")  # offered at paris, not answered yet
    assert h.offers() == {"c2": "p2"}
    h.enqueue("c3")  # waits for paris
    assert "c3" not in h.offers()  # l1 is idle but not at the preferred site
    r = h.ok(LoseSite, site_id="paris")
    assert r.reply.data["logged_out"] == 2
    assert h.engine.agent_state("p1") is AgentState.LOGGED_OUT
    assert h.engine.agent_state("p2") is AgentState.LOGGED_OUT
    requeued = {e.contact_id: e.reason for e in of_type(h.log, ContactRequeued)}
    assert requeued == {"c1": "site_lost", "c2": "site_lost"}
    assert h.offers() == {"c1": "l1"}  # c1 arrived first: first to the surviving site
    assert [h.pos(c) for c in ("c2", "c3")] == [1, 2]
    r = h.cmd(AgentLogin, agent_id="p1")
    assert r.code == "site_down"
    h.ok(RestoreSite, site_id="paris")
    h.login("p1")
    assert h.offers("c2") == {"c2": "p1"}


def test_transfer_to_queue_keeps_place_and_sends_agent_to_wrap_up() -> None:
    sales = QueueConfig(queue_id="sales")
    support = QueueConfig(queue_id="support")
    chat = QueueConfig(queue_id="chat", channel=Channel.CHAT)
    profiles = [
        AgentProfile(agent_id="s1", queues=["sales"]),
        AgentProfile(agent_id="t1", queues=["support"]),
    ]
    h = Harness(simple_config(queues=[sales, support, chat], profiles=profiles))
    h.login("s1", "t1")
    h.enqueue("t-busy", "support")
    h.ok(Accept, agent_id="t1", offer_id=h.offer_id("t-busy"))
    h.enqueue("c1", "sales")
    h.ok(Accept, agent_id="s1", offer_id=h.offer_id("c1"))
    h.enqueue("later", "support")
    assert h.cmd(TransferToQueue, contact_id="c1", queue_id="chat").code == "channel_mismatch"
    assert h.cmd(TransferToQueue, contact_id="c1", queue_id="nope").code == "unknown_queue"
    r = h.ok(TransferToQueue, contact_id="c1", queue_id="support")
    assert r.reply.data["position"] == 1  # arrived before "later"
    assert h.engine.agent_state("s1") is AgentState.WRAP_UP
    assert h.cmd(TransferToQueue, contact_id="c1", queue_id="support").code == "same_queue"


def test_transfer_to_an_agent_offers_it_to_them_first_in_the_queue() -> None:
    h = Harness(simple_config(["a1", "a2", "a3"]))
    h.login("a1", "a2")
    h.enqueue("c1")
    first = h.offers()["c1"]
    h.ok(Accept, agent_id=first, offer_id=h.offer_id("c1"))
    other = "a2" if first == "a1" else "a1"
    h.ok(SetState, agent_id=other, state="away", reason="break")
    h.login("a3")  # free, but not the one asked for
    assert h.cmd(TransferToQueue, contact_id="c1", queue_id="q", preferred_agent_id="nobody").code == (
        "agent_not_in_queue"
    )
    h.ok(TransferToQueue, contact_id="c1", queue_id="q", preferred_agent_id=other, preferred_window_s=30)
    assert h.offers() == {}  # a3 is free, but the window is the asked-for agent's
    h.ok(SetState, agent_id=other, state="available")
    assert h.offers() == {"c1": other}


def test_transfer_to_an_agent_falls_back_to_the_queue_after_the_window() -> None:
    h = Harness(simple_config(["a1", "a2", "a3"]))
    h.login("a1")
    h.enqueue("c1")
    h.ok(Accept, agent_id="a1", offer_id=h.offer_id("c1"))
    h.login("a2")
    h.ok(SetState, agent_id="a2", state="away", reason="break")
    h.login("a3")
    h.ok(TransferToQueue, contact_id="c1", queue_id="q", preferred_agent_id="a2", preferred_window_s=10)
    assert h.offers() == {}
    h.tick(11)
    assert h.offers() == {"c1": "a3"}
