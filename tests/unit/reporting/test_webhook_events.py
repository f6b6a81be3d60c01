"""Which events a tenant's webhook endpoint can take: `call.quality` (a leg's figures at its end) by exact type."""

from __future__ import annotations

import uuid

import msgspec

from services.kernel import events as ev
from services.reporting import webhooks as wh


def test_call_quality_is_a_webhook_by_exact_type_only() -> None:
    assert wh.EVENTS["call.quality"] is ev.CallQuality
    assert wh.wants(["call.quality"], "call.quality")
    assert not wh.wants(list(wh.FAMILIES), "call.quality")  # the default subscription does not get it


def test_call_quality_body_carries_the_figures() -> None:
    call = uuid.uuid4()
    quality = ev.CallQuality(
        tenant_id=uuid.uuid4(),
        id=uuid.uuid4(),
        ts=1.5,
        call_id=call,
        mos=4.2,
        r=88.0,
        jitter_ms=3.5,
        loss_percent=0.5,
        rtt_ms=None,
        packets_received=250,
        packets_sent=251,
    )
    body = msgspec.json.decode(wh.body_of(quality))
    assert body["type"] == "call.quality" and body["ts"] == 1.5
    assert body["data"] == {
        "call_id": str(call),
        "mos": 4.2,
        "r": 88.0,
        "jitter_ms": 3.5,
        "loss_percent": 0.5,
        "rtt_ms": None,
        "packets_received": 250,
        "packets_sent": 251,
    }
