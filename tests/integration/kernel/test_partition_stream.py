"""A partitioned service's work queue made by an older release gains the event types this release consumes:
the contact coordinator began reading `call.dtmf` (a flow queue's callback digit), and a work queue that kept
its first sources would never carry one to it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from services.kernel import events as ev
from services.kernel.bus import connect
from services.kernel.partitioned import Partitioning, ensure_partition_stream


async def test_an_older_work_queue_sources_the_newly_consumed_types_and_nothing_twice(infra: Any) -> None:
    bus = await connect(infra.nats_url, name="partition-stream-test")
    part = Partitioning(name=f"pst{uuid.uuid4().hex[:8]}", count=2, index=0, workers=1, worker_id="w")
    tenant, c1, c2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await bus.ensure_streams()
    try:
        await ensure_partition_stream(bus, part, [ev.CallArrived])  # the older release
        await bus.publish(ev.CallArrived(tenant_id=tenant, call_id=c1, from_uri="sip:a@x"))
        await bus.publish(
            ev.CallDtmf(tenant_id=tenant, call_id=c1, digit="1", source="rfc4733")
        )  # not consumed then
        await _wait_count(bus, part, 1)

        await ensure_partition_stream(bus, part, [ev.CallArrived, ev.CallDtmf])  # this release starts
        await ensure_partition_stream(bus, part, [ev.CallArrived, ev.CallDtmf])  # and its second worker
        await bus.publish(ev.CallDtmf(tenant_id=tenant, call_id=c1, digit="2", source="rfc4733"))
        await bus.publish(ev.CallArrived(tenant_id=tenant, call_id=c2, from_uri="sip:b@x"))
        await _wait_count(bus, part, 3)

        sub = await bus.js.pull_subscribe(f"sbp.{part.name}.>", durable="reader", stream=part.stream())
        got = [msg.subject.rsplit(".", 2)[-2:] for msg in await sub.fetch(10, timeout=2)]
        assert got == [["call", "arrived"], ["call", "dtmf"], ["call", "arrived"]]
    finally:
        await bus.js.delete_stream(part.stream())
        await bus.close()


async def _wait_count(bus: Any, part: Partitioning, count: int) -> None:
    for _ in range(100):
        if (await bus.js.stream_info(part.stream())).state.messages >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and no more than that arrives
    assert (await bus.js.stream_info(part.stream())).state.messages == count
