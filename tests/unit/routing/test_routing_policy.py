"""Routing's policy decisions are the core's (not the tenant adapter's): a callback keeps a waiting
caller's place on virtual hold or becomes a new contact on hold, and an enqueue without a priority takes
the priority of the queue it asked for."""

from __future__ import annotations

from services.routing.core import (
    AgentProfile,
    CallbackDue,
    ContactQueued,
    Enqueue,
    QueueConfig,
    RequestCallback,
    TenantConfig,
)

from .routing_harness import Harness


def _config() -> TenantConfig:
    return TenantConfig(
        queues=[
            QueueConfig(queue_id="q", default_priority=70),
            QueueConfig(queue_id="low", default_priority=10),
        ]
    )


def test_an_enqueue_without_priority_takes_the_queue_default() -> None:
    h = Harness(_config())
    h.enqueue("a")
    h.enqueue("b", queue_id="low")
    h.enqueue("c", priority=90)
    queued = {o.contact_id: o.priority for o in h.log if isinstance(o, ContactQueued)}
    assert queued == {"a": 70, "b": 10, "c": 90}


def test_a_bad_priority_is_refused_by_the_core() -> None:
    h = Harness(_config())
    result = h.cmd(Enqueue, contact_id="x", queue_id="q", priority=0)
    assert not result.ok and result.reply.code == "invalid" and "1-99" in result.reply.reason


def test_a_callback_for_a_waiting_caller_keeps_the_place() -> None:
    h = Harness(_config())
    h.enqueue("first")
    h.enqueue("caller")
    before = h.where("caller")["position"]
    h.ok(RequestCallback, contact_id="caller", queue_id="q", number="+15550100")
    where = h.where("caller")
    assert where["virtual_hold"] is True and where["position"] == before == 2
    # Asked twice: the second is refused, the caller stays where it is.
    again = h.cmd(RequestCallback, contact_id="caller", queue_id="q", number="+15550100")
    assert not again.ok and again.reply.code == "already_on_virtual_hold"


def test_a_callback_outside_a_queue_is_a_new_contact_on_hold() -> None:
    h = Harness(_config())
    result = h.ok(
        RequestCallback, contact_id="new", queue_id="q", number="+15550100", attributes={"vip": "1"}
    )
    assert result.reply.data["virtual_hold"] is True and result.reply.data["position"] == 1
    queued = [o for o in h.log if isinstance(o, ContactQueued)]
    assert [(o.contact_id, o.priority, o.virtual_hold) for o in queued] == [("new", 70, True)]
    assert queued[0].attributes == {"vip": "1", "callback_number": "+15550100"}
    # On hold: when an agent is free the caller is called back (callback due), not offered as a call.
    h.configure(
        TenantConfig(seats=1, queues=_config().queues, agents=[AgentProfile(agent_id="a", queues=["q"])])
    )
    h.login("a")
    assert [o.contact_id for o in h.log if isinstance(o, CallbackDue)] == ["new"]
    assert h.offers() == {}


def test_a_callback_to_an_unknown_queue_is_refused() -> None:
    h = Harness(_config())
    result = h.cmd(RequestCallback, contact_id="new", queue_id="nope", number="+15550100")
    assert not result.ok and result.reply.code == "unknown_queue"
